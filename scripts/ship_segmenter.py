"""Copy a trained cell-part U-Net into the package as the shipped default, with its card.

    python scripts/ship_segmenter.py runs/cellparts_unet [--name cellparts_unet] [--card-only]
        [--cv-from benchmarks/results/segmentation_cellavision.json]
        [--shift-from segmentation_shift] [--parts-from segmentation_parts]

Copies config.json and model.safetensors to src/hemascope/weights/NAME/ and writes
MODEL_CARD.md from the recorded config (its k-fold cross-validation, if it was trained with
``--cv``), its history and the recipe's scores under simulated lab shifts
(``benchmarks/results/segmentation_shift.json``, or the result named by ``--shift-from``,
when it was run on the same recipe) and what ``benchmarks/segmentation_parts.py`` measured of
its pseudo-labelled parts (``--parts-from``, same condition).
Nothing in the card is typed by hand. ``--cv-from`` records in the shipped config the
k-fold cross-validation that ``benchmarks/segmentation_cellavision.py`` ran on the same
recipe (the computation ``--cv K`` does while training), for a model trained without
``--cv``; a result of another recipe is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hemascope.train.config import same_segmentation_recipe

from _ship import WEIGHTS, benchmark, copy_run, history
from model_references import card_paragraph


#: The inference modes of ``benchmarks/segmentation_shift.py``, in words.
MODES = {"plain": "no adjustment", "balance": "white balance only",
         "zoom": "the zoom pass only", "both": "white balance and the zoom pass",
         "centre": "both, then the centre cell's parts only",
         "margins": "centre, with flat margins mirrored (the defaults of `segment_arrays`)",
         "mirror": "margins, with the zoom window mirrored too"}


def shift_section(shift: dict | None, recipe: dict) -> str:
    """The simulated lab shifts of ``benchmarks/segmentation_shift.py``, when that run used
    this model's recipe (else nothing: its numbers would describe another model)."""
    if not shift or not same_segmentation_recipe(shift["config"], recipe):
        return ""
    iou = shift["iou"]
    modes = list(iou)
    rows = "\n".join(f"| {name} | " + " | ".join(
        f"{iou[m][name]['nucleus']:.3f} / {iou[m][name]['cytoplasm']:.3f}" for m in modes) + " |"
        for name in iou[modes[0]])
    return (f"\n## Other labs, simulated\n\n`python benchmarks/segmentation_shift.py` "
            f"({shift['k']}-fold cross-validation of this recipe on the {shift['n_images']} cells; "
            "each held-out fold changed as another lab would change it, masks moved with the "
            "pixels). Nucleus / cytoplasm IoU pooled over the held-out pixels; "
            + "; ".join(f"`{m}`: {MODES.get(m, m)}" for m in modes) + ":\n\n"
            f"| held-out cells | {' | '.join(modes)} |\n|---|{'---|' * len(modes)}\n{rows}\n")


def parts_section(parts: dict | None, recipe: dict) -> str:
    """What ``benchmarks/segmentation_parts.py`` measured of the pseudo-labelled parts, when
    it ran this recipe."""
    if not parts or not same_segmentation_recipe(parts["recipe"], recipe):
        return ""
    rows = "\n".join(
        f"| {p} | {parts['on_white_cell'][p]['share']:.1%} | "
        f"{parts['images_found'][p]['model']} / {parts['images_found'][p]['rules']} | "
        f"{parts['agreement_with_rules'][p]['precision']:.3f} / "
        f"{parts['agreement_with_rules'][p]['recall']:.3f} | "
        f"{parts['pbc_found'][p]['model']} / {parts['pbc_found'][p]['rules']} of "
        f"{parts['pbc_found'][p]['of']} |" for p in parts["parts"])
    return ("\n## Pseudo-labelled parts\n\n`python benchmarks/segmentation_parts.py` (the same "
            "cross-validation). No expert marked these parts, so what can be measured is where "
            "they must not be (the expert's white cell) and how well the model repeats the "
            "rules on cells it never saw:\n\n"
            "| part | its pixels on the expert's white cell (error) | held-out images where "
            "found: model / rules | precision / recall vs the rules | PBC images where found: "
            "model / rules |\n|---|---|---|---|---|\n" + rows + "\n")


