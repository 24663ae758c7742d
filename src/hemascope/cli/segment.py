"""``hemascope segment``: cell masks and crops."""

from __future__ import annotations

import argparse
from pathlib import Path

from hemascope.cli._common import (Formatter, add_json_option, emit_json, iter_images, number,
                                   finish_batch, output_stems)


def register(groups: argparse._SubParsersAction) -> None:
    seg = groups.add_parser("segment", help="cell masks and crops", formatter_class=Formatter)
    verbs = seg.add_subparsers(dest="verb", metavar="VERB", required=True)
    ex = verbs.add_parser(
        "extract", formatter_class=Formatter,
        help="classical cell extraction (HSV threshold + watershed)",
        description="For each single-cell image, find the stained cell nearest the centre "
                    "(HSV saturation threshold, dilation, distance transform, watershed) and "
                    "write OUT/<name>_crop.png and OUT/<name>_mask.png (255 = cell).")
    ex.add_argument("paths", nargs="+", help="images and/or folders")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--threshold", type=number(float, 0, 255), default=None,
                    help="saturation threshold 0-255 (default: Otsu per image)")
    ex.add_argument("--margin", type=number(float, 0, 5), default=0.1, help="crop margin around the cell box")
    add_json_option(ex)
    ex.set_defaults(handler=_extract)

    pr = verbs.add_parser(
        "predict", formatter_class=Formatter, help="cell-part segmentation (U-Net)",
        description="For each single-cell image write OUT/<name>_parts.png (indexed PNG: 0 "
                    "background, 1 nucleus, 2 cytoplasm, 3 vacuole, 4 platelet, 5 RBC) and "
                    "OUT/<name>_overlay.png. Unreadable files are listed and skipped.")
    pr.add_argument("paths", nargs="+", help="images and/or folders")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--model", default="default", help="segmentation model folder or 'default'")
    add_adjust_options(pr)
    add_json_option(pr)
    pr.set_defaults(handler=_predict)

    ps = verbs.add_parser(
        "pseudo", formatter_class=Formatter, help="classical cell-part pseudo-labels",
        description="Label single-cell images with the classical colour rules "
                    "(hemascope.segment.parts: nucleus by Otsu on blue-minus-green, cell body by "
                    "colour and connectivity) and write a training folder: OUT/images/<name> "
                    "(a link or copy of the input) and OUT/masks/<stem>.png (indexed parts). "
                    "Pseudo-labels, not ground truth: images where no nucleus is found are "
                    "skipped and listed. --all-parts also labels vacuoles, platelets and red "
                    "cells.")
    ps.add_argument("paths", nargs="+", help="images and/or folders")
    ps.add_argument("--out", required=True, help="output folder (images/ and masks/)")
    ps.add_argument("--limit", type=number(int, 0), default=0, help="label at most this many images (0: all)")
    ps.add_argument("--all-parts", action="store_true",
                    help="also label vacuoles, platelets and red cells (default: nucleus and "
                         "cytoplasm only)")
    add_json_option(ps)
    ps.set_defaults(handler=_pseudo)


def _pseudo(args: argparse.Namespace) -> int:
    import os
    import shutil

    from hemascope.classify import expand_paths
    from hemascope.io.atomic import check_output_folder, guard_inputs
    from hemascope.io.masks import write_part_mask
    from hemascope.segment.parts import classical_parts

    files = expand_paths(args.paths)
    if args.limit:
        files = files[:args.limit]
    out = Path(args.out)
    check_output_folder(out, not_inside=[p for p in args.paths if Path(p).is_dir()])
    (out / "images").mkdir(parents=True, exist_ok=True)
    done, errors, seen = [], {}, set()
    for f, img, err in iter_images(files, desc="pseudo-labels"):
        if img is None:
            errors[str(f)] = err
            continue
        if f.stem in seen:
            errors[str(f)] = "another input has the same file name"
            continue
        parts = classical_parts(img, all_parts=args.all_parts)
        nucleus = float((parts == 1).mean())
        if not nucleus:
            errors[str(f)] = "no nucleus found"
            continue
        if nucleus > 0.8:  # a flat or overexposed image, not a cell with its surroundings
            errors[str(f)] = f"the 'nucleus' covers {nucleus:.0%} of the image: no plausible cell"
            continue
        seen.add(f.stem)
        dest = out / "images" / f.name
        guard_inputs(dest, files)
        if not dest.exists():
            try:
                os.link(f, dest)
            except OSError:
                shutil.copyfile(f, dest)
        write_part_mask(out / "masks" / f"{f.stem}.png", parts)
        done.append(str(f))
    if args.json:
        emit_json({"labelled": len(done), "errors": errors, "out": str(out)}, args.json)
    else:
        print(f"pseudo-labelled {len(done)} image(s) into {out}")
    return finish_batch(errors, len(done))


