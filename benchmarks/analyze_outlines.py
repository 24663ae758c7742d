"""White-cell outlines in `hemascope analyze`: the part model vs the classical extraction.

    python benchmarks/analyze_outlines.py [--repeats 2] [--threads 2]

Runs the main job on the 60 CBC test fields (shipped default models) with the two ways to
outline a white cell, alternating them ``--repeats`` times so that both see the same
machine load:

- ``--parts none``: the classical extraction (saturation threshold, watershed, the region
  nearest the box centre), which finds the stained nucleus;
- ``--parts default``: the shipped cell-part U-Net on the classifier's crop, the region of
  nucleus, cytoplasm and vacuole at its centre, with the nucleus lobes inside it.

The CBC fields carry boxes, not masks, so the outlines are not scored against a truth here
(the U-Net's part IoU, 5-fold cross-validated on CellaVision's masks, is in
``results/segmentation_cellavision.md``). Reported: how much of the detector's box the
outline covers (median area of the outline / area of the box), how many white cells got an
outline from the part model, the median nucleus-to-cell area ratio, the outline and
detection stages' seconds per field and end-to-end fields per second (medians over the
repeats; the detection stage, the same in both arms, says how fast the machine is).
Writes results/analyze_outlines.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results

ARMS = {"classical (`--parts none`, the default)": None, "cell-part U-Net (`--parts default`)": "default"}


def polygon_area(poly) -> float:
    """Shoelace area of a closed polygon ``[(x, y), ...]``."""
    p = np.asarray(poly, float)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="analyze_outlines")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.pipeline import analyze

    ds = load_dataset(shared_data() / "cbc").subset("test")
    root = Path(ds.image_root)
    files = sorted(str((root / im.file_name).resolve()) for im in ds.images)
    runs: dict[str, list[dict]] = {a: [] for a in ARMS}
    for _ in range(args.repeats):
        for arm, parts in ARMS.items():
            with tempfile.TemporaryDirectory() as tmp:
                res = analyze(files, out_dir=tmp, parts=parts)
            white = [c for r in res.images for c in r.cells if c.kind not in ("RBC", "Platelets")]
            cover = [polygon_area(c.polygon) / max(1e-9, (c.box[2] - c.box[0]) * (c.box[3] - c.box[1]))
                     for c in white if c.polygon]
            n = len(res.images)
            runs[arm].append({
                "fields": n, "white_cells": len(white), "outlined": len(cover),
                "from_part_model": sum(c.nc_ratio is not None for c in white),
                "box_covered_median": float(np.median(cover)) if cover else None,
                "nc_ratio_median": (float(np.median([c.nc_ratio for c in white if c.nc_ratio is not None]))
                                    if any(c.nc_ratio is not None for c in white) else None),
                "detect_s_per_field": res.seconds["detect"] / n,
                "outline_s_per_field": res.seconds["outline"] / n,
                "fields_per_s": n / res.seconds["total"]})
            print(arm, runs[arm][-1], flush=True)
    summary = {a: {k: float(np.median([r[k] for r in rs])) if rs[0][k] is not None else None
                   for k in rs[0]} for a, rs in runs.items()}
    lines = ["## White-cell outlines in `hemascope analyze` (CBC test, 60 fields, shipped models)", "",
             "| outline | white cells outlined | by the part model | median share of the box covered "
             "| median nucleus / cell area | outline s / field | detect s / field | fields / s end to end |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        nc = "-" if s["nc_ratio_median"] is None else f"{s['nc_ratio_median']:.2f}"
        lines.append(f"| {arm} | {s['outlined']:.0f} of {s['white_cells']:.0f} | "
                     f"{s['from_part_model']:.0f} | {s['box_covered_median']:.2f} | {nc} | "
                     f"{s['outline_s_per_field']:.3f} | {s['detect_s_per_field']:.3f} | "
                     f"{s['fields_per_s']:.2f} |")
    lines += ["", f"Medians over {args.repeats} alternating runs of each, {args.threads} CPU threads "
              f"({machine()['cpu']}). No mask truth on these fields: the share of the box says "
              "how much of the cell an outline takes in, not whether it is right."]
    write_results(args.name, {"runs": runs, "summary": summary, "repeats": args.repeats,
                              "threads": args.threads, "machine": machine()}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