def card(cfg: dict, hist: list[dict], shift: dict | None = None, parts: dict | None = None) -> str:
    t = cfg["training"]
    tc = t["config"]
    other = [p.strip() for p in tc.get("other_parts", "").split(",") if p.strip()]
    names = {"rbc": "red cells", "platelet": "platelets", "vacuole": "vacuoles"}

    def words(ps: list[str]) -> str:
        w = [names[p] for p in ps]
        return (", ".join(w[:-1]) + " and " + w[-1] if len(w) > 1 else w[0]).capitalize()

    pseudo = (f" {words(other)} are added to the masks "
              "as pseudo-labels of the classical colour rules "
              f"(`--other-parts {tc['other_parts']}`, `hemascope.segment.parts.add_pseudo_parts`), "
              "only on pixels the expert called other; no expert marked them." if other else "")
    missing = [p for p in ("vacuole", "platelet", "rbc") if p not in other]
    limits = f"{words(missing)} have no ground truth here and are not predicted. " if missing else ""
    if other:
        limits += (f"{words(other)} are learnt from colour rules, not from an expert: the model "
                   "is at best as good as the rules (`benchmarks/results/pseudo_parts.md`).")
        if parts and same_segmentation_recipe(parts["recipe"], tc):
            weak = [p for p in other if parts["agreement_with_rules"][p]["recall"] < 0.5]
            if weak:
                limits += (f" {words(weak)}: the model finds few of the rules' pixels on cells "
                           "it never saw (recall " + ", ".join(
                               f"{parts['agreement_with_rules'][p]['recall']:.2f}" for p in weak)
                           + " above), so treat them as a hint.")
    cv = cfg["metrics"].get("cross_validation")
    shifts = shift_section(shift, tc)
    scores = ("No cross-validation was recorded with the model (it was trained without `--cv`)"
              + ("; the recipe's cross-validated scores are the `none` row of the table below.\n"
                 if shifts else ".\n"))
    if cv:
        rows = "\n".join(
            f"| {c} | {v['iou']['mean']:.3f} +- {v['iou']['std']:.3f} | "
            f"{v['f1']['mean']:.3f} +- {v['f1']['std']:.3f} | {cv['pooled']['per_class'][c]['iou']:.3f} |"
            for c, v in cv["per_class"].items())
        source = cfg["metrics"].get("cross_validation_source")
        by = f" (run by `{source}` on this recipe)" if source else ""
        scores = (f"{cv['k']}-fold cross-validation on the {cv['n_images']} training cells{by}; "
                  "each cell scored once, at its own resolution, by a model that never saw it; "
                  "mean +- std over folds, and pooled over all held-out pixels:\n\n"
                  "| class | IoU | F1 | pooled IoU |\n|---|---|---|---|\n" + rows +
                  f"\n| **mIoU** | {cv['miou']['mean']:.3f} +- {cv['miou']['std']:.3f} | | "
                  f"{cv['pooled']['miou']:.3f} |\n")
    last = hist[-1] if hist else {}
    zoom = (f"zoom log-uniform from {tc['min_scale']} to {1 + tc['zoom']:.2f}"
            if tc.get("min_scale") else f"zoom {tc['zoom']}")
    balance = f"\n{card_paragraph(cfg)}\n" if cfg.get("background") else ""
    return f"""# Model card: U-Net cell-part segmenter (shipped default)

**Task**: split a single-cell image into {', '.join(cfg.get('trained_classes', cfg['classes']))}.

**Architecture**: U-Net (Ronneberger et al. 2015), width {tc['width']}, depth {tc['depth']},
random initialisation; input {cfg['image_size']}x{cfg['image_size']} RGB (resized, bilinear),
normalised with the training mean/std; logits are resized back to the image.
{balance}
**One cell per image**: the parts of other cells (a neighbour's edge, red cells taken for
cytoplasm) are dropped; only the connected region of cell parts at (or nearest) the image
centre is kept (`--all-cells` keeps them all).

**Data**: `{t['data']}`: CellaVision single cells with expert nucleus/cytoplasm masks
(100 cells, 5 types; 255 nucleus, 128 cytoplasm, 0 other).{pseudo} All {t['n_images']} pairs
train the shipped model; the recipe was scored by cross-validation first (below).

**Training**: `{t['command']}` - AdamW lr {tc['lr']}, weight decay {tc['weight_decay']}, batch
{tc['batch_size']}, {tc['epochs']} epochs, cross-entropy + {tc['dice_weight']} x soft Dice; flips,
90-degree turns, {zoom}, hue turns up to {tc.get('hue', 0):g} degrees, colour jitter
{tc['colour']}. Wall time
{t['wall_time_s'] / 60:.1f} min on {t['device']}. Last epoch: {json.dumps(last)}.

## Scores

{scores}{parts_section(parts, tc)}{shifts}
Reproduce: `hemascope train segmentation --data ../shared/data/cellavision --out DIR --cv 5`,
`python benchmarks/segmentation_parts.py`, `python benchmarks/segmentation_cellavision.py` or
`python benchmarks/segmentation_shift.py --modes margins --name segmentation_shift_parts`
(each takes `--models DIR` to keep the fold models and score them again without training).

## Limits

One lab, one scanner, 100 cells: cross-validation here is within that lab, so it says how
well the recipe learns the task, not how it transfers. Other labs are only simulated (the
table above): colour jitter, white balance and the zoom range are the defences against
other stains, lamps and magnifications. Keeping the centre cell assumes one white cell per
image, centred, as single-cell images are; for a field with several cells use
`--all-cells` (or `hemascope analyze`, which crops each cell first). {limits}
"""


def record_cv(dest: Path, result: Path) -> None:
    """Copy a benchmark's cross-validation of this model's recipe into its config."""
    from hemascope.io.atomic import write_json

    cfg = json.loads((dest / "config.json").read_text())
    bench = json.loads(result.read_text())
    if not same_segmentation_recipe(bench["recipe"], cfg["training"]["config"]):
        raise SystemExit(f"{result} cross-validated another recipe than {dest}'s")
    cfg["metrics"]["cross_validation"] = bench["cross_validation"]
    cfg["metrics"]["cross_validation_source"] = f"python benchmarks/{result.stem}.py"
    write_json(dest / "config.json", cfg)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="cellparts_unet")
    ap.add_argument("--card-only", action="store_true")
    ap.add_argument("--cv-from", type=Path, default=None,
                    help="results JSON of benchmarks/segmentation_cellavision.py")
    ap.add_argument("--shift-from", default="segmentation_shift",
                    help="results name of benchmarks/segmentation_shift.py")
    ap.add_argument("--parts-from", default="segmentation_parts",
                    help="results name of benchmarks/segmentation_parts.py")
    args = ap.parse_args()
    dest = WEIGHTS / args.name if args.card_only else copy_run(args.run, args.name)
    if args.cv_from:
        record_cv(dest, args.cv_from)
    cfg = json.loads((dest / "config.json").read_text())
    (dest / "MODEL_CARD.md").write_text(card(cfg, history(args.run), benchmark(args.shift_from),
                                             benchmark(args.parts_from)))
    print(f"{'rewrote card of' if args.card_only else 'shipped'} {dest}")


if __name__ == "__main__":
    main()