def add_adjust_options(p: argparse.ArgumentParser) -> None:
    """``--no-balance``, ``--no-zoom``, ``--zoom-pad``, ``--no-mirror`` and ``--centre-cell |
    --all-cells``: the adjustments part segmentation makes."""
    from hemascope.segment.predict import CENTRE_CELL, MIRROR_MARGINS, ZOOM_PADS

    p.add_argument("--no-balance", dest="balance", action="store_false",
                   help="do not white-balance each image onto the training images' background")
    p.add_argument("--no-zoom", dest="zoom", action="store_false",
                   help="no second pass for a cell much smaller or larger in its image than "
                        "the training cells")
    p.add_argument("--zoom-pad", choices=ZOOM_PADS, default="border",
                   help="how the zoom pass pads its window where it leaves the image: with "
                        "the image's border colour, or with the image mirrored")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="segment flat one-colour margins (a crop padded to size) as they are, "
                        "instead of refilling them by mirroring the image and calling them "
                        "background")
    p.set_defaults(mirror=MIRROR_MARGINS)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--centre-cell", dest="centre", action="store_true",
                       help="keep the parts of the centre cell only (one white cell per "
                            "single-cell image)" + (" (default)" if CENTRE_CELL else ""))
    which.add_argument("--all-cells", dest="centre", action="store_false",
                       help="keep the parts of every cell in the image"
                            + ("" if CENTRE_CELL else " (default)"))
    p.set_defaults(centre=CENTRE_CELL)


#: Measurements of :mod:`hemascope.segment.morphometry` that ``parts.csv`` adds after the
#: pixel counts (its N:C and lobes come from the cell's outline, as ``analyze`` reports them).
SHAPE_COLUMNS = ("cell_share", "nucleus_solidity", "nucleus_elongation", "cell_solidity",
                 "cell_elongation")


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from hemascope.classify import expand_paths
    from hemascope.io.atomic import guard_inputs
    from hemascope.io.image import write_image
    from hemascope.io.masks import write_part_mask
    from hemascope.io.atomic import write_text
    from hemascope.pipeline.outputs import csv_text
    from hemascope.segment.morphometry import MEASUREMENTS, measure_cell
    from hemascope.segment.outline import outline_from_parts
    from hemascope.segment.predict import load_segmenter, overlay_parts, segment_arrays

    loaded = load_segmenter(args.model)
    classes = loaded.config["classes"]
    files = expand_paths(args.paths)
    stems = output_stems(files)
    out = Path(args.out)
    rows, errors = [], {}
    for f, img, err in iter_images(files, desc="segmenting"):
        if img is None:
            errors[str(f)] = err
            continue
        mask = segment_arrays(loaded, [img], balance=args.balance, zoom=args.zoom,
                              centre=args.centre, mirror=args.mirror,
                              zoom_pad=args.zoom_pad)[0]
        parts, over = out / f"{stems[f]}_parts.png", out / f"{stems[f]}_overlay.png"
        guard_inputs(parts, files)
        guard_inputs(over, files)
        write_part_mask(parts, mask)
        write_image(over, overlay_parts(img, mask))
        counts = np.bincount(mask.ravel(), minlength=len(classes))
        cell = outline_from_parts(mask, classes, min_area_fraction=0.002)
        shape = ({k: round(float(v), 4) for k, v in zip(MEASUREMENTS, measure_cell(mask, classes))
                  if k in SHAPE_COLUMNS} if {"nucleus", "cytoplasm"} <= set(classes) else {})
        rows.append({"path": str(f), "parts": str(parts), "overlay": str(over),
                     "pixels": {c: int(n) for c, n in zip(classes, counts) if n},
                     "nc_ratio": round(cell.nc_ratio, 4) if cell else None,
                     "nucleus_lobes": len(cell.nucleus) if cell else 0, "shape": shape})
    if rows:
        header = ["path", "nc_ratio", "nucleus_lobes", *[f"{c}_px" for c in classes],
                  *SHAPE_COLUMNS]
        guard_inputs(out / "parts.csv", files)
        write_text(out / "parts.csv", csv_text(header, [
            [r["path"], "" if r["nc_ratio"] is None else r["nc_ratio"], r["nucleus_lobes"],
             *[r["pixels"].get(c, 0) for c in classes],
             *[r["shape"].get(k, "") for k in SHAPE_COLUMNS]] for r in rows]))
    if args.json:
        emit_json({"images": rows, "errors": errors}, args.json)
    else:
        print(f"segmented {len(rows)} image(s) into {out} (per image: parts.csv)")
    return finish_batch(errors, len(rows))


def _extract(args: argparse.Namespace) -> int:
    import numpy as np

    from hemascope.classify import expand_paths
    from hemascope.io.atomic import guard_inputs
    from hemascope.io.image import write_image
    from hemascope.segment.classical import extract_cell

    files = expand_paths(args.paths)
    stems = output_stems(files)
    out = Path(args.out)
    rows, errors = [], {}
    for f, img, err in iter_images(files, desc="extracting"):
        if img is None:
            errors[str(f)] = err
            continue
        cell = extract_cell(img, threshold=args.threshold)
        if cell is None:
            errors[str(f)] = "no stained cell found"
            continue
        h, w = img.shape[:2]
        x0, y0, x1, y1 = cell.box
        mx, my = args.margin * (x1 - x0), args.margin * (y1 - y0)
        c0, r0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
        c1, r1 = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
        crop, mask = out / f"{stems[f]}_crop.png", out / f"{stems[f]}_mask.png"
        guard_inputs(crop, files)
        guard_inputs(mask, files)
        write_image(crop, img[r0:r1, c0:c1])
        write_image(mask, cell.mask.astype(np.uint8) * 255)
        rows.append({"path": str(f), "box": list(cell.box), "area": cell.area,
                     "crop": str(crop), "mask": str(mask)})
    if args.json:
        emit_json({"cells": rows, "errors": errors}, args.json)
    else:
        print(f"extracted {len(rows)} cell(s) to {out}")
    return finish_batch(errors, len(rows))
