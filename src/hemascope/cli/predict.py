"""``hemascope classify`` and ``hemascope evaluate``: use and measure trained models."""

from __future__ import annotations

import argparse
import sys

from hemascope.cli._common import (Formatter, add_json_option, emit_json, finish_batch, number,
                                   progress)
from hemascope.cli.segment import add_adjust_options


def register(groups: argparse._SubParsersAction) -> None:
    from hemascope.data import FORMATS

    cls = groups.add_parser(
        "classify", formatter_class=Formatter, help="classify single-cell images",
        description="Class, probability and runner-up for every image (folders are searched "
                    "recursively). Unreadable files are listed and skipped.")
    cls.add_argument("paths", nargs="+", help="image files and/or folders")
    cls.add_argument("--model", default="default",
                     help="model folder, or 'default' for the shipped PBC classifier")
    cls.add_argument("--batch-size", type=number(int, 1), default=64, help="images per forward pass")
    cls.add_argument("--tta", type=int, default=None, choices=(1, 2, 4, 8),
                     help="average over this many flips/rotations (slower, a little more "
                          "accurate); default: the model's own (4 for the shipped classifier, "
                          "1 for a fine-tuned one)")
    cls.add_argument("--attributes", default=None, metavar="DIR",
                     help="attribute model (`hemascope train attributes`): add the 11 morphology "
                          "attributes to each prediction")
    cls.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                     help="the classes a cell may take, e.g. 'neutrophil lymphocyte monocyte "
                          "eosinophil basophil' for normal blood; none given: all of the model's")
    add_json_option(cls)
    cls.set_defaults(handler=_classify)

    ev = groups.add_parser("evaluate", help="measure a model on labelled data",
                           formatter_class=Formatter)
    verbs = ev.add_subparsers(dest="verb", metavar="VERB", required=True)
    ec = verbs.add_parser(
        "classifier", formatter_class=Formatter, help="accuracy, macro-F1, per-class scores",
        description="Accuracy, balanced accuracy, macro precision/recall/F1, per-class scores, "
                    "row-normalised confusion matrix and bootstrap 95 % CIs. Labels of --data "
                    "are mapped onto the model's classes through the taxonomy.")
    ec.add_argument("--model", default="default", help="model folder or 'default'")
    ec.add_argument("--data", required=True, help="labelled single-cell data set")
    ec.add_argument("--format", default="auto", choices=FORMATS, help="layout of --data")
    ec.add_argument("--images", default=None, metavar="DIR",
                    help="folder the image paths of a label table are relative to (default: "
                         "found beside the table)")
    ec.add_argument("--split", default=None, choices=("train", "val", "test"),
                    help="only the images of this part of the model's recorded split")
    ec.add_argument("--bootstrap", type=number(int, 0), default=1000, help="bootstrap resamples for CIs")
    ec.add_argument("--tta", type=int, default=None, choices=(1, 2, 4, 8),
                    help="average over this many flips/rotations; default: the model's own "
                         "(4 for the shipped classifier, 1 for a fine-tuned one)")
    ec.add_argument("--predictions", default=None, metavar="CSV",
                    help="also write per-image predictions (path, true, predicted, top-2) here")
    ec.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                    help="score only these of the model's classes: predictions are restricted "
                         "to them. 'data': the classes --data holds (the cross-lab protocol: "
                         "another lab scored on the classes it shares with the model)")
    add_json_option(ec)
    ec.set_defaults(handler=_evaluate_classifier)

    from hemascope.cli.detect import register_evaluate

    register_evaluate(verbs)

    ea = verbs.add_parser(
        "attributes", formatter_class=Formatter, help="WBCAtt attribute scores",
        description="Per attribute: accuracy, macro precision/recall/F1, per-value scores and "
                    "confusion matrix; and their averages over the 11 attributes (the WBCAtt "
                    "protocol). Default table: the official test split under ../shared/data "
                    "(or $HEMASCOPE_SHARED_DATA).")
    ea.add_argument("--model", default="default", help="attribute-model folder or 'default'")
    ea.add_argument("--csv", default=None,
                    help="WBCAtt table, or a folder of tables (default: pbc_attr_v1_test.csv)")
    ea.add_argument("--images", default=None,
                    help="folder the table's path column is relative to (default: PBC beside it)")
    ea.add_argument("--batch-size", type=number(int, 1), default=64, help="images per forward pass")
    ea.add_argument("--tta", type=int, default=1, choices=(1, 2, 4, 8),
                    help="average over this many flips/rotations")
    add_json_option(ea)
    ea.set_defaults(handler=_evaluate_attributes)

    es = verbs.add_parser(
        "segmentation", formatter_class=Formatter, help="cell-part IoU / F1, mIoU",
        description="Per-class IoU and F1 and mean IoU of a part-segmentation model on a folder "
                    "of images with same-named mask PNGs (CellaVision convention 255 nucleus, "
                    "128 cytoplasm, 0 other; or indexed part labels), or images/ + masks/.")
    es.add_argument("--model", default="default", help="segmentation model folder or 'default'")
    es.add_argument("--data", required=True, help="folder of images and masks")
    add_adjust_options(es)
    add_json_option(es)
    es.set_defaults(handler=_evaluate_segmentation)


