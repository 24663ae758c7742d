"""What the ship scripts share: copy a run's artifact into the package, read its history."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "hemascope" / "weights"


def copy_run(run: Path, name: str, files=("config.json", "model.safetensors", "split.json")) -> Path:
    """Copy the listed files of ``run`` (those that exist) to ``weights/name``."""
    dest = WEIGHTS / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if (run / f).is_file():
            shutil.copy2(run / f, dest / f)
    return dest


def history(run: Path) -> list[dict]:
    """Per-epoch rows from ``history.jsonl`` (one JSON per line) or ``history.json`` (a list)."""
    if (run / "history.jsonl").is_file():
        return [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines() if x.strip()]
    if (run / "history.json").is_file():
        return json.loads((run / "history.json").read_text())
    return []


def benchmark(name: str) -> dict | None:
    p = REPO / "benchmarks" / "results" / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None
