"""Does self-training on unlabelled PBC cells help the cell-part U-Net? CellaVision k-fold CV.

    python benchmarks/segmentation_selftrain.py [--k 5] [--limit 400] [--min-confidence 0.9]

Both arms use the shipped recipe (``SegmentationTrainConfig`` defaults) and the same folds.
Plain: a U-Net per fold on the other folds' CellaVision cells. Self-trained: that U-Net is
the teacher; its confident pixels on ``--limit`` PBC images (another lab, no masks) are
pseudo-labels; a student trained from scratch on the fold's labelled cells plus the
pseudo-labelled ones, with as many optimiser steps as the teacher, is scored on the
held-out fold. Only real CellaVision masks are ever scored. Writes
``results/segmentation_selftrain.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import machine, shared_data, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--min-confidence", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from hemascope.segment.data import find_mask_pairs
    from hemascope.train.config import SegmentationTrainConfig
    from hemascope.train.segmentation import cross_validate_segmenter

    data = shared_data()
    pairs, _ = find_mask_pairs(data / "cellavision")
    base = SegmentationTrainConfig(threads=args.threads)
    arms = {"plain": base,
            "self-trained": replace(base, unlabelled=str(data / "pbc"), pseudo_limit=args.limit,
                                    min_confidence=args.min_confidence)}
    results = {}
    for name, cfg in arms.items():
        t = time.perf_counter()
        cv = cross_validate_segmenter(pairs, cfg, k=args.k, log=print)
        results[name] = {"config": cfg.to_dict(), "minutes": round((time.perf_counter() - t) / 60, 1),
                         **{k: v for k, v in cv.items() if k != "folds"},
                         "fold_miou": [f["miou"] for f in cv["folds"]]}
    p, s = results["plain"], results["self-trained"]
    rows = []
    for c in ("nucleus", "cytoplasm", "background"):
        a, b = p["per_class"][c]["iou"], s["per_class"][c]["iou"]
        rows.append(f"| {c} IoU | {a['mean']:.4f} +- {a['std']:.4f} | {b['mean']:.4f} +- {b['std']:.4f} | "
                    f"{b['mean'] - a['mean']:+.4f} |")
    wins = sum(b > a for a, b in zip(p["fold_miou"], s["fold_miou"]))
    table = f"""## Cell-part U-Net: plain vs one round of self-training on PBC ({args.k}-fold CV on {p['n_images']} CellaVision cells)

Self-training: {args.limit} unlabelled PBC cells, pseudo-labels where the fold's teacher is at least {args.min_confidence:.0%} sure.
Scores are on held-out CellaVision masks only.

| | plain | self-trained | difference |
|---|---|---|---|
{chr(10).join(rows)}
| mIoU | {p['miou']['mean']:.4f} +- {p['miou']['std']:.4f} | {s['miou']['mean']:.4f} +- {s['miou']['std']:.4f} | {s['miou']['mean'] - p['miou']['mean']:+.4f} |
| folds where self-training is better | | {wins} of {args.k} | |
| minutes (2 CPU threads) | {p['minutes']} | {s['minutes']} | |"""
    write_results("segmentation_selftrain", {"arms": results, "k": args.k, "machine": machine()}, table)


if __name__ == "__main__":
    main()
