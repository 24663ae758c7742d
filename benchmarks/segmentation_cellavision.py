"""Cell-part segmentation on CellaVision (100 cells, expert nucleus/cytoplasm masks).

    python benchmarks/segmentation_cellavision.py [--k 5] [--from-model DIR] [--models DIR]
        [--set KEY=VALUE ...] [--name segmentation_cellavision]

K-fold cross-validation of the U-Net recipe (`hemascope train segmentation` defaults):
each cell is scored once, at its own resolution, by a model that never saw it. Reports
per-class IoU and F1 (mean +- std over folds and pooled over all held-out pixels) and
mIoU. ``--from-model DIR`` reads the cross-validation that `hemascope train segmentation
--cv K` recorded in that model's config (the same computation) instead of re-running it.
``--models DIR`` keeps each fold's U-Net in ``DIR/fold<k>`` and reuses the ones trained
there with the same recipe and folds (``benchmarks/segmentation_shift.py --models`` makes
the same folds), so that a change in inference is scored without training again.
``--set KEY=VALUE`` changes the recipe (e.g. ``other_parts=`` for the recipe before red cells
and platelets were pseudo-labelled, which the committed ``segmentation_cellavision`` result
scored). Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from _common import fold_unet, machine, shared_data, write_results

TARGETS = {"nucleus": 0.90, "cytoplasm": 0.80}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--from-model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--name", default="segmentation_cellavision")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hemascope.segment.data import find_mask_pairs
    from hemascope.train.config import SegmentationTrainConfig
    from hemascope.train.segmentation import cross_validate_segmenter

    if args.from_model:
        cfg_json = json.loads((args.from_model / "config.json").read_text())
        cv = cfg_json["metrics"]["cross_validation"]
        recipe = cfg_json["training"]["config"]
        source = f"recorded by `{cfg_json['training']['command']}`"
    else:
        from dataclasses import replace

        cfg = SegmentationTrainConfig(threads=args.threads)
        for item in args.set:
            key, _, value = item.partition("=")
            cfg = replace(cfg, **{key: type(getattr(cfg, key))(value)})
        pairs, _ = find_mask_pairs(shared_data() / "cellavision")
        def fold_model(f, x, y, test_idx):
            return fold_unet(args.models, f, cfg, x, y, test_idx)

        cv = cross_validate_segmenter(pairs, cfg, k=args.k,
                                      fold_model=fold_model if args.models else None)
        recipe, source = cfg.to_dict(), "run by this script"
    from hemascope.segment.data import load_pair
    from hemascope.segment.metrics import segmentation_report
    from hemascope.segment.parts import classical_parts

    # the classical pseudo-labeller needs no training: scored on all cells at once
    truths, preds = [], []
    for pair in find_mask_pairs(shared_data() / "cellavision")[0]:
        image, mask = load_pair(pair)
        truths.append(mask)
        preds.append(classical_parts(image))
    classical = segmentation_report(truths, preds, list(cv["pooled"]["classes"])).to_dict()
    pooled = cv["pooled"]["per_class"]
    rows = "\n".join(
        f"| {c} | {v['iou']['mean']:.3f} +- {v['iou']['std']:.3f} | {pooled[c]['iou']:.3f} | "
        f"{v['f1']['mean']:.3f} +- {v['f1']['std']:.3f} | "
        f"{classical['per_class'].get(c, {}).get('iou', float('nan')):.3f} | {TARGETS.get(c, '')} |"
        for c, v in cv["per_class"].items())
    table = f"""## CellaVision cell-part segmentation, {cv['k']}-fold cross-validation ({cv['n_images']} cells)

U-Net width {recipe['width']} @ {recipe['image_size']} px, {recipe['epochs']} epochs, random init ({source});
held-out cells segmented with the defaults of `segment_arrays` (white balance, zoom pass, centre cell only).
mIoU {cv['miou']['mean']:.3f} +- {cv['miou']['std']:.3f} (pooled {cv['pooled']['miou']:.3f}).

| part | U-Net IoU (mean +- std over folds) | U-Net IoU pooled | U-Net F1 (mean +- std) | classical colour rules IoU (no training) | target IoU (unseen labs) |
|---|---|---|---|---|---|
{rows}

All cells come from one source (the CellaVision blog images): cross-validation measures
generalisation to unseen cells of that lab, not to other labs and stains. The classical
rules (`hemascope.segment.parts.classical_parts`, the pseudo-labeller) find the nucleus
well but not pale cytoplasm, whose colour is close to the background's."""
    write_results(args.name, {"cross_validation": cv, "classical": classical,
                                               "recipe": recipe,
                                               "targets_iou": TARGETS, "machine": machine()}, table)


if __name__ == "__main__":
    main()
