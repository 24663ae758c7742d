"""Teaching the part U-Net red cells and platelets from classical pseudo-labels.

    python benchmarks/segmentation_parts.py [--parts rbc,platelet] [--k 5] [--models DIR]
        [--set KEY=VALUE ...] [--name segmentation_parts]

The CellaVision masks mark the white cell's nucleus and cytoplasm and call everything else
"other", so the shipped U-Net never learnt the other classes of ``CELL_PARTS``. This
recipe (``hemascope train segmentation --other-parts rbc,platelet``) writes the classical
rules' red cells and platelets (:func:`hemascope.segment.parts.add_pseudo_parts`) into each
training mask, only on pixels the expert called "other". Vacuoles are left out: the rule
scores F1 0.19 against WBCAtt's per-cell labels (``pseudo_parts.md``).

K-fold cross-validation with the folds of ``segmentation_cellavision.py`` (same seed), each
held-out cell segmented with the ``segment_arrays`` defaults:

- **nucleus / cytoplasm IoU** against the expert masks, pooled over held-out pixels, with
  predicted red cells and platelets scored as "other" (what the masks call them);
  compared with the shipped recipe's committed cross-validation
  (``results/segmentation_cellavision.json``, same folds);
- **on the white cell**: the share of each new part's predicted pixels that fall on the
  expert's white cell, an error rate (lower is better), beside the rules' own share;
- **agreement with the rules on held-out cells**: pixel precision / recall / IoU of each new
  part against the pseudo-labels of cells the fold model never saw. This is agreement with
  the rules, not accuracy: there is no red-cell or platelet ground truth here;
- **PBC**: on a seeded sample of PBC cells (another lab's scanner and stain, never trained
  on), the share of images where fold 0's model finds each part, beside the rules'.

Decision rule, fixed before the first run: the recipe becomes the shipped default (and
``train segmentation``'s default) only if pooled nucleus IoU >= 0.940 and cytoplasm IoU
>= 0.865 (the shipped recipe's 0.945 / 0.870 minus 0.005) and, for each added part, at
most 5 % of its predicted pixels lie on the expert's white cell and the model finds it in at
least half of the held-out images where the rules put it.

Second rule, for ``--set class_weights=sqrt --baseline segmentation_parts --differs
class_weights --min-agreement 0.3`` (rare parts weigh more in the cross-entropy, aimed at the
barely learnt platelets), fixed before its first run: it replaces the shipped recipe only if
nucleus and cytoplasm IoU are at most 0.005 below the shipped recipe's (its
``segmentation_parts`` run: 0.943 / 0.871), each added part stays at most 5 % on the white
cell and is found in half the images where the rules put it, and each added part's
precision and recall against the rules on unseen cells are at least 0.3 (platelets had
0.47 / 0.09).

Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _common import RESULTS, fold_unet, machine, pbc_test_sample, shared_data, write_results

MARGIN, ON_CELL_MAX, FOUND_MIN = 0.005, 0.05, 0.5


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    fp, fn = int((pred & ~truth).sum()), int((~pred & truth).sum())
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
            "iou": tp / max(tp + fp + fn, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="rbc,platelet")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--pbc", type=int, default=300, help="PBC cells for the found rates")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other recipe options (e.g. epochs=2 for a smoke run)")
    ap.add_argument("--name", default="segmentation_parts")
    ap.add_argument("--baseline", default="segmentation_cellavision",
                    help="results name of the recipe compared with (its cross-validation)")
    ap.add_argument("--differs", nargs="*", default=["other_parts"], metavar="KEY",
                    help="the options in which this recipe may differ from the baseline's")
    ap.add_argument("--min-agreement", type=float, default=0.0,
                    help="least precision and recall of each added part against the rules")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hemascope.io.image import read_image
    from hemascope.segment.data import find_mask_pairs, load_pair
    from hemascope.segment.parts import add_pseudo_parts, classical_parts
    from hemascope.segment.predict import segment_arrays
    from hemascope.taxonomy import CELL_PARTS
    from hemascope.train.config import SegmentationTrainConfig, same_segmentation_recipe
    from hemascope.train.segmentation import cross_validate_segmenter

    extra = dict(kv.split("=", 1) for kv in args.set)
    base = SegmentationTrainConfig()
    typed = {k: type(getattr(base, k))(v) for k, v in extra.items()}  # "--parts" sets other_parts
    cfg = SegmentationTrainConfig(threads=args.threads, **{**typed, "other_parts": args.parts})
    parts = cfg.other_parts_list
    names = list(CELL_PARTS.classes)
    data = shared_data()
    pairs, _ = find_mask_pairs(data / "cellavision")
    kept: dict[int, tuple] = {}

    def fold_model(f, x, y, test_idx):
        kept[f] = (fold_unet(args.models, f, cfg, x, y, test_idx), test_idx)
        return kept[f][0]

    t0 = time.time()
    cv = cross_validate_segmenter(pairs, cfg, k=args.k, fold_model=fold_model)
    train_s = time.time() - t0

    on_cell = {p: [0, 0] for p in parts}  # predicted pixels on the white cell, all predicted
    rules_on_cell = {p: [0, 0] for p in parts}
    found = {p: [0, 0] for p in parts}  # images: predicted, pseudo-labelled
    agree = {p: [[], []] for p in parts}
    for _fold, (loaded, test_idx) in sorted(kept.items()):
        for i in test_idx:
            image, truth = load_pair(pairs[int(i)])
            pred = segment_arrays(loaded, [image])[0]
            rules = classical_parts(image, all_parts=True)
            pseudo = add_pseudo_parts(image, truth, parts)
            cell = truth > 0
            for p in parts:
                k = names.index(p)
                on_cell[p][0] += int(((pred == k) & cell).sum())
                on_cell[p][1] += int((pred == k).sum())
                rules_on_cell[p][0] += int(((rules == k) & cell).sum())
                rules_on_cell[p][1] += int((rules == k).sum())
                found[p][0] += bool((pred == k).any())
                found[p][1] += bool((pseudo == k).any())
                agree[p][0].append((pred == k).ravel())
                agree[p][1].append((pseudo == k).ravel())
    agreement = {p: prf(np.concatenate(agree[p][0]), np.concatenate(agree[p][1])) for p in parts}

    pbc = {p: [0, 0] for p in parts}
    pick = pbc_test_sample(args.pbc)
    model0 = kept[0][0]
    for path, _ in pick:
        image = read_image(path)
        pred = segment_arrays(model0, [image])[0]
        rules = classical_parts(image, all_parts=True)
        for p in parts:
            pbc[p][0] += bool((pred == names.index(p)).any())
            pbc[p][1] += bool((rules == names.index(p)).any())

    pooled = cv["pooled"]["per_class"]
    before = json.loads((RESULTS / f"{args.baseline}.json").read_text())
    mine = cfg.to_dict()
    theirs = SegmentationTrainConfig.from_dict(before["recipe"]).to_dict()
    if not same_segmentation_recipe(before["recipe"], {**mine, **{k: theirs[k] for k in args.differs}}):
        raise SystemExit(f"results/{args.baseline}.json scored a recipe that differs from this one "
                         f"in more than {', '.join(args.differs)}")
    base_pooled = before["cross_validation"]["pooled"]["per_class"]
    share = {p: on_cell[p][0] / max(on_cell[p][1], 1) for p in parts}
    nucleus_min = round(base_pooled["nucleus"]["iou"] - MARGIN, 3)
    cytoplasm_min = round(base_pooled["cytoplasm"]["iou"] - MARGIN, 3)
    ship = (pooled["nucleus"]["iou"] >= nucleus_min and pooled["cytoplasm"]["iou"] >= cytoplasm_min
            and all(share[p] <= ON_CELL_MAX and found[p][0] >= FOUND_MIN * found[p][1]
                    and min(agreement[p]["precision"], agreement[p]["recall"]) >= args.min_agreement
                    for p in parts))
    n = cv["n_images"]
    rows_iou = "\n".join(
        f"| {c} | {base_pooled[c]['iou']:.3f} | {pooled[c]['iou']:.3f} | "
        f"{cv['per_class'][c]['iou']['mean']:.3f} +- {cv['per_class'][c]['iou']['std']:.3f} |"
        for c in ("background", "nucleus", "cytoplasm"))
    rows_parts = "\n".join(
        f"| {p} | {share[p]:.1%} ({on_cell[p][1]} px) | "
        f"{rules_on_cell[p][0] / max(rules_on_cell[p][1], 1):.1%} | {found[p][0]} / {found[p][1]} | "
        f"{agreement[p]['precision']:.3f} | {agreement[p]['recall']:.3f} | {agreement[p]['iou']:.3f} | "
        f"{pbc[p][0]} / {pbc[p][1]} |" for p in parts)
    table = f"""## Part U-Net with pseudo-labelled {', '.join(parts)}: {cv['k']}-fold CV on CellaVision ({n} cells)

