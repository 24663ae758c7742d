"""Helpers for benchmark scripts: where data lives, how results are written."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def shared_data() -> Path:
    root = Path(os.environ.get("HEMASCOPE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        sys.exit(f"shared data not found at {root} (set HEMASCOPE_SHARED_DATA)")
    return root


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads()}


def write_results(name: str, payload: dict, table: str) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)
