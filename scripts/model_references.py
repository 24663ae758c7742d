"""Record what inference compares new images with, from a model's own training data.

    python scripts/model_references.py src/hemascope/weights/smear3_fcos --data ../shared/data/cbc
    python scripts/model_references.py src/hemascope/weights/cellparts_unet --data ../shared/data/cellavision

Models trained since these references existed carry them in their config: a detector its
training fields' background colour (``background``, for white balance); a part
segmenter its training images' background and the median share of its image a training
cell covers (``background``, ``cell_fraction``, for white balance and zoom). This adds them
to an older model folder: it reads the data the model was trained on (a detector: the
``train`` split; a segmenter: every image-mask pair, at its input size, as training does),
writes the references (and where they came from) into ``config.json`` atomically, and,
where the folder has a MODEL_CARD.md, the paragraph that states them. The weights are not
touched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CARD_HEADING = "**White balance**"


def card_paragraph(cfg: dict) -> str:
    bg = cfg["background"]
    source = cfg.get("background_source")
    how = (f"Recorded by `{source['command']}`." if source else
           "Measured on the training data when the model was trained.")
    if cfg.get("task") == "segmentation":
        return (f"{CARD_HEADING}: before segmentation each image's background (the median "
                f"colour of its brightest tenth) is brought to the training images' median, RGB "
                f"({bg[0]:.0f}, {bg[1]:.0f}, {bg[2]:.0f}), by per-channel gains (`--no-balance` "
                f"turns it off). The median share of its image that a training cell covers "
                f"({cfg['cell_fraction']:.3f}) sets the zoom pass: a cell far smaller or larger "
                f"in its image is segmented again in a window that gives it that share "
                f"(`--no-zoom` turns it off). {how}")
    return (f"{CARD_HEADING}: before detection each field's background (the median colour of "
            f"its brightest tenth) is brought to the training fields' median, RGB "
            f"({bg[0]:.0f}, {bg[1]:.0f}, {bg[2]:.0f}), by per-channel gains "
            f"(`hemascope.stain.background`; `--no-balance` turns it off). {how}")


def references(cfg: dict, data: str, split: str) -> tuple[dict, int]:
    """The references of a detector or segmenter, and how many images they came from."""
    if cfg.get("task") == "segmentation":
        from hemascope.segment.data import find_mask_pairs, load_pairs
        from hemascope.train.segmentation import reference_stats

        pairs, _ = find_mask_pairs(data)
        x, y, _ = load_pairs(pairs, int(cfg["image_size"]))
        return reference_stats(x, y), len(x)
    from hemascope.data import load_dataset
    from hemascope.evaluate.detector import load_fields
    from hemascope.stain.background import background_reference

    fields = load_fields(load_dataset(data), cfg["classes"], split=split).fields
    return {"background": background_reference(f.image for f in fields)}, len(fields)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="detector or part-segmenter folder")
    ap.add_argument("--data", required=True, help="the data set it was trained on")
    ap.add_argument("--split", default="train", help="(detectors) the split it was fitted on")
    args = ap.parse_args()

    from hemascope.io.atomic import write_json, write_text
    from hemascope.models.artifact import read_config

    cfg = read_config(args.model)
    found, n = references(cfg, args.data, args.split)
    cfg.update(found)
    cfg["background_source"] = {
        "split": args.split if cfg.get("task") != "segmentation" else "all pairs", "n_images": n,
        "command": f"python scripts/model_references.py {args.model} --data {args.data}"}
    write_json(args.model / "config.json", cfg)
    card = args.model / "MODEL_CARD.md"
    if card.is_file():
        lines = [ln for ln in card.read_text().split("\n\n") if not ln.startswith(CARD_HEADING)]
        at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("**Architecture**")), 1)
        lines.insert(at, card_paragraph(cfg))
        write_text(card, "\n\n".join(lines))
    print(json.dumps({**found, **cfg["background_source"]}))


if __name__ == "__main__":
    main()
