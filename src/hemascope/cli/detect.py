"""``hemascope detect`` and ``hemascope evaluate detector``: find cells on smear fields."""

from __future__ import annotations

import argparse
import sys

from hemascope.cli._common import (Formatter, add_json_option, emit_json, iter_images, number,
                                   finish_batch, print_skipped)


def _scale(text: str):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--scale is 'auto', 'none' or a positive number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("--scale must be positive")
    return v


def register(groups: argparse._SubParsersAction) -> None:
    det = groups.add_parser(
        "detect", formatter_class=Formatter, help="find cells on smear fields",
        description="Boxes, class and score for every cell on each field (folders are searched "
                    "recursively; large fields are tiled). Writes a COCO results list with file "
                    "and class names. Unreadable files are listed and skipped.")
    det.add_argument("paths", nargs="+", help="image files and/or folders")
    det.add_argument("--out", required=True, help="COCO results JSON to write")
    _model_options(det)
    det.add_argument("--score-thresh", type=number(float, 0, 1), default=0.3,
                     help="keep boxes from this score in --out (evaluation uses all boxes); the "
                          "counts printed use the model's counting thresholds (tuned on val) "
                          "where they are higher, as `analyze` does")
    det.set_defaults(handler=_detect)


def register_evaluate(verbs: argparse._SubParsersAction) -> None:
    ev = verbs.add_parser(
        "detector", formatter_class=Formatter, help="COCO mAP/mAR, per-class AP, counting error",
        description="COCO metrics (pycocotools, up to 300 boxes per image): map50_95, map50, "
                    "map75, mar100, per_class AP, counting MAE per class, PR curves at IoU "
                    "0.5/0.75/0.9, images/s. Several --model options are fused into an ensemble "
                    "(--fusion). Labels are mapped onto the model's classes via the taxonomy.")
    add_field_data_options(ev, split_example="test")
    _model_options(ev, multiple=True)
    add_json_option(ev)
    ev.set_defaults(handler=_evaluate)


def add_field_data_options(p: argparse.ArgumentParser, *, split_example: str) -> None:
    """``--data``, ``--format`` and ``--split``: a set of annotated smear fields."""
    p.add_argument("--data", required=True, help="annotated fields (VOC, COCO, YOLO, CVAT)")
    p.add_argument("--format", default="auto", choices=("auto", "voc", "coco", "yolo", "cvat"),
                   help="layout of --data")
    p.add_argument("--split", default=None,
                   help=f"only this split of --data (e.g. {split_example})")


def _model_options(p: argparse.ArgumentParser, *, multiple: bool = False) -> None:
    if multiple:
        p.add_argument("--model", action="append", default=None, metavar="M",
                       help="detector folder or 'default'; repeat for an ensemble")
    else:
        p.add_argument("--model", default="default", help="detector folder or 'default'")
    p.add_argument("--scale", type=_scale, default="auto",
                   help="'auto' (rescale when red cells look larger/smaller than in training), "
                        "'none' (the training scale) or a factor field px -> working px")
    add_balance_option(p)
    p.add_argument("--tta", type=int, default=1, choices=(1, 2, 4), metavar="N",
                   help="test-time augmentation: run each model on N mirror views of the field "
                        "(1, 2 or 4) and fuse them like ensemble members (N times slower)")
    p.add_argument("--fusion", default="wbf", choices=("vote", "wbf", "nms"),
                   help="how the boxes of ensemble members / views are fused: weighted boxes "
                        "fusion (best on the CBC val split), the leukocyte study's majority "
                        "vote, or NMS")


def add_balance_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-balance", dest="balance", action="store_false",
                   help="do not white-balance each field's background onto the training "
                        "fields' before detection")


