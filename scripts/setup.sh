#!/usr/bin/env bash
# Create .venv (Python 3.11) and install hemascope with its test extras into it.
# Idempotent: re-running after a change to pyproject.toml reinstalls, otherwise it is instant.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
if [ -z "$PY" ]; then echo "setup: no python3 found (Python 3.11 is required)" >&2; exit 1; fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
  || { echo "setup: $PY is $("$PY" --version 2>&1); Python >= 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version 2>&1)" >&2
  "$PY" -m venv .venv
fi

stamp=.venv/.hemascope-install-stamp
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import hemascope' 2>/dev/null; then
  exit 0
fi
echo "setup: installing hemascope and its dependencies into .venv (first time: a few minutes)" >&2
if ! .venv/bin/python -m pip install --quiet -e ".[dev]" > .venv/pip-install.log 2>&1; then
  grep -v "^WARNING: Location" .venv/pip-install.log >&2 || true
  echo "setup: pip install failed (full log: .venv/pip-install.log)" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "setup: done; the CLI is .venv/bin/hemascope" >&2
