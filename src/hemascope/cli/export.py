"""``hemascope export``: models in other formats (ONNX for fast CPU inference)."""

from __future__ import annotations

import argparse

from hemascope.cli._common import Formatter, add_json_option, emit_json, number, print_skipped


def register(groups: argparse._SubParsersAction) -> None:
    ex = groups.add_parser("export", help="models in other formats", formatter_class=Formatter)
    verbs = ex.add_subparsers(dest="verb", metavar="VERB", required=True)
    clf = verbs.add_parser(
        "classifier", formatter_class=Formatter, help="a classifier as ONNX (float32 or int8)",
        description="Write a classifier folder's network as OUT/model.onnx with a copy of its "
                    "config; `--model OUT` then works wherever a classifier does (classify, "
                    "evaluate, analyze), run by ONNX Runtime. With --int8 the graph is quantised "
                    "(static, per-channel weights) using activation ranges measured on "
                    "--calibration images: give training images, never your test set.")
    clf.add_argument("--model", default="default", help="classifier folder or 'default'")
    clf.add_argument("--out", required=True, help="new folder for the ONNX model")
    clf.add_argument("--int8", action="store_true", help="quantise to int8 (needs --calibration)")
    clf.add_argument("--calibration", nargs="+", default=None, metavar="PATH",
                     help="images and/or folders to calibrate int8 activations on")
    clf.add_argument("--calibration-images", type=number(int, 1), default=200,
                     help="use at most this many, evenly spread over the files found")
    add_json_option(clf)
    clf.set_defaults(handler=_classifier)


def _classifier(args: argparse.Namespace) -> int:
    from hemascope.classify import expand_paths
    from hemascope.errors import ImageReadError
    from hemascope.io.image import read_image
    from hemascope.models.artifact import ONNX_WEIGHTS, ModelError
    from hemascope.models.onnx import export_classifier

    images, errors = None, {}
    if args.int8:
        if not args.calibration:
            raise ModelError("--int8 needs --calibration images (a few hundred training cells)")
        if args.calibration_images < 1:
            raise ModelError("--calibration-images must be at least 1")
        files = expand_paths(args.calibration)
        step = max(1, len(files) // args.calibration_images)
        images = []
        for f in files[::step][:args.calibration_images]:
            try:
                images.append(read_image(f))
            except ImageReadError as e:
                errors[str(f)] = e.reason
        print_skipped(errors)
    elif args.calibration:
        raise ModelError("--calibration only applies with --int8")
    out = export_classifier(args.model, args.out, calibration=images)
    summary = {"out": str(out), "int8": bool(args.int8),
               "calibration_images": len(images or []), "skipped": errors}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"wrote {out / ONNX_WEIGHTS}" + (f" (int8, calibrated on {len(images)} images)"
                                               if args.int8 else " (float32)"))
    return 0