def _evaluate_segmentation(args: argparse.Namespace) -> int:
    from hemascope.evaluate.segmentation import evaluate_segmentation

    ev = evaluate_segmentation(args.data, model=args.model, balance=args.balance, zoom=args.zoom,
                               centre=args.centre, mirror=args.mirror, zoom_pad=args.zoom_pad,
                               progress=lambda it: progress(it, desc="evaluating"))
    rep = ev.report
    if args.json:
        emit_json(rep.to_dict(), args.json)
    if args.json != "-":
        print(f"{rep.n_images} images: mIoU {rep.miou:.4f}")
        for c, v in rep.per_class.items():
            print(f"{c:<12} IoU {v['iou']:.4f}  F1 {v['f1']:.4f}")
        if rep.merged:
            print("no mask holds " + ", ".join(rep.merged) + ": predicted, they count as "
                  + ", ".join(f"{c} ({p})" for p, c in rep.merged.items()))
    for path, reason in list(ev.errors.items())[:20]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0


def _evaluate_attributes(args: argparse.Namespace) -> int:
    from hemascope.evaluate.attributes import evaluate_attributes

    ev = evaluate_attributes(args.csv, model=args.model, images=args.images,
                             batch_size=args.batch_size, tta=args.tta,
                             progress=lambda it: progress(it, desc="evaluating"))
    rep = ev.report
    if args.json:
        emit_json(rep.to_dict(), args.json)
    if args.json != "-":
        print(f"{rep.n_images} images: average macro-F1 {rep.average_macro_f1:.4f}, "
              f"average accuracy {rep.average_accuracy:.4f}")
        print(f"{'attribute':<28}{'accuracy':>9}{'macro-F1':>10}")
        for name, r in rep.attributes.items():
            print(f"{name:<28}{r.accuracy:>9.4f}{r.macro_f1:>10.4f}")
    for path, reason in list(ev.errors.items())[:20]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0


def _classify(args: argparse.Namespace) -> int:
    from hemascope.classify import classify_paths

    result = classify_paths(args.paths, model=args.model, batch_size=args.batch_size, tta=args.tta,
                            attributes=args.attributes, classes=args.classes,
                            progress=lambda it: progress(it, desc="classifying"))
    if args.json:
        emit_json({"predictions": [p.to_dict() for p in result.predictions],
                   "errors": result.errors}, args.json)
    if args.json != "-":
        for p in result.predictions:
            print(f"{p.path}\t{p.label}\t{p.probability:.3f}\t(2nd {p.second_label} "
                  f"{p.second_probability:.3f})"
                  + "".join(f"\tWARNING {w}" for w in p.warnings))
        warned = sum(1 for p in result.predictions if p.warnings)
        if warned:
            print(f"{warned} image(s) classified with a warning: the answer may be a guess",
                  file=sys.stderr)
    return finish_batch(result.errors, len(result.predictions))


def _evaluate_classifier(args: argparse.Namespace) -> int:
    from hemascope.evaluate.classifier import evaluate_classifier
    from hemascope.io.atomic import atomic_write

    data = args.data
    if args.images:
        from hemascope.data import load_dataset

        data = load_dataset(args.data, format=args.format, image_root=args.images)
    only = args.classes
    if only is not None and [c.lower() for c in only] == ["data"]:
        only = "data"
    ev = evaluate_classifier(data, model=args.model, split=args.split, format=args.format,
                             n_bootstrap=args.bootstrap, tta=args.tta, classes=only,
                             progress=lambda it: progress(it, desc="evaluating"))
    rep = ev.report
    if args.predictions:
        import csv

        with atomic_write(args.predictions) as fh:
            w = csv.writer(fh)
            w.writerow(["path", "true", "predicted", "probability", "second", "second_probability"])
            for p in ev.predictions:
                w.writerow([p.path, ev.truth[p.path], p.label, f"{p.probability:.6f}",
                            p.second_label, f"{p.second_probability:.6f}"])
    if args.json:
        emit_json(rep.to_dict(), args.json)
    if args.json != "-":
        lo, hi = rep.ci95.get("accuracy", (float("nan"),) * 2)
        print(f"{rep.n_images} images: accuracy {rep.accuracy:.4f} (95% CI {lo:.4f}-{hi:.4f}), "
              f"balanced {rep.balanced_accuracy:.4f}, macro-F1 {rep.macro_f1:.4f}")
        print(f"{'class':<22}{'precision':>10}{'recall':>9}{'f1':>8}{'support':>9}")
        for c, s in rep.per_class.items():
            print(f"{c:<22}{s.precision:>10.4f}{s.recall:>9.4f}{s.f1:>8.4f}{s.support:>9}")
    for path, reason in ev.errors.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0
