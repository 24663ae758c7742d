"""``hemascope data``: inspect, split and convert data sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hemascope.cli._common import Formatter, add_json_option, emit_json, number, progress

FORMAT_HELP = "layout of PATH (auto detects it; see the README's format table)"


def register(groups: argparse._SubParsersAction) -> None:
    from hemascope import taxonomy
    from hemascope.data import FORMATS
    from hemascope.data.info import CHECKS

    data = groups.add_parser("data", help="inspect, split and convert data sets",
                             formatter_class=Formatter)
    verbs = data.add_subparsers(dest="verb", metavar="VERB", required=True)

    info = verbs.add_parser(
        "info", formatter_class=Formatter,
        help="count images, classes, boxes and problems in a data set",
        description="Count images, classes, sub-classes, boxes, image sizes and every problem "
                    "found (unreadable images, unknown labels, boxes outside the image...).\n"
                    "Problems are reported, never fatal; --strict makes them exit with 3.")
    info.add_argument("path", help="data folder, annotation file (CSV/XML/JSON/YAML) or image")
    info.add_argument("--format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    info.add_argument("--check", default="decode", choices=CHECKS,
                      help="open images fully (decode), read headers only, or not at all")
    info.add_argument("--vocabulary", default=None, choices=taxonomy.vocabularies(),
                      help="map single-cell labels into this vocabulary (None keeps every known label)")
    info.add_argument("--images", default=None, help="image folder, when annotations do not say")
    info.add_argument("--max-problems", type=number(int, 0), default=20, help="problems listed in text output")
    info.add_argument("--strict", action="store_true", help="exit with 3 if problems were found")
    add_json_option(info)
    info.set_defaults(handler=_info)

    split = verbs.add_parser(
        "split", formatter_class=Formatter,
        help="write a deterministic stratified train/val/test or k-fold split file",
        description="Stratified by class and deterministic for a seed: the same data and seed "
                    "always give the same file, whatever order the files are listed in.")
    split.add_argument("path", help="single-cell data set (class folders or label table)")
    split.add_argument("--out", required=True, help="split file to write (JSON)")
    split.add_argument("--format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    split.add_argument("--val", type=number(float, 0, 1, high_open=True), default=None,
                       help="validation fraction per class (default 0.1; not with --kfold)")
    split.add_argument("--test", type=number(float, 0, 1, high_open=True), default=None,
                       help="test fraction per class (default 0.2; not with --kfold)")
    split.add_argument("--kfold", type=number(int, 2), default=None, metavar="K",
                       help="write K stratified folds (fold0..foldK-1) instead")
    split.add_argument("--seed", type=int, default=0, help="random seed")
    split.add_argument("--vocabulary", default=None, choices=taxonomy.vocabularies(),
                       help="stratify on labels mapped into this vocabulary")
    add_json_option(split)
    split.set_defaults(handler=_split)

    convert = verbs.add_parser(
        "convert", formatter_class=Formatter,
        help="convert detection annotations between VOC, COCO, YOLO and CVAT",
        description="Annotations only; images are referenced (COCO, VOC, CVAT) or copied "
                    "(YOLO, which needs its own images/ tree).")
    convert.add_argument("path", help="source annotations (folder or file)")
    convert.add_argument("--to", required=True, choices=("coco", "voc", "yolo", "cvat"),
                         help="target format")
    convert.add_argument("--out", required=True,
                         help="output: a .json (coco) / .xml (cvat) file or a folder (voc, yolo)")
    convert.add_argument("--format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    convert.add_argument("--images", default=None, help="image folder, when annotations do not say")
    convert.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_json_option(convert)
    convert.set_defaults(handler=_convert)


def _info(args: argparse.Namespace) -> int:
    from hemascope.data.info import inspect_dataset, render_text

    info = inspect_dataset(args.path, format=args.format, check=args.check,
                           vocabulary=args.vocabulary, image_root=args.images,
                           progress=lambda it: progress(it, desc="checking images"))
    if args.json:
        emit_json(info.to_dict(), args.json)
    if args.json != "-":
        print(render_text(info, max_problems=args.max_problems))
    return 3 if args.strict and info.problems else 0


def _split(args: argparse.Namespace) -> int:
    from hemascope.data import ClassificationSet, load_dataset
    from hemascope.data.splits import SplitFile, save_split, stratified_kfold, stratified_split
    from hemascope.errors import DatasetError, HemascopeError

    ds = load_dataset(args.path, format=args.format, vocabulary=args.vocabulary)
    if not isinstance(ds, ClassificationSet):
        raise DatasetError("data split works on single-cell sets (class folders or label tables)")
    if not ds.samples:
        raise DatasetError(f"{args.path} holds no usable labelled images")
    keys, labels = [s.path for s in ds.samples], ds.labels()
    if args.kfold and (args.val is not None or args.test is not None):
        raise HemascopeError("--kfold writes folds only (each is the test set once; `train "
                             "classifier --cv` carves val from the rest): drop --val/--test")
    args.val = 0.1 if args.val is None else args.val
    args.test = 0.2 if args.test is None else args.test
    if not args.kfold and args.val + args.test >= 1:
        raise HemascopeError("--val plus --test must be below 1")
    if args.kfold:
        assignments = stratified_kfold(keys, labels, k=args.kfold, seed=args.seed)
        method, params = "kfold", {"k": args.kfold}
    else:
        assignments = stratified_split(keys, labels, val=args.val, test=args.test, seed=args.seed)
        method, params = "stratified", {"val": args.val, "test": args.test}
    vocab = f" (vocabulary {ds.vocabulary})" if ds.vocabulary else ""
    split = SplitFile(assignments=assignments, method=method, seed=args.seed, params=params,
                      dataset=f"{Path(args.path).name} ({ds.format}{vocab}): {len(keys)} images")
    save_split(args.out, split)
    summary = {"out": args.out, "method": method, "seed": args.seed, "counts": split.counts()}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v:,}" for k, v in split.counts().items()))
    if ds.problems:
        print(f"note: {len(ds.problems)} file(s) left out because of problems; "
              f"see `hemascope data info {args.path}`", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from hemascope.data import load_dataset
    from hemascope.data.convert import convert_detection_set
    from hemascope.errors import DatasetError
    from hemascope.io.annotations import DetectionSet

    ds = load_dataset(args.path, format=args.format, image_root=args.images)
    if not isinstance(ds, DetectionSet):
        raise DatasetError("data convert works on detection sets (VOC, COCO, YOLO, CVAT)")
    out = convert_detection_set(ds, to=args.to, out=args.out, protect=[args.path],
                                overwrite=args.overwrite)
    summary = {"out": str(out), "to": args.to, "n_images": len(ds.images),
               "n_boxes": sum(len(im.instances) for im in ds.images),
               "problems": [p.to_dict() for p in ds.problems]}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"wrote {out}: {summary['n_images']:,} images, {summary['n_boxes']:,} boxes"
              + (f" ({len(ds.problems)} problem(s) in the source; run `hemascope data info`)"
                 if ds.problems else ""))
    return 0
