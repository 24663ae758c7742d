"""Record a detector's background reference (white balance) from its training fields.

    python scripts/detector_background.py src/hemascope/weights/smear3_fcos --data ../shared/data/cbc

Detectors trained since `hemascope.stain.background` existed carry ``background`` in
their config (the median colour of the brightest tenth of each training field). This adds
it to an older detector folder: it reads the ``train`` split of the data set the detector
was trained on, writes ``background`` (and where it came from) into ``config.json``
atomically, and, where the folder has a MODEL_CARD.md, the paragraph that states it.
The weights are not touched.
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
           "Measured on the training fields by `hemascope train detector`.")
    return (f"{CARD_HEADING}: before detection each field's background (the median colour of "
            f"its brightest tenth) is brought to the training fields' median, RGB "
            f"({bg[0]:.0f}, {bg[1]:.0f}, {bg[2]:.0f}), by per-channel gains "
            f"(`hemascope.stain.background`; `--no-balance` turns it off). {how}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="detector folder")
    ap.add_argument("--data", required=True, help="the data set it was trained on")
    ap.add_argument("--split", default="train")
    args = ap.parse_args()

    from hemascope.data import load_dataset
    from hemascope.evaluate.detector import load_fields
    from hemascope.io.atomic import write_json, write_text
    from hemascope.models.artifact import read_config
    from hemascope.stain.background import background_reference

    cfg = read_config(args.model)
    fields = load_fields(load_dataset(args.data), cfg["classes"], split=args.split).fields
    cfg["background"] = background_reference(f.image for f in fields)
    cfg["background_source"] = {
        "split": args.split, "n_fields": len(fields),
        "command": f"python scripts/detector_background.py {args.model} --data {args.data}"}
    write_json(args.model / "config.json", cfg)
    card = args.model / "MODEL_CARD.md"
    if card.is_file():
        lines = [ln for ln in card.read_text().split("\n\n") if not ln.startswith(CARD_HEADING)]
        at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("**Architecture**")), 1)
        lines.insert(at, card_paragraph(cfg))
        write_text(card, "\n\n".join(lines))
    print(json.dumps({"background": cfg["background"], **cfg["background_source"]}))


if __name__ == "__main__":
    main()
