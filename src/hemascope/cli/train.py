"""``hemascope train``: fit models from labelled data."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from hemascope.cli._common import Formatter, add_json_option, emit_json, number
from hemascope.io.atomic import check_output_folder

AUGMENT_PRESETS = ("default", "bone-marrow", "cross-lab", "none")


def _folds(text: str) -> int:
    """``--cv K``: 0 (off) or at least 2 folds."""
    k = number(int, 0)(text)
    if k == 1:
        raise argparse.ArgumentTypeError("must be 0 (off) or at least 2 folds")
    return k


def register(groups: argparse._SubParsersAction) -> None:
    from hemascope import taxonomy
    from hemascope.data import FORMATS
    from hemascope.models import list_encoders
    from hemascope.train.config import ClassifierTrainConfig

    train = groups.add_parser("train", help="train models", formatter_class=Formatter)
    verbs = train.add_subparsers(dest="verb", metavar="VERB", required=True)
    clf = verbs.add_parser(
        "classifier", formatter_class=Formatter, help="train a single-cell classifier",
        description="Train a single-cell classifier on a labelled set (class folders or label "
                    "table). Images are decoded once and cached; the best-on-validation model "
                    "is written to --out with its config, split and test metrics.")
    clf.add_argument("--data", required=True, help="labelled single-cell data set")
    clf.add_argument("--out", required=True, help="run / model folder to write")
    clf.add_argument("--format", default="auto", choices=FORMATS, help="layout of --data")
    clf.add_argument("--images", default=None, metavar="DIR",
                     help="folder the image paths of a label table are relative to (default: "
                          "found beside the table)")
    clf.add_argument("--vocabulary", default=None, choices=taxonomy.vocabularies(),
                     help="map labels into this vocabulary (None keeps the data's classes)")
    clf.add_argument("--split", default=None,
                     help="split file (hemascope data split); default: a new stratified split")
    clf.add_argument("--augment", default="default", choices=AUGMENT_PRESETS,
                     help="augmentation preset")
    clf.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    clf.add_argument("--cv", type=_folds, default=0, metavar="K",
                     help="stratified K-fold cross-validation instead of one split: trains K "
                          "models in OUT/foldN and writes OUT/cv_metrics.json (mean +- std)")
    defaults = ClassifierTrainConfig()
    for f in dataclasses.fields(ClassifierTrainConfig):
        if f.name == "augment":
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            clf.add_argument(flag, action=argparse.BooleanOptionalAction, default=value,
                            help=f.name.replace("_", " "))
        elif f.name == "arch":
            clf.add_argument(flag, default=value, choices=list_encoders(), metavar="ARCH",
                             help="encoder: " + ", ".join(list_encoders()))
        else:
            clf.add_argument(flag, type=type(value), default=value, help=f.name.replace("_", " "))
    add_json_option(clf)
    clf.set_defaults(handler=_classifier)

    lr = verbs.add_parser(
        "lr-find", formatter_class=Formatter, help="learning-rate range test",
        description="Train a fresh model for --steps batches while the learning rate grows "
                    "exponentially from --start-lr to --end-lr; prints the suggested rate "
                    "(a tenth of the rate at the lowest smoothed loss). Smith, WACV 2017.")
    lr.add_argument("--data", required=True, help="labelled single-cell data set")
    lr.add_argument("--format", default="auto", choices=FORMATS, help="layout of --data")
    lr.add_argument("--vocabulary", default=None, choices=taxonomy.vocabularies(),
                    help="map labels into this vocabulary")
    lr.add_argument("--arch", default=defaults.arch, choices=list_encoders(), metavar="ARCH",
                    help="encoder")
    lr.add_argument("--image-size", type=number(int, 16), default=defaults.image_size, help="input size")
    lr.add_argument("--batch-size", type=number(int, 1), default=defaults.batch_size, help="batch size")
    lr.add_argument("--optimizer", default=defaults.optimizer, help="adamw, adam or sgd")
    lr.add_argument("--start-lr", type=number(float, 0, low_open=True), default=1e-6, help="first learning rate")
    lr.add_argument("--end-lr", type=number(float, 0, low_open=True), default=1.0, help="last learning rate")
    lr.add_argument("--steps", type=number(int, 2), default=100, help="batches to run")
    lr.add_argument("--threads", type=number(int, 0), default=0, help="CPU threads (0: all)")
    add_json_option(lr)
    lr.set_defaults(handler=_lr_find)

    _register_detector(verbs)
    _register_attributes(verbs)
    _register_segmentation(verbs)

    cb = verbs.add_parser(
        "concepts", formatter_class=Formatter, help="concept-bottleneck cell-type model",
        description="Fit a sparse (L1) linear model from an attribute model's predicted "
                    "attribute probabilities to the cell type on the WBCAtt train split, score "
                    "it on the test split, and write OUT/concepts.json (Koh et al. 2020).")
    cb.add_argument("--attributes", required=True, help="attribute model folder")
    cb.add_argument("--data", required=True, help="folder of the WBCAtt tables")
    cb.add_argument("--images", default=None, help="folder the tables' paths are relative to")
    cb.add_argument("--out", required=True, help="folder to write concepts.json to")
    cb.add_argument("--l1", type=number(float, 0), default=1e-3, help="L1 penalty (larger: sparser)")
    add_json_option(cb)
    cb.set_defaults(handler=_concepts)

    from hemascope.train.ssl import SslConfig

    sd = SslConfig()
    ssl = verbs.add_parser(
        "ssl", formatter_class=Formatter, help="self-supervised pre-training (SimCLR)",
        description="Pre-train an encoder on unlabelled cell images with SimCLR; the output "
                    "folder initialises a classifier with `train classifier --init OUT`.")
    ssl.add_argument("--data", nargs="+", required=True, help="image folders (labels ignored)")
    ssl.add_argument("--out", required=True, help="encoder folder to write")
    ssl.add_argument("--arch", default=sd.arch, choices=list_encoders(), metavar="ARCH",
                     help="encoder")
    for name in ("image_size", "epochs", "batch_size", "lr", "weight_decay", "temperature",
                 "proj_dim", "seed", "threads"):
        ssl.add_argument("--" + name.replace("_", "-"), type=type(getattr(sd, name)),
                         default=getattr(sd, name))
    ssl.set_defaults(handler=_ssl)


def _concepts(args: argparse.Namespace) -> int:
    from hemascope.cli._common import progress
    from hemascope.data.tables import read_wbcatt_folder
    from hemascope.explain.concept_model import fit_concept_model

    ds = read_wbcatt_folder(args.data, image_root=args.images)
    if ds.problems:
        print(f"note: {len(ds.problems)} row(s) left out because of problems "
              f"(e.g. {ds.problems[0].path}: {ds.problems[0].message})", file=sys.stderr)
    cfg = fit_concept_model(args.attributes, ds, args.out, l1=args.l1,
                            progress=lambda it: progress(it, desc="attributes"))
    test, boosted = cfg["metrics"]["test"], cfg["metrics"]["test_gradient_boosting"]
    if args.json:
        emit_json({"out": args.out, "sparsity": cfg["sparsity"], "test": test,
                   "test_gradient_boosting": boosted}, args.json)
    else:
        print(f"wrote {args.out}/concepts.json ({cfg['sparsity']:.0%} of the weights are zero)"
              + (f": test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}"
                 if test else ""))
        if boosted:
            print(f"gradient-boosted trees on the same concepts: accuracy "
                  f"{boosted['accuracy']:.4f}, macro-F1 {boosted['macro_f1']:.4f} (not saved)")
    return 0


def _register_segmentation(verbs) -> None:
    from hemascope.train.config import SegmentationTrainConfig

    seg = verbs.add_parser(
        "segmentation", formatter_class=Formatter, help="train a cell-part U-Net",
        description="Train a U-Net that splits single-cell images into nucleus, cytoplasm "
                    "(and vacuole, platelet, RBC where the masks have them) on a folder of "
                    "images with same-named mask PNGs. Red cells and platelets that no mask "
                    "marks are added as classical pseudo-labels (--other-parts). --cv K first scores the recipe by "
                    "K-fold cross-validation (recorded in the model's config); the model "
                    "written to --out is trained on every pair.")
    seg.add_argument("--data", required=True, help="folder of images and masks")
    seg.add_argument("--out", required=True, help="model folder to write")
    seg.add_argument("--cv", type=_folds, default=0, metavar="K", help="K-fold cross-validation first")
    defaults = SegmentationTrainConfig()
    helps = {"other_parts": "comma-separated among rbc, platelet, vacuole: the classical rules' "
                            "pseudo-labels of these parts written into masks that lack them "
                            "(red cells and platelets on pixels the mask calls other, vacuoles "
                            "on cytoplasm); '' for none",
             "class_weights": "none, or sqrt: a part rarer than the median one weighs "
                              "sqrt(median share / share) in the cross-entropy, at most 10 "
                              "(measured: no better for platelets, see README)"}
    for f in dataclasses.fields(SegmentationTrainConfig):
        seg.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)),
                         default=getattr(defaults, f.name),
                         help=helps.get(f.name, f.name.replace("_", " ")))
    add_json_option(seg)
    seg.set_defaults(handler=_segmentation)


def _segmentation(args: argparse.Namespace) -> int:
    from hemascope.segment.data import find_mask_pairs
    from hemascope.train.config import SegmentationTrainConfig
    from hemascope.train.segmentation import cross_validate_segmenter, train_segmenter

    check_output_folder(args.out, not_inside=[args.data])

    pairs, problems = find_mask_pairs(args.data)
    for p in problems[:10]:
        print(f"note: {p.path}: {p.message}", file=sys.stderr)
    cfg = SegmentationTrainConfig(**{f.name: getattr(args, f.name)
                                     for f in dataclasses.fields(SegmentationTrainConfig)})
    cv = cross_validate_segmenter(pairs, cfg, k=args.cv) if args.cv else None
    command = "hemascope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    r = train_segmenter(pairs, cfg, args.out, command=command, data=str(args.data), cv=cv)
    summary = {"out": str(r.out_dir), "wall_time_s": round(r.wall_time_s, 1),
               "cross_validation": {k: v for k, v in cv.items() if k != "folds"} if cv else None}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"wrote {r.out_dir} ({r.wall_time_s / 60:.1f} min)")
        if cv:
            print(f"{cv['k']}-fold CV mIoU {cv['miou']['mean']:.4f} +- {cv['miou']['std']:.4f}; "
                  + ", ".join(f"{c} IoU {v['iou']['mean']:.3f} +- {v['iou']['std']:.3f}"
                              for c, v in cv["per_class"].items()))
    return 0


def _register_attributes(verbs) -> None:
    from hemascope.models import list_encoders
    from hemascope.train.config import AttributeTrainConfig

    att = verbs.add_parser(
        "attributes", formatter_class=Formatter, help="train a morphology-attribute model",
        description="Train one encoder with a head per WBCAtt attribute (cell size and shape, "
                    "nucleus shape, N:C ratio, chromatin, vacuoles, cytoplasm texture and colour, "
                    "granule type and colour, granularity) on WBCAtt tables. The tables' own "
                    "train/val/test split is used; the best epoch by validation average "
                    "macro-F1 is written to --out with its test scores.")
    att.add_argument("--data", required=True,
                     help="folder of the WBCAtt tables (pbc_attr_v1_{train,val,test}.csv)")
    att.add_argument("--images", default=None,
                     help="folder the tables' path column is relative to (PBC); default: "
                          "found beside the tables")
    att.add_argument("--out", required=True, help="run / model folder to write")
    att.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    defaults = AttributeTrainConfig()
    for f in dataclasses.fields(AttributeTrainConfig):
        if f.name == "augment":
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            att.add_argument(flag, action=argparse.BooleanOptionalAction, default=value,
                            help=f.name.replace("_", " "))
        elif f.name == "arch":
            att.add_argument(flag, default=value, choices=list_encoders(), metavar="ARCH",
                             help="encoder: " + ", ".join(list_encoders()))
        else:
            att.add_argument(flag, type=type(value), default=value, help=f.name.replace("_", " "))
    add_json_option(att)
    att.set_defaults(handler=_attributes)


def _attributes(args: argparse.Namespace) -> int:
    from hemascope.data.tables import read_wbcatt_folder
    from hemascope.train.attributes import train_attributes
    from hemascope.train.config import AttributeTrainConfig

    check_output_folder(args.out, not_inside=[args.data])

    ds = read_wbcatt_folder(args.data, image_root=args.images)
    if ds.problems:
        print(f"note: {len(ds.problems)} row(s) left out because of problems "
              f"(e.g. {ds.problems[0].path}: {ds.problems[0].message})", file=sys.stderr)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(AttributeTrainConfig)
              if f.name != "augment"}
    cfg = AttributeTrainConfig(**values)
    command = "hemascope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    r = train_attributes(ds, cfg, args.out, resume=args.resume, command=command)
    return _summarise(args, r, lambda t: f"test average macro-F1 {t.average_macro_f1:.4f}, "
                                         f"accuracy {t.average_accuracy:.4f}")


def _register_detector(verbs) -> None:
    from hemascope.detect.registry import detector_names
    from hemascope.train.config import DetectorTrainConfig

    det = verbs.add_parser(
        "detector", formatter_class=Formatter, help="train a smear-field detector",
        description="Train a cell detector (boxes for WBC, RBC, platelets, or the data set's own "
                    "classes) on annotated smear fields. The data set's train/val/test split is "
                    "used (val carved from train if absent); images are decoded once; the "
                    "best-on-validation mAP model is written to --out with its config, counting "
                    "thresholds and test metrics. Resumable with --resume.")
    det.add_argument("--data", required=True, help="annotated fields (VOC folder, COCO JSON, "
                                                   "YOLO data.yaml, CVAT XML)")
    det.add_argument("--format", default="auto", choices=("auto", "voc", "coco", "yolo", "cvat"),
                     help="layout of --data")
    det.add_argument("--out", required=True, help="run / model folder to write")
    det.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    defaults = DetectorTrainConfig()
    for f in dataclasses.fields(DetectorTrainConfig):
        if f.name == "augment":
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            det.add_argument(flag, action=argparse.BooleanOptionalAction, default=value,
                            help=f.name.replace("_", " "))
        elif f.name == "arch":
            det.add_argument(flag, default=value, choices=detector_names(), help="detector")
        elif isinstance(value, tuple):
            det.add_argument(flag, type=int, nargs="+", default=value, help=f.name.replace("_", " "))
        else:
            det.add_argument(flag, type=type(value), default=value, help=f.name.replace("_", " "))
    from hemascope.detect.data import FieldAugment

    for f in dataclasses.fields(FieldAugment):
        value = getattr(FieldAugment(), f.name)
        if isinstance(value, float):  # probabilities and strengths; ranges keep their defaults
            det.add_argument("--aug-" + f.name.replace("_", "-"), type=float, default=value,
                             help="augmentation: " + f.name.replace("_", " "))
    add_json_option(det)
    det.set_defaults(handler=_detector)


def _detector(args: argparse.Namespace) -> int:
    from hemascope.data import load_dataset
    from hemascope.detect.data import FieldAugment
    from hemascope.errors import DatasetError
    from hemascope.io.annotations import DetectionSet
    from hemascope.train.config import DetectorTrainConfig
    from hemascope.train.detector import train_detector

    check_output_folder(args.out, not_inside=[args.data])

    ds = load_dataset(args.data, format=args.format)
    if not isinstance(ds, DetectionSet):
        raise DatasetError(f"{args.data} is not an annotated detection set (VOC, COCO, YOLO, CVAT)")
    if ds.problems:
        print(f"note: {len(ds.problems)} problem(s) in the annotations "
              f"(see `hemascope data info {args.data}`)", file=sys.stderr)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(DetectorTrainConfig)
              if f.name != "augment"}
    values["min_sizes"] = tuple(values["min_sizes"])
    aug = {f.name: getattr(args, "aug_" + f.name) for f in dataclasses.fields(FieldAugment)
           if hasattr(args, "aug_" + f.name)}
    cfg = DetectorTrainConfig(**values, augment=FieldAugment(**aug))
    command = "hemascope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    r = train_detector(ds, cfg, args.out, resume=args.resume, command=command)
    return _summarise(args, r, lambda t: f"test mAP50 {t.map50:.4f}, mAP50:95 {t.map50_95:.4f}")


def _summarise(args: argparse.Namespace, result, describe) -> int:
    """Print (or emit as JSON) where a trained model went and its test score."""
    t = result.test
    if args.json:
        emit_json({"out": str(result.out_dir), "best_epoch": result.best_epoch,
                   "wall_time_s": round(result.wall_time_s, 1),
                   "test": t.to_dict() if t else None}, args.json)
    else:
        print(f"wrote {result.out_dir} (best epoch {result.best_epoch}, "
              f"{result.wall_time_s / 60:.1f} min)"
              + (f": {describe(t)} on {t.n_images} images" if t else ""))
    return 0


def _classifier(args: argparse.Namespace) -> int:
    from hemascope.augment import AugmentConfig
    from hemascope.data import ClassificationSet, load_dataset
    from hemascope.data.labels import refuse_unknown_labels
    from hemascope.data.splits import load_split
    from hemascope.errors import DatasetError
    from hemascope.train.classifier import train_classifier
    from hemascope.train.config import ClassifierTrainConfig

    check_output_folder(args.out, not_inside=[args.data])

    ds = load_dataset(args.data, format=args.format, vocabulary=args.vocabulary,
                      image_root=args.images)
    if not isinstance(ds, ClassificationSet):
        raise DatasetError("train classifier needs a single-cell set (class folders or label table)")
    refuse_unknown_labels(ds)
    if ds.problems:
        print(f"note: {len(ds.problems)} file(s) left out because of problems "
              f"(see `hemascope data info {args.data}`)", file=sys.stderr)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ClassifierTrainConfig)
              if f.name != "augment"}
    aug = {"default": AugmentConfig(), "bone-marrow": AugmentConfig.bone_marrow_study(),
           "cross-lab": AugmentConfig.cross_lab(), "none": AugmentConfig.none()}[args.augment]
    cfg = ClassifierTrainConfig(**values, augment=aug)
    split = load_split(args.split) if args.split else None
    command = "hemascope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.cv:
        from hemascope.train.classifier import cross_validate

        if split is not None:
            raise DatasetError("--cv makes its own folds; do not pass --split with it")
        summary = cross_validate(ds, cfg, args.out, k=args.cv)
        if args.json:
            emit_json({k: v for k, v in summary.items() if k != "folds"}, args.json)
        else:
            for name in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall",
                         "macro_f1"):
                print(f"{name:<18} {summary[name]['mean']:.4f} +- {summary[name]['std']:.4f}")
        return 0
    result = train_classifier(ds, cfg, args.out, split=split, resume=args.resume, command=command)
    return _summarise(args, result,
                      lambda t: f"test accuracy {t.accuracy:.4f}, macro-F1 {t.macro_f1:.4f}")


def _lr_find(args: argparse.Namespace) -> int:
    from hemascope.data import ClassificationSet, load_dataset
    from hemascope.errors import DatasetError
    from hemascope.train.config import ClassifierTrainConfig
    from hemascope.train.lr_find import lr_range_test

    ds = load_dataset(args.data, format=args.format, vocabulary=args.vocabulary)
    if not isinstance(ds, ClassificationSet):
        raise DatasetError("lr-find needs a single-cell set (class folders or label table)")
    cfg = ClassifierTrainConfig(arch=args.arch, image_size=args.image_size,
                                batch_size=args.batch_size, optimizer=args.optimizer,
                                threads=args.threads)
    res = lr_range_test(ds, cfg, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps,
                        log=lambda s: print(s, file=sys.stderr))
    if args.json:
        emit_json(res.to_dict(), args.json)
    if args.json != "-":
        for lr_, loss in zip(res.lrs[::max(1, len(res.lrs) // 15)], res.losses[::max(1, len(res.lrs) // 15)]):
            print(f"lr {lr_:9.2e}  loss {loss:.4f}")
        print(f"suggested learning rate: {res.suggestion:.2e}")
    return 0


def _ssl(args: argparse.Namespace) -> int:
    from hemascope.train.ssl import SslConfig, pretrain_ssl

    cfg = SslConfig(arch=args.arch, image_size=args.image_size, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                    temperature=args.temperature, proj_dim=args.proj_dim, seed=args.seed,
                    threads=args.threads)
    out = pretrain_ssl(args.data, cfg, args.out, log=lambda s: print(s, file=sys.stderr))
    print(f"wrote {out}; use it with: hemascope train classifier --init {out} ...")
    return 0
