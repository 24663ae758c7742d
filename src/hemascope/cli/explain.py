"""``hemascope explain``: show why a model decided what it did."""

from __future__ import annotations

import argparse
from pathlib import Path

from hemascope.cli._common import Formatter, add_json_option, emit_json, iter_images, print_skipped


def register(groups: argparse._SubParsersAction) -> None:
    ex = groups.add_parser("explain", help="explanations (Grad-CAM)", formatter_class=Formatter)
    verbs = ex.add_subparsers(dest="verb", metavar="VERB", required=True)
    gc = verbs.add_parser(
        "gradcam", formatter_class=Formatter, help="Grad-CAM overlays for single-cell images",
        description="Writes OUT/<image name>_gradcam.png: the image with the Grad-CAM heat map "
                    "of the predicted (or --target) class blended over it.")
    gc.add_argument("paths", nargs="+", help="image files and/or folders")
    gc.add_argument("--out", required=True, help="folder for the overlay PNGs")
    gc.add_argument("--model", default="default", help="model folder or 'default'")
    gc.add_argument("--target", default=None,
                    help="class (or, with --attribute, value) to explain (default: the predicted one)")
    gc.add_argument("--attribute", default=None, metavar="NAME",
                    help="explain this attribute head of an attribute model (--model from "
                         "`hemascope train attributes`), e.g. nucleus_shape")
    gc.add_argument("--alpha", type=float, default=0.45, help="heat-map opacity")
    add_json_option(gc)
    gc.set_defaults(handler=_gradcam)


def _gradcam(args: argparse.Namespace) -> int:
    from hemascope.classify import expand_paths, preprocess
    from hemascope.errors import HemascopeError
    from hemascope.explain.gradcam import gradcam, overlay
    from hemascope.io.atomic import guard_inputs
    from hemascope.io.image import write_image
    from hemascope.models.artifact import load_classifier
    from hemascope.taxonomy import resolve

    target, block = None, None
    if args.attribute:
        from hemascope.attributes import load_attribute_model

        loaded = load_attribute_model(args.model)
        attrs = loaded.model.attributes
        if args.attribute not in attrs:
            raise HemascopeError(f"--attribute {args.attribute!r} is not one of the model's "
                                 f"attributes ({', '.join(attrs)})")
        names, block = list(attrs[args.attribute]), loaded.model.slices[args.attribute]
        if args.target is not None:
            if args.target not in names:
                raise HemascopeError(f"--target {args.target!r} is not a value of {args.attribute} "
                                     f"({', '.join(names)})")
            target = names.index(args.target)
    else:
        loaded = load_classifier(args.model)
        names = loaded.classes
        if args.target is not None:
            concept = resolve(args.target)
            if concept not in names:
                raise HemascopeError(f"--target {args.target!r} is not a class of the model "
                                     f"({', '.join(names)})")
            target = names.index(concept)
    files = expand_paths(args.paths)
    out_dir = Path(args.out)
    rows, errors = [], {}
    for f, img, err in iter_images(files, desc="grad-cam"):
        if img is None:
            errors[str(f)] = err
            continue
        [cam] = gradcam(loaded.model, preprocess([img], loaded.config), target=target, block=block)
        dest = out_dir / (f"{f.stem}_{args.attribute}_gradcam.png" if args.attribute
                          else f"{f.stem}_gradcam.png")
        guard_inputs(dest, files)
        write_image(dest, overlay(img, cam.heatmap, alpha=args.alpha))
        rows.append({"path": str(f), "overlay": str(dest), "class": names[cam.target],
                     "probability": cam.score})
    if args.json:
        emit_json({"explanations": rows, "errors": errors}, args.json)
    if args.json != "-":
        for r in rows:
            print(f"{r['path']}\t{r['class']}\t{r['probability']:.3f}\t{r['overlay']}")
    print_skipped(errors)
    return 0 if rows else 1
