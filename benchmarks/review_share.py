"""How many white cells `hemascope analyze` flags for review, in the classifier's lab and another.

    python benchmarks/review_share.py [--pbc-images 200] [--name review_share]

The shipped defaults in single-cell mode, as is (no adaptation), on a seeded sample of the
default classifier's own PBC test split and on the 100 CellaVision cells (another lab). A
cell is flagged when its class probability is below ``--review-below`` (0.6). The share
sets the threshold at which ``hemascope analyze`` suggests adapting to another lab
(``cli/analyze.py: SHIFT_HINT``). Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from _common import machine, pbc_test_sample, shared_data, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pbc-images", type=int, default=200)
    ap.add_argument("--name", default="review_share")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import hemascope

    data = shared_data()
    sets = {"PBC test (the classifier's lab)": [f for f, _ in pbc_test_sample(args.pbc_images)],
            "CellaVision (another lab)": sorted((data / "cellavision").glob("*.bmp"))}
    rows, out = [], {}
    for name, files in sets.items():
        with tempfile.TemporaryDirectory() as tmp:
            res = hemascope.analyze(files, out_dir=Path(tmp) / "out", mode="cells", overlays=False)
        flagged = sum(c.review for c in res.cells)
        out[name] = {"cells": len(res.cells), "flagged": flagged,
                     "share": flagged / max(len(res.cells), 1)}
        rows.append(f"| {name} | {len(res.cells)} | {flagged} | {out[name]['share']:.2f} |")
    table = "\n".join(["## White cells flagged for review by `hemascope analyze` (defaults, no adaptation)", "",
                       "| cells | white cells | flagged (probability < 0.6) | share |", "|---|---|---|---|",
                       *rows])
    write_results(args.name, {"sets": out, "pbc_sample_seed": 0, "machine": machine()}, table)


if __name__ == "__main__":
    main()
