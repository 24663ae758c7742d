"""What `hemascope analyze --adapt` costs and changes on smear fields (CBC test split).

    python benchmarks/analyze_adapt_fields.py [--seed 0] [--name analyze_adapt_fields]

Runs the main job with the shipped defaults on the 60 CBC test fields (640x480), with
``--classes`` set to the five leukocyte types, as is, with ``--adapt bn`` and with
``--adapt shot``. The fields carry no white-cell type labels here, so typing is **not
scored**: the table gives each run's differential (white cells per type) and its seconds
per field, with the adaptation's own seconds, to show what adapting costs end to end and
how much it moves the differential. Overlays are off, as in a batch run that needs only
the tables. A short untimed run first loads the models, so that the first timed run does
not pay for it. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import machine, shared_data, write_results

WBC5 = ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="analyze_adapt_fields")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import hemascope

    fields = shared_data() / "cbc" / "Testing" / "Images"
    with tempfile.TemporaryDirectory() as tmp:  # warm-up (first model loads, caches), not timed
        hemascope.analyze(sorted(fields.glob("*.jpg"))[:3], out_dir=Path(tmp) / "out",
                          classes=WBC5, overlays=False)
    runs = []
    for adapt in ("none", "bn", "shot"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = hemascope.analyze(fields, out_dir=Path(tmp) / "out", classes=WBC5, adapt=adapt,
                                    adapt_seed=args.seed, overlays=False)
            seconds = time.perf_counter() - t
        white = [c.label for c in res.cells if c.kind == "WBC"]
        counts = {c: white.count(c) for c in WBC5}
        runs.append({"adapt": adapt, "fields": len(res.images), "white_cells": len(white),
                     "counts": counts, "seconds": round(seconds, 1),
                     "adapt_seconds": res.seconds.get("adapt"),
                     "fields_per_s": round(len(res.images) / seconds, 2)})
        print(runs[-1], flush=True)
    lines = ["## `hemascope analyze --adapt` on smear fields (CBC test split, 60 fields, not scored)", "",
             "Shipped defaults, `--classes` the five leukocyte types, overlays off; "
             f"SHOT seed {args.seed}. The fields have no white-cell type labels: the counts show "
             "how adaptation moves the differential, not whether it is right.", "",
             "| `--adapt` | white cells | " + " | ".join(WBC5) + " | adaptation s | fields/s end to end |",
             "|---|---|" + "---|" * len(WBC5) + "---|---|"]
    for r in runs:
        lines.append(f"| {r['adapt']} | {r['white_cells']} | "
                     + " | ".join(str(r["counts"][c]) for c in WBC5)
                     + f" | {r['adapt_seconds'] or 0:.0f} | {r['fields_per_s']:.2f} |")
    write_results(args.name, {"runs": runs, "seed": args.seed, "machine": machine()},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
