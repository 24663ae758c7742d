#!/usr/bin/env bash
# The test command of the README: set up .venv if needed, then run the whole suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k taxonomy`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