def _detect(args: argparse.Namespace) -> int:
    from hemascope.classify import expand_paths
    from hemascope.detect.ensemble import Detections
    from hemascope.detect.predict import counted, load_detector, predict_ensemble
    from hemascope.io.annotations import ImageAnnotation, Instance
    from hemascope.io.atomic import guard_inputs
    from hemascope.io.coco import to_coco_results

    guard_inputs(args.out, expand_paths(args.paths))
    det = load_detector(args.model)
    classes = det.classes
    from hemascope.io.quality import image_warnings

    images, errors, tallies, warnings = [], {}, [], []
    for path, img, err in iter_images(args.paths, desc="detecting"):
        if err is not None:
            errors[str(path)] = err
            continue
        warnings.append(image_warnings(img))
        d = predict_ensemble([det], img, fusion=args.fusion, scale=args.scale, views=args.tta,
                             balance=args.balance)
        tallies.append(counted(det, d, at_least=args.score_thresh))
        keep = d.scores >= args.score_thresh
        d = Detections(d.boxes[keep], d.scores[keep], d.labels[keep])
        inst = tuple(Instance(label=classes[int(lab) - 1], box=tuple(float(v) for v in b),
                              score=float(s)) for b, s, lab in zip(d.boxes, d.scores, d.labels))
        images.append(ImageAnnotation(str(path), img.shape[1], img.shape[0], inst))
    if not images:  # nothing to write: no empty results file
        return finish_batch(errors, 0)
    emit_json(to_coco_results(images, classes), args.out)
    for im, n, ws in zip(images, tallies, warnings):
        counts = {c: int((n.labels == k + 1).sum()) for k, c in enumerate(classes)}
        print(f"{im.file_name}\t" + "\t".join(f"{c} {n}" for c, n in counts.items())
              + "".join(f"\tWARNING {w}" for w in ws))
    if any(warnings):
        print(f"{sum(map(bool, warnings))} image(s) the detector may not read (see WARNING)",
              file=sys.stderr)
    return finish_batch(errors, len(images))


def load_field_set(args: argparse.Namespace):
    """The annotated fields of ``--data`` / ``--format`` (:func:`add_field_data_options`);
    annotation problems are noted on stderr.

    Raises:
        DatasetError: ``--data`` is not an annotated detection set (single-cell labels, say).
    """
    from hemascope.data import load_dataset
    from hemascope.errors import DatasetError
    from hemascope.io.annotations import DetectionSet

    ds = load_dataset(args.data, format=args.format)
    if not isinstance(ds, DetectionSet):
        raise DatasetError(f"{args.data} is not an annotated detection set (VOC, COCO, YOLO, CVAT)")
    annotation_problems = [p for p in ds.problems if p.kind != "unreadable_image"]
    if annotation_problems:
        print(f"note: {len(annotation_problems)} problem(s) in the annotations, e.g. "
              f"{annotation_problems[0].path}: {annotation_problems[0].message}; objects they "
              f"drop count as absent (see `hemascope data info {args.data}`)", file=sys.stderr)
    return ds


def _evaluate(args: argparse.Namespace) -> int:
    from hemascope.detect.predict import load_detector
    from hemascope.evaluate.detector import evaluate_detector

    ds = load_field_set(args)
    models = [load_detector(m) for m in (args.model or ["default"])]
    ev = evaluate_detector(models, ds, split=args.split, fusion=args.fusion, scale=args.scale,
                           views=args.tta, balance=args.balance)
    rep = ev.report.to_dict()
    rep["images_per_s"] = round(1 / max(ev.seconds_per_image, 1e-9), 2)
    rep["models"] = [str(m.path) for m in models]
    rep["views"], rep["fusion"] = args.tta, args.fusion if len(models) * args.tta > 1 else None
    if args.json:
        emit_json(rep, args.json)
    if args.json != "-":
        r = ev.report
        print(f"{r.n_images} images: mAP50:95 {r.map50_95:.4f}, mAP50 {r.map50:.4f}, "
              f"mAP75 {r.map75:.4f}, mAR100 {r.mar100:.4f} ({rep['images_per_s']} images/s)")
        print(f"{'class':<12}{'AP':>8}{'AP50':>8}{'AR':>8}{'count MAE':>11}{'objects':>9}")
        for c, s in r.per_class.items():
            print(f"{c:<12}{s['ap']:>8.4f}{s['ap50']:>8.4f}{s['ar']:>8.4f}"
                  f"{r.count_mae[c]:>11.3f}{r.n_objects[c]:>9}")
    probs = [p for p in ev.fields.problems if p.kind == "unreadable_image"]
    print_skipped({p.path: p.message for p in probs})
    return 0
