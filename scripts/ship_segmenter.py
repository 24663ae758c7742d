"""Copy a trained cell-part U-Net into the package as the shipped default, with its card.

    python scripts/ship_segmenter.py runs/cellparts_unet [--name cellparts_unet] [--card-only]

Copies config.json and model.safetensors to src/hemascope/weights/NAME/ and writes
MODEL_CARD.md from the recorded config (its k-fold cross-validation included) and history.
Nothing in the card is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _ship import WEIGHTS, copy_run, history


def card(cfg: dict, hist: list[dict]) -> str:
    t = cfg["training"]
    tc = t["config"]
    cv = cfg["metrics"].get("cross_validation")
    scores = "No cross-validation was recorded (train with `--cv K`).\n"
    if cv:
        rows = "\n".join(
            f"| {c} | {v['iou']['mean']:.3f} +- {v['iou']['std']:.3f} | "
            f"{v['f1']['mean']:.3f} +- {v['f1']['std']:.3f} | {cv['pooled']['per_class'][c]['iou']:.3f} |"
            for c, v in cv["per_class"].items())
        scores = (f"{cv['k']}-fold cross-validation on the {cv['n_images']} training cells (each cell "
                  "scored once, at its own resolution, by a model that never saw it; mean +- std "
                  "over folds, and pooled over all held-out pixels):\n\n"
                  "| class | IoU | F1 | pooled IoU |\n|---|---|---|---|\n" + rows +
                  f"\n| **mIoU** | {cv['miou']['mean']:.3f} +- {cv['miou']['std']:.3f} | | "
                  f"{cv['pooled']['miou']:.3f} |\n")
    last = hist[-1] if hist else {}
    return f"""# Model card: U-Net cell-part segmenter (shipped default)

**Task**: split a single-cell image into {', '.join(cfg.get('trained_classes', cfg['classes']))}.

**Architecture**: U-Net (Ronneberger et al. 2015), width {tc['width']}, depth {tc['depth']},
random initialisation; input {cfg['image_size']}x{cfg['image_size']} RGB (resized, bilinear),
normalised with the training mean/std; logits are resized back to the image.

**Data**: `{t['data']}`: CellaVision single cells with expert nucleus/cytoplasm masks
(100 cells, 5 types; 255 nucleus, 128 cytoplasm, 0 other). All {t['n_images']} pairs train the
shipped model; the recipe was scored by cross-validation first (below).

**Training**: `{t['command']}` - AdamW lr {tc['lr']}, weight decay {tc['weight_decay']}, batch
{tc['batch_size']}, {tc['epochs']} epochs, cross-entropy + {tc['dice_weight']} x soft Dice; flips,
90-degree turns, zoom {tc['zoom']}, colour jitter {tc['colour']}. Wall time
{t['wall_time_s'] / 60:.1f} min on {t['device']}. Last epoch: {json.dumps(last)}.

## Scores

{scores}
Reproduce: `hemascope train segmentation --data ../shared/data/cellavision --out DIR --cv 5`
or `python benchmarks/segmentation_cellavision.py`.

## Limits

One lab, one scanner, 100 cells: cross-validation here is within that lab, so it says how
well the recipe learns the task, not how it transfers; colour jitter during training is the
only defence against other stains. Vacuole, platelet and red-cell classes have no ground
truth here and are not predicted.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="cellparts_unet")
    ap.add_argument("--card-only", action="store_true")
    args = ap.parse_args()
    dest = WEIGHTS / args.name if args.card_only else copy_run(args.run, args.name)
    cfg = json.loads((dest / "config.json").read_text())
    (dest / "MODEL_CARD.md").write_text(card(cfg, history(args.run)))
    print(f"{'rewrote card of' if args.card_only else 'shipped'} {dest}")


if __name__ == "__main__":
    main()