Recipe: `hemascope train segmentation --other-parts {cfg.other_parts}` (other options as shipped{', ' + ' '.join(args.set) if args.set else ''}).
Held-out cells segmented with the `segment_arrays` defaults; predicted {', '.join(parts)} count
as "other" against the expert masks, which have no such label.

| part | baseline recipe, pooled IoU | this recipe, pooled IoU | this recipe, IoU per fold |
|---|---|---|---|
{rows_iou}

| added part | its predicted pixels on the expert's white cell (error) | the rules' own share | held-out images where found: model / rules | precision vs rules | recall vs rules | IoU vs rules | PBC images where found ({len(pick)}): model (fold 0) / rules |
|---|---|---|---|---|---|---|---|
{rows_parts}

The agreement columns compare the model with the classical rules on cells it never saw,
not with an expert: there is no red-cell or platelet ground truth here.

Decision rule (fixed before the run; baseline `{args.baseline}`): ship if nucleus IoU >= {nucleus_min}, cytoplasm
IoU >= {cytoplasm_min}, at most {ON_CELL_MAX:.0%} of each added part's pixels on the white
cell, and each added part found in at least {FOUND_MIN:.0%} of the held-out images where the
rules put it{f", with precision and recall against the rules of at least {args.min_agreement}" if args.min_agreement else ""}: **{'met' if ship else 'not met'}**."""
    write_results(args.name, {
        "parts": parts, "recipe": cfg.to_dict(), "cross_validation": cv,
        "shipped_recipe_pooled": base_pooled,
        "on_white_cell": {p: {"pixels_on_cell": on_cell[p][0], "pixels": on_cell[p][1],
                              "share": share[p],
                              "rules_share": rules_on_cell[p][0] / max(rules_on_cell[p][1], 1)}
                          for p in parts},
        "images_found": {p: {"model": found[p][0], "rules": found[p][1], "of": n} for p in parts},
        "agreement_with_rules": agreement,
        "pbc_found": {p: {"model": pbc[p][0], "rules": pbc[p][1], "of": int(len(pick))} for p in parts},
        "decision": {"baseline": args.baseline, "nucleus_min": nucleus_min,
                     "cytoplasm_min": cytoplasm_min, "on_cell_max": ON_CELL_MAX,
                     "found_min": FOUND_MIN, "min_agreement": args.min_agreement, "ship": ship},
        "cv_seconds": round(train_s, 1), "machine": machine()}, table)


if __name__ == "__main__":
    main()
