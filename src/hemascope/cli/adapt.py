"""``hemascope fewshot`` (adapt a classifier to a new lab with K labelled images), ``suggest``
(which cells to label), ``audit`` (which labels look wrong) and ``adapt`` (no labels)."""

from __future__ import annotations

import argparse
import sys

from hemascope.cli._common import Formatter, add_json_option, emit_json, number


def register(groups: argparse._SubParsersAction) -> None:
    from hemascope.adapt.fewshot import (BATCHNORMS, MODES, PREDICTS, PSEUDO_FROM, STAINS,
                                         FewShotConfig)
    from hemascope.adapt.shot import PRIORS
    from hemascope.data import FORMATS

    d = FewShotConfig()
    fs = groups.add_parser(
        "fewshot", formatter_class=Formatter, help="few-shot fine-tuning on a new lab",
        description="Sample K labelled images of DATA stratified by class (RUN/shots.txt), "
                    "fine-tune the base model on them, evaluate on every other image of DATA "
                    "(RUN/metrics.json), label every image (RUN/predictions.csv) and write "
                    "the adapted model to RUN/model. A lab that has labelled a few cells "
                    "gives them as DATA and its other cells as --unlabelled: all of DATA are "
                    "then the shots. With --ablation, run the six conditions of the "
                    "cross-lab study over --seeds.")
    fs.add_argument("--data", required=True, help="labelled target set (class folders or table)")
    fs.add_argument("--shots", type=number(int, 1), default=None,
                    help=f"labelled images of DATA to use (K; default {d.shots}, or all of "
                         "DATA with --unlabelled)")
    fs.add_argument("--shots-from", default=None, metavar="FILE",
                    help="use the images listed in FILE (paths relative to DATA, one per line, "
                         "e.g. a shots.txt or the output of hemascope suggest) as the shots")
    fs.add_argument("--unlabelled", nargs="+", default=None, metavar="PATH",
                    help="more of the lab's images, with no labels (folders or files): they "
                         "join the adaptation and are labelled in RUN/predictions.csv")
    fs.add_argument("--seed", type=int, default=d.seed, help="seed of the shot sample")
    fs.add_argument("--out", required=True, help="run folder")
    fs.add_argument("--base", default="default", help="model to adapt: folder or 'default'")
    fs.add_argument("--format", default="auto", choices=FORMATS, help="layout of --data")
    fs.add_argument("--mode", default=d.mode, choices=MODES, help="what to fine-tune")
    fs.add_argument("--stain", default=d.stain, choices=STAINS,
                    help="reinhard: map target colours onto the base model's source style first "
                         "(the cross-lab study's workflow); none: leave colours to the batch-norm "
                         "statistics")
    fs.add_argument("--batchnorm", default=d.batchnorm, choices=BATCHNORMS,
                    help="target: re-estimate batch-norm statistics on all DATA images (labels "
                         "unused) and keep them fixed while fine-tuning; source: keep the base's")
    fs.add_argument("--epochs", type=number(int, 1), default=d.epochs, help="passes over the shots")
    fs.add_argument("--batch-size", type=number(int, 1), default=d.batch_size, help="batch size")
    fs.add_argument("--lr", type=number(float, 0, low_open=True), default=d.lr, help="encoder learning rate (head: x10)")
    fs.add_argument("--pseudo-rounds", type=number(int, 0), default=d.pseudo_rounds, metavar="N",
                    help="self-training rounds: the adapted model labels the unlabelled DATA "
                         "images (never their true labels), the most confident share of each "
                         "predicted class joins the shots and fine-tuning starts again from the "
                         "base (modes full and head); 0: shots only")
    fs.add_argument("--pseudo-fraction", type=number(float, 0, 1, low_open=True), default=d.pseudo_fraction, metavar="Q",
                    help="share of each predicted class taken as pseudo-labels per round (0-1]")
    fs.add_argument("--pseudo-per-shot", type=number(float, 0, low_open=True), default=d.pseudo_per_shot, metavar="M",
                    help="at most M pseudo-labels per shot (the share is lowered to fit), so "
                         "that large folders stay fast")
    fs.add_argument("--max-image-passes", type=number(int, 1), default=d.max_image_passes,
                    metavar="N", help="each fine-tuning sees at most N images in all (epochs x "
                                      "shots and pseudo-labels): a larger set gets fewer epochs")
    fs.add_argument("--pseudo-from", choices=PSEUDO_FROM, default=d.pseudo_from,
                    help="rank each round's pseudo-labels by the adapted model's head (softmax "
                         "over 4 flips/rotations) or by the transductive scores of --predict "
                         f"propagate (default: {d.pseudo_from})")
    fs.add_argument("--shot-epochs", type=number(int, 0), default=d.shot_epochs, metavar="N",
                    help="first adapt the base to all target images by N epochs of SHOT (no "
                         "source data); 0 = off")
    fs.add_argument("--shot-labels", action=argparse.BooleanOptionalAction, default=None,
                    help="let the shots take part in that SHOT run (semi-supervised; default: "
                         f"{'yes' if d.shot_labels else 'no'})")
    fs.add_argument("--shot-prior", choices=PRIORS, default=d.shot_prior,
                    help="what SHOT's diversity term pulls the mean prediction towards: every "
                         "class equally often (uniform, the paper) or the class shares of the "
                         "shots (measured worse on CellaVision: it loses rare types; "
                         f"default: {d.shot_prior})")
    fs.add_argument("--predict", choices=PREDICTS, default=d.predict,
                    help="label the unlabelled DATA images with the adapted model's head, or "
                         "transductively: its softmax (and the SHOT start's) averaged with label "
                         "propagation from the shots over the embeddings of all DATA images "
                         "(the SHOT start's, when there is one). The saved model still "
                         "predicts with its head alone; RUN_DIR/model/config.json records that "
                         f"head's own score (default: {d.predict})")
    fs.add_argument("--views", type=int, choices=(1, 2, 4, 8), default=d.views,
                    help="flips/rotations of each DATA image whose embeddings and softmax are "
                         "averaged for the transductive scores (--predict / --pseudo-from "
                         f"propagate) (default: {d.views})")
    fs.add_argument("--propagate-with", default=d.propagate_with, metavar="default|none|DIR",
                    help="an attribute model whose embedding of the DATA images joins the "
                         "classifier's in label propagation's graph, linking cells of like "
                         f"morphology (default: {d.propagate_with})")
    fs.add_argument("--new-classes", action=argparse.BooleanOptionalAction, default=True,
                    help="classes of DATA that the base model has no output for (e.g. blasts "
                         "for a peripheral-blood model) get one, imprinted from their shots; "
                         "each needs a shot (default: on; --no-new-classes makes them an error)")
    fs.add_argument("--threads", type=number(int, 0), default=0, help="CPU threads (0: all)")
    fs.add_argument("--tune", type=number(int, 0), nargs="?", const=12, default=0, metavar="TRIALS",
                    help="choose lr, batch size, epochs and trained layers with Optuna (3-fold CV "
                         "inside the shots; needs the 'tune' extra)")
    fs.add_argument("--ablation", action="store_true", help="run the six-condition ablation")
    fs.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="seeds for --ablation")
    fs.add_argument("--source", default=None,
                    help="labelled source images for the mixed source+target condition")
    add_json_option(fs)
    fs.set_defaults(handler=_fewshot)

    sg = groups.add_parser(
        "suggest", formatter_class=Formatter, help="which of a lab's cells to label first",
        description="Pick the N cells of a lab worth labelling first, with no label needed: "
                    "the base model embeds every image (batch-norm statistics from them), "
                    "k-means makes N clusters and each offers its most typical cell "
                    "(TypiClust, Hacohen et al. 2022). Writes a CSV (path relative to DATA, "
                    "cluster size, typicality), largest cluster first; label those cells and "
                    "give them to hemascope fewshot --data, with the rest as --unlabelled.")
    sg.add_argument("--data", required=True, nargs="+", metavar="PATH",
                    help="the lab's single-cell images (folders searched recursively, or files)")
    sg.add_argument("--n", type=number(int, 1), default=25, help="cells to suggest")
    sg.add_argument("--out", required=True, help="CSV to write")
    sg.add_argument("--base", default="default", help="model: folder or 'default'")
    sg.add_argument("--seed", type=int, default=0, help="seed of the k-means start")
    add_json_option(sg)
    sg.set_defaults(handler=_suggest)

    from hemascope.adapt.audit import (DEFAULT_FEATURES, DEFAULT_METHOD, DEFAULT_VIEWS,
                                       FEATURES, METHODS as AUDIT_RULES)

    au = groups.add_parser(
        "audit", formatter_class=Formatter, help="find labels of a labelled set that look wrong",
        description="Flag the images of a labelled set (class folders or table) whose label "
                    "looks wrong, before fine-tuning on them or scoring with them. Every image "
                    "gets class probabilities from a model that never saw its label (a softmax "
                    "regression on the base model's embeddings, fitted on the other folds of a "
                    "stratified split); confident learning (Northcutt et al. 2021) flags those "
                    "more probably of another class than the model is, on average, of their "
                    "own. Writes a CSV of every image, suspects first, with the class each more "
                    "likely belongs to. The flags are a model's opinion: look at the cells. "
                    "--what attributes audits the 11 morphology attributes of a WBCAtt-style "
                    "table instead, with the attribute model's probabilities (it must not "
                    "have trained on these cells); --what boxes lists the boxes of annotated "
                    "smear fields that a detector disputes: cells with no box, boxes of "
                    "another class, boxes on nothing.")
    au.add_argument("--data", required=True,
                    help="labelled set (class folders or table; with --what attributes a "
                         "WBCAtt-style table)")
    au.add_argument("--what", default="types", choices=("types", "attributes", "boxes"),
                    help="audit the cell-type labels, the attribute labels of a table, or the "
                         "boxes of annotated smear fields (VOC, COCO, YOLO, CVAT)")
    au.add_argument("--images", default=None,
                    help="image root of an attribute table (none: found from the table)")
    au.add_argument("--out", required=True, help="CSV to write")
    au.add_argument("--base", default="default", help="model whose embeddings describe the cells")
    au.add_argument("--format", default="auto", choices=FORMATS,
                    help="layout of --data (--what types)")
    au.add_argument("--rule", default=DEFAULT_METHOD, choices=AUDIT_RULES,
                    help="confident: confident learning's per-class thresholds; argmax: every "
                         "image whose most probable class is not its label (flags more)")
    au.add_argument("--features", default=DEFAULT_FEATURES, choices=FEATURES,
                    help="what describes the cells: the classifier's embedding alone, joined "
                         "with the attribute model's (--attributes), or the classifier's after "
                         "SHOT on the set's images (no label read; minutes, not seconds) joined "
                         "with the attribute model's")
    au.add_argument("--attributes", default="default",
                    help="attribute model: for --features classifier+attributes, and the one "
                         "whose probabilities audit --what attributes")
    au.add_argument("--views", type=int, default=DEFAULT_VIEWS, choices=(1, 2, 4, 8),
                    help="flips/rotations of each image averaged in its embedding")
    au.add_argument("--folds", type=number(int, 2), default=5, help="cross-validation folds")
    au.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    from hemascope.detect.audit import (DEFAULT_THRESHOLDS, DEFAULT_VIEWS as BOX_VIEWS,
                                        THRESHOLDS)

    au.add_argument("--detector", default="default",
                    help="detector for --what boxes (it must not have trained on these fields)")
    au.add_argument("--split", default=None, help="only this split of the fields (--what boxes)")
    au.add_argument("--tta", type=int, default=BOX_VIEWS, choices=(1, 2, 4),
                    help="mirror views of each field fused (--what boxes)")
    au.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, choices=THRESHOLDS,
                    help="when a detection is confident (--what boxes): at the detector's "
                         "counting thresholds, or at the mean score of the fields' annotated "
                         "cells of its class (confident learning)")
    au.add_argument("--gallery", default=None, metavar="PNG",
                    help="also draw the suspects (label -> suggested) into this image "
                         "(needs matplotlib)")
    add_json_option(au)
    au.set_defaults(handler=_audit)

    from hemascope.adapt.uda import METHODS, UdaConfig

    u = UdaConfig()
    ad = groups.add_parser("adapt", help="unsupervised domain adaptation (AdaBN, SHOT, DANN, MMD; classifiers and attribute models) and detector box calibration",
                           formatter_class=Formatter)
    verbs = ad.add_subparsers(dest="verb", metavar="METHOD", required=True)
    bn = verbs.add_parser(
        "bn", formatter_class=Formatter,
        help="re-estimate batch-norm statistics on the new lab (AdaBN; no labels, no source)",
        description="Recompute the encoder's batch-norm statistics on the --target images "
                    "(one pass, no training, no source data) and write the adapted model. If "
                    "--target has class folders, their labels are used only to report target "
                    "accuracy before and after.")
    _target_options(bn)
    bn.set_defaults(handler=_uda, method="bn")
    for method in METHODS:
        v = verbs.add_parser(
            method, formatter_class=Formatter,
            help={"dann": "domain-adversarial training (Ganin & Lempitsky 2015)",
                  "mmd": "maximum mean discrepancy alignment (Long et al. 2015)"}[method],
            description="Adapt a classifier from a labelled --source to an unlabelled --target, "
                        "on the classes both share. If --target has class folders, their labels "
                        "are used only to report target accuracy before and after.")
        v.add_argument("--source", required=True, help="labelled source set")
        _target_options(v)
        _config_flags(v, u, UDA_FLAGS)
        v.set_defaults(handler=_uda, method=method)
    from hemascope.adapt.shot import ShotConfig

    sc = ShotConfig()
    sh = verbs.add_parser(
        "shot", formatter_class=Formatter,
        help="source-free adaptation (SHOT, Liang et al. 2020): target images only, no labels",
        description="Adapt a classifier to the unlabelled --target images without any source "
                    "data: the head stays fixed while the encoder learns to make confident, "
                    "diverse predictions and to follow centroid pseudo-labels of the target's "
                    "own clusters. Batch-norm statistics are re-estimated on the target first. "
                    "If --target has class folders, the model keeps their classes and their "
                    "labels are used only to report accuracy before and after; for an "
                    "unlabelled folder name the classes the lab has with --classes.")
    _target_options(sh)
    sh.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                    help="classes the target holds (default: a labelled target's, else all of "
                         "the model's)")
    _config_flags(sh, sc, ("epochs", "batch_size", "lr", "diversity", "pseudo_weight",
                           "max_images", "seed", "threads"))
    sh.set_defaults(handler=_uda, method="shot")
    _register_attributes(verbs)
    _register_boxes(verbs)
    _register_offsets(verbs)


#: the settings of DANN / MMD runs that are flags
UDA_FLAGS = ("epochs", "steps_per_epoch", "batch_size", "lr", "domain_weight", "seed", "threads")


def _config_flags(p: argparse.ArgumentParser, cfg, names) -> None:
    """One flag per named field of a settings dataclass, its value as the default."""
    for name in names:
        p.add_argument("--" + name.replace("_", "-"), type=type(getattr(cfg, name)),
                       default=getattr(cfg, name), help=name.replace("_", " "))


def _register_boxes(verbs) -> None:
    from hemascope.cli.detect import add_field_data_options
    from hemascope.detect.calibrate import KEEP, MIN_MATCHES

    bx = verbs.add_parser(
        "boxes", formatter_class=Formatter,
        help="move a detector's box edges onto a lab's annotation style (a few annotated fields)",
        description="Fit per-class box-edge offsets of a detector on annotated fields of a lab "
                    "(the median of how far each matched box edge lies from the annotators', "
                    "in units of the box) and write a copy of the detector that applies them. "
                    "For annotators who draw boxes tighter or looser than the detector's "
                    "training boxes; score the result with `evaluate detector` on other "
                    "fields than --data.")
    add_field_data_options(bx, split_example="val")
    bx.add_argument("--model", default="default", help="detector folder or 'default'")
    bx.add_argument("--out", required=True, help="calibrated detector folder to write")
    bx.add_argument("--min-matches", type=number(int, 1), default=MIN_MATCHES,
                    help="a class with fewer matched boxes keeps its boxes")
    bx.add_argument("--keep", default="significant", choices=KEEP,
                    help="edges moved: only those whose median offset is significant (its "
                         "bootstrap 95 %% interval excludes zero), or all")
    add_json_option(bx)
    bx.set_defaults(handler=_adapt_boxes)


def _adapt_boxes(args: argparse.Namespace) -> int:
    from hemascope.cli.detect import load_field_set
    from hemascope.detect.calibrate import (calibrate_detector, check_calibrated_out,
                                            write_calibrated)
    from hemascope.detect.predict import load_detector
    from hemascope.io.atomic import check_output_folder

    check_output_folder(args.out, not_inside=[args.data])
    det = load_detector(args.model)
    check_calibrated_out(det, args.out)
    ds = load_field_set(args)
    fit = calibrate_detector(det, ds, split=args.split, min_matches=args.min_matches,
                             keep=args.keep)
    source = f"{args.data}" + (f" ({args.split})" if args.split else "")
    write_calibrated(det, fit["offsets"], args.out, source=source)
    summary = {"out": args.out, "n_images": fit["n_images"], "offsets": fit["offsets"]}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"fitted on {fit['n_images']} fields; box-edge offsets (x0, y0, x1, y1, fractions "
              "of the box):")
        for c in det.classes:
            o = fit["offsets"].get(c)
            print(f"  {c:<12} " + (" ".join(f"{v:+.3f}" for v in o["offsets"])
                                   + f"  ({o['matches']} boxes)" if o else
                                   f"kept as predicted (fewer than {args.min_matches} matched boxes)"))
        print(f"wrote {args.out}; use it with --model/--detector {args.out}")
    return 0


def _register_offsets(verbs) -> None:
    from hemascope.attributes.offsets import MIN_CELLS

    of = verbs.add_parser(
        "offsets", formatter_class=Formatter,
        help="move an attribute model's decision boundaries onto a lab's labelling convention "
             "(labelled cells)",
        description="Fit one offset per attribute value (added to the log-probabilities; "
                    "coordinate ascent on macro-F1) on a lab's labelled cells and write a "
                    "copy of the attribute model that applies them; its weights are unchanged. "
                    "For labs that draw the line between values elsewhere than WBCAtt (where "
                    "'big' ends, when a nucleus counts as segmented). On WBCAtt's own "
                    "validation split it gave the shipped model no gain; towards other "
                    "annotators it helped only on cells sampled like the fitting cells. Fit "
                    "on cells sampled and labelled the way you will use the model, and score "
                    "the result with `evaluate attributes` on other cells than --data.")
    of.add_argument("--data", required=True, metavar="CSV",
                    help="the lab's labelled cells: a WBCAtt-style table (path, label and "
                         "attribute columns) or a folder of such tables")
    of.add_argument("--images", default=None,
                    help="folder the table's path column is relative to (default: found "
                         "beside the table)")
    of.add_argument("--model", default="default", help="attribute model: folder or 'default'")
    of.add_argument("--out", required=True, help="attribute-model folder to write")
    of.add_argument("--min-cells", type=number(int, 1), default=MIN_CELLS,
                    help="an attribute with fewer labelled cells keeps its boundaries")
    of.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=1,
                    help="flips/rotations averaged when fitting (use the same when predicting)")
    add_json_option(of)
    of.set_defaults(handler=_adapt_offsets)


def _adapt_offsets(args: argparse.Namespace) -> int:
    from hemascope.attributes import load_attribute_model
    from hemascope.attributes.offsets import fit_table_offsets, write_offset_model
    from hemascope.io.atomic import check_output_folder
    from hemascope.models.artifact import refuse_own_folder

    check_output_folder(args.out, not_inside=[args.data] + ([args.images] if args.images else []))
    loaded = load_attribute_model(args.model)
    refuse_own_folder(loaded.path, args.out, "attribute model")
    fit = fit_table_offsets(loaded, args.data, images=args.images, tta=args.tta,
                            min_cells=args.min_cells)
    for path, reason in fit.errors.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    write_offset_model(loaded.path, fit, args.out, source=str(args.data))
    summary = {"out": args.out, "offsets": fit.offsets, "n_cells": fit.n_cells,
               "macro_f1_before": fit.macro_f1_before, "macro_f1_after": fit.macro_f1_after,
               "skipped": sorted(fit.errors)}
    if args.json:
        emit_json(summary, args.json)
    else:
        print("offsets per value (macro-F1 on these same cells, before -> after; in-sample, "
              "so optimistic):")
        for name, off in fit.offsets.items():
            n = fit.n_cells[name]
            score = (f"{fit.macro_f1_before[name]:.3f} -> {fit.macro_f1_after[name]:.3f}"
                     if name in fit.macro_f1_before else "no labelled cell")
            kept = "" if n >= args.min_cells else f", kept (fewer than {args.min_cells} cells)"
            print(f"  {name:<26} {' '.join(f'{v:+.1f}' for v in off):<28} {n} cells{kept}; {score}")
        print(f"wrote {args.out}; use it with --attributes/--model {args.out}")
    return 0


def _register_attributes(verbs) -> None:
    from hemascope.attributes.adapt import METHODS as ATT_METHODS, attribute_uda_config

    a = attribute_uda_config()
    at = verbs.add_parser(
        "attributes", formatter_class=Formatter,
        help="carry a morphology-attribute model to a new lab (MMD, DANN or AdaBN; no labels)",
        description="Adapt an attribute model to a lab's unlabelled cells. mmd and dann train "
                    "on annotated --source cells (WBCAtt tables, the model's own attribute "
                    "labels) while aligning the encoder's features of source and --target "
                    "cells; bn only re-estimates batch-norm statistics on the target. No "
                    "label of the target is read. The adapted model loads wherever an "
                    "attribute model does (--attributes DIR).")
    at.add_argument("--method", choices=ATT_METHODS, default=a.method, help="how to adapt")
    at.add_argument("--target", required=True, nargs="+", metavar="PATH",
                    help="the lab's single-cell images (folders searched recursively, or files; "
                         "a folder with a labels.csv gives the cells it lists)")
    at.add_argument("--out", required=True, help="adapted attribute-model folder")
    at.add_argument("--base", default="default", help="attribute model to adapt: folder or "
                                                      "'default'")
    at.add_argument("--source", default=None,
                    help="WBCAtt table or folder of tables (mmd, dann; e.g. ../shared/data/wbcatt)")
    at.add_argument("--images", default=None,
                    help="folder the source tables' path column is relative to (PBC); default: "
                         "found beside the tables")
    at.add_argument("--max-source", type=number(int, 2), default=2000,
                    help="source cells decoded (a seeded sample of the train rows)")
    _config_flags(at, a, UDA_FLAGS)
    add_json_option(at)
    at.set_defaults(handler=_adapt_attributes)


def _adapt_attributes(args: argparse.Namespace) -> int:
    from hemascope.adapt.uda import load_unlabelled
    from hemascope.attributes import load_attribute_model
    from hemascope.attributes.adapt import (adapt_attributes, attribute_uda_config,
                                            save_adapted_attributes, source_cells)
    from hemascope.errors import DatasetError, HemascopeError
    from hemascope.io.atomic import check_output_folder

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.method != "bn" and not args.source:
        raise HemascopeError(f"{args.method} aligns the target with annotated source cells: give "
                             "--source WBCATT_TABLES (or use --method bn, which needs none)")
    check_output_folder(args.out, not_inside=[*args.target, *([args.source] if args.source else [])])
    base = load_attribute_model(args.base)
    target = load_unlabelled(args.target, base)
    cells, unreadable = target.images, target.errors
    for path, reason in unreadable.items():
        log(f"skipping unreadable image {path}: {reason}")
    if not len(cells):
        raise DatasetError(f"no readable image in --target {' '.join(args.target)}")
    cfg = attribute_uda_config(method=args.method, epochs=args.epochs,
                               steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                               lr=args.lr, domain_weight=args.domain_weight, seed=args.seed,
                               threads=args.threads)
    source = labels = None
    if args.method != "bn":
        source, labels, errors = source_cells(args.source, base, images=args.images,
                                              max_cells=args.max_source, seed=args.seed)
        if errors:
            log(f"skipping {len(errors)} unreadable source image(s), e.g. {next(iter(errors))}")
    res = adapt_attributes(base, cells, cfg, source=source, source_targets=labels, log=log)
    save_adapted_attributes(res, base, cfg, args.out, source=args.source,
                            target=" ".join(args.target))
    summary = {"out": args.out, "method": res.method, "target_cells": res.n_target,
               "source_cells": res.n_source, "seconds": round(res.seconds, 1),
               "skipped": sorted(unreadable)}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"wrote {args.out}: {res.method} on {res.n_target} target cells"
              + (f" and {res.n_source} source cells" if res.n_source else "")
              + f" in {res.seconds:.0f} s; use it with --attributes {args.out}")
    return 0


def _target_options(p: argparse.ArgumentParser) -> None:
    """What every unsupervised method takes: the new lab's images and where to write."""
    p.add_argument("--target", required=True,
                   help="images of the new lab (labels optional, never used to adapt)")
    p.add_argument("--out", required=True, help="adapted model folder")
    p.add_argument("--base", default="default", help="model to adapt: folder or 'default'")
    p.add_argument("--unlabelled", action="store_true",
                   help="ignore labels the target may have (no before/after report)")
    add_json_option(p)


def _fewshot(args: argparse.Namespace) -> int:
    from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
    from hemascope.errors import DatasetError, HemascopeError
    from hemascope.io.atomic import check_output_folder, write_json, write_text
    from hemascope.models.artifact import load_classifier

    if args.shot_labels and args.shot_epochs < 1:  # asked for explicitly
        raise HemascopeError("--shot-labels needs --shot-epochs N (N >= 1)")
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.ablation and (args.unlabelled or args.shots_from):
        raise HemascopeError("--ablation samples the shots of every seed from DATA and scores "
                             "on DATA's other images; it takes no --unlabelled or --shots-from")
    check_output_folder(args.out, not_inside=[args.data, *(args.unlabelled or [])])
    base = load_classifier(args.base)
    target = load_target(args.data, base, format=args.format, new_classes=args.new_classes)
    unlabelled = None
    if args.unlabelled:
        from hemascope.adapt.uda import load_unlabelled

        unlabelled = load_unlabelled(args.unlabelled, base)
        if not len(unlabelled.images):
            raise DatasetError(f"no readable image in --unlabelled {' '.join(args.unlabelled)}")
    for path, reason in {**target.errors, **(unlabelled.errors if unlabelled else {})}.items():
        log(f"skipping unreadable image {path}: {reason}")
    shots = args.shots if args.shots is not None else (
        len(target.labels) if unlabelled is not None else FewShotConfig.shots)
    cfg = FewShotConfig(shots=shots, seed=args.seed, mode=args.mode, stain=args.stain,
                        batchnorm=args.batchnorm, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                        pseudo_rounds=args.pseudo_rounds, pseudo_fraction=args.pseudo_fraction,
                        pseudo_per_shot=args.pseudo_per_shot, shot_epochs=args.shot_epochs,
                        max_image_passes=args.max_image_passes,
                        shot_labels=(FewShotConfig.shot_labels if args.shot_labels is None
                                     else args.shot_labels), predict=args.predict,
                        pseudo_from=args.pseudo_from, views=args.views,
                        propagate_with=args.propagate_with, shot_prior=args.shot_prior)
    if args.ablation:
        from hemascope.adapt.ablation import ablation_markdown, run_ablation

        source = load_target(args.source, base, new_classes=False) if args.source else None
        rows = run_ablation(target, base, cfg, seeds=args.seeds, source=source, out_dir=args.out,
                            log=log)
        table = ablation_markdown(rows, shots=cfg.shots, seeds=args.seeds)
        write_json(f"{args.out}/ablation.json", [r.to_dict() for r in rows])
        write_text(f"{args.out}/ablation.md", table + "\n")
        if args.json:
            emit_json([r.to_dict() for r in rows], args.json)
        else:
            print(table)
        return 0
    shot_keys = None
    if args.shots_from:
        shot_keys = _read_list(args.shots_from)
        if args.shots is not None and args.shots != len(shot_keys):
            raise HemascopeError(f"--shots {args.shots} disagrees with the {len(shot_keys)} "
                                 f"images listed in {args.shots_from}")
    res = run_fewshot(target, base, cfg, run_dir=args.out, unlabelled=unlabelled,
                      shot_keys=shot_keys, tune_trials=args.tune, log=log)
    n_pool = res.n_unlabelled
    if res.report is None:  # every labelled image was a shot
        summary = {"out": args.out, "shots": len(res.shots), "unlabelled": n_pool,
                   "predictions": f"{args.out}/predictions.csv", "model": f"{args.out}/model"}
        if args.json:
            emit_json(summary, args.json)
        else:
            print(f"{args.out}: adapted with {len(res.shots)} shots and {n_pool} unlabelled "
                  f"images ({res.seconds:.0f} s); their labels are in {args.out}/predictions.csv,"
                  f" the model in {args.out}/model")
        return 0
    if args.json:
        emit_json(res.report.to_dict(), args.json)
    else:
        r = res.report
        print(f"{args.out}: {len(res.shots)} shots, tested on {r.n_images} images: accuracy "
              f"{r.accuracy:.4f}, macro-F1 {r.macro_f1:.4f} ({res.seconds:.0f} s)")
        if n_pool:
            print(f"  ({n_pool} unlabelled images also labelled in {args.out}/predictions.csv)")
        if res.head_only is not None:
            h = res.head_only
            print(f"  (labels propagated; {args.out}/model alone, as it will classify new cells: "
                  f"accuracy {h.accuracy:.4f}, macro-F1 {h.macro_f1:.4f})")
    return 0


def _suggest(args: argparse.Namespace) -> int:
    import csv
    import io
    from pathlib import Path

    from hemascope.adapt.suggest import embed_for_selection, typical_per_cluster
    from hemascope.adapt.uda import load_unlabelled
    from hemascope.errors import DatasetError
    from hemascope.io.atomic import guard_inputs, write_text
    from hemascope.models.artifact import load_classifier

    guard_inputs(args.out, args.data)
    base = load_classifier(args.base)
    cells = load_unlabelled(args.data, base)
    for path, reason in cells.errors.items():
        print(f"skipping unreadable image {path}: {reason}", file=sys.stderr)
    if not len(cells.images):
        raise DatasetError(f"no readable image in {' '.join(args.data)}")
    if not 1 <= args.n <= len(cells.images):
        raise DatasetError(f"--n must lie in 1..{len(cells.images)}, the readable images")
    picks, sizes, typ = typical_per_cluster(embed_for_selection(base, cells.images), args.n,
                                            seed=args.seed)
    root = Path(args.data[0]) if len(args.data) == 1 and Path(args.data[0]).is_dir() else None
    rows = []
    for i, size in zip(picks, sizes):
        key = Path(cells.keys[i])
        rows.append({"path": str(key.relative_to(root)) if root else str(key),
                     "cluster_size": size, "typicality": round(float(typ[i]), 4)})
    buf = io.StringIO()
    table = csv.DictWriter(buf, fieldnames=["path", "cluster_size", "typicality"],
                           lineterminator="\n")
    table.writeheader()
    table.writerows(rows)
    write_text(args.out, buf.getvalue())
    if args.json:
        emit_json({"out": args.out, "suggested": rows, "n_images": len(cells.images)}, args.json)
    else:
        print(f"{args.out}: {len(rows)} of {len(cells.images)} cells to label first "
              f"(clusters of {min(sizes)}-{max(sizes)} cells)")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from hemascope.io.atomic import guard_inputs

    inputs = [args.data] + ([args.images] if args.images else [])
    guard_inputs(args.out, inputs)
    if args.gallery:
        guard_inputs(args.gallery, inputs)
    return {"types": _audit_types, "attributes": _audit_attributes,
            "boxes": _audit_boxes}[args.what](args)


def _audit_rows(audit, keys, *, attribute: str | None = None) -> list[dict]:
    """CSV rows of a :class:`hemascope.adapt.audit.LabelAudit`, suspects first."""
    import numpy as np

    p_label, p_suggested = audit.label_probability(), audit.suggested_probability()
    rows = []
    for i in audit.order():
        if attribute and not audit.audited[i]:
            continue  # the table gives no value for this attribute
        verdict = ("suspect" if audit.suspect[i] else "ok") if audit.audited[i] else "not audited"
        row = {"path": keys[i]} | ({"attribute": attribute} if attribute else {})
        rows.append(row | {
            "label": audit.classes[audit.labels[i]], "verdict": verdict,
            "suggested": audit.classes[audit.suggested[i]] if audit.suspect[i] else "",
            "label_probability": "" if np.isnan(p_label[i]) else round(float(p_label[i]), 4),
            "suggested_probability": ("" if np.isnan(p_suggested[i])
                                      else round(float(p_suggested[i]), 4))})
    return rows


def _write_audit(out: str, rows: list[dict], *, empty: list[str] | None = None) -> None:
    """Rows as a CSV written atomically; ``empty``: the header when there is no row."""
    import csv
    import io

    from hemascope.io.atomic import write_text

    buf = io.StringIO()
    fields = list(rows[0]) if rows else empty or ["path", "label", "verdict", "suggested",
                                                  "label_probability", "suggested_probability"]
    table = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    table.writeheader()
    table.writerows(rows)
    write_text(out, buf.getvalue())


def _audit_types(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hemascope.adapt.audit import audit_target
    from hemascope.adapt.fewshot import load_target
    from hemascope.models.artifact import load_classifier

    base = load_classifier(args.base)
    target = load_target(args.data, base, format=args.format)
    for path, reason in target.errors.items():
        print(f"skipping unreadable image {path}: {reason}", file=sys.stderr)
    audit = audit_target(base, target, method=args.rule, folds=args.folds, seed=args.seed,
                         features=args.features, views=args.views, attributes=args.attributes,
                         log=lambda s: print(s, file=sys.stderr, flush=True))
    rows = _audit_rows(audit, target.keys)
    _write_audit(args.out, rows)
    suspects = [r for r in rows if r["verdict"] == "suspect"]
    skipped = sorted({target.classes[c] for c in target.labels[~audit.audited]})
    if args.gallery:
        from hemascope.report.plots import error_gallery

        shown = [i for i in audit.order() if audit.suspect[i]][:48]
        caps = [f"{target.classes[target.labels[i]]} -> {target.classes[audit.suggested[i]]}\n"
                f"{Path(target.keys[i]).name}" for i in shown]
        error_gallery([target.images[i] for i in shown], caps, args.gallery,
                      title=f"{len(suspects)} suspect labels of {len(rows)} ({args.rule} rule)")
    summary = {"out": args.out, "images": len(rows), "suspects": len(suspects),
               "confusions": audit.confusions(), "not_audited_classes": skipped,
               "rule": args.rule, "features": audit.features, "unreadable": len(target.errors)}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"{args.out}: {len(suspects)} of {len(rows)} labels look wrong"
              + (f" ({', '.join(f'{k}: {n}' for k, n in audit.confusions().items())})"
                 if suspects else ""))
        if skipped:
            print(f"not audited (fewer than 2 images): {', '.join(skipped)}")
    return 0


def _audit_attributes(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hemascope.adapt.audit import audit_attribute_labels
    from hemascope.evaluate.attributes import table_cells

    loaded, root, paths, truth, probs, errors = table_cells(args.data, model=args.attributes,
                                                            images=args.images, adjusted=False)
    for path, reason in errors.items():
        print(f"skipping {path}: {reason}", file=sys.stderr)
    audits = audit_attribute_labels(probs, truth, loaded.model.attributes, method=args.rule)
    rows = [r for name, audit in audits.items() for r in _audit_rows(audit, paths, attribute=name)]
    rows.sort(key=lambda r: r["verdict"] != "suspect")  # stable: each attribute's order kept
    _write_audit(args.out, rows)
    suspects = [r for r in rows if r["verdict"] == "suspect"]
    per_attribute = {name: int(a.suspect.sum()) for name, a in audits.items()}
    if args.gallery:
        from hemascope.io.image import read_image
        from hemascope.report.plots import error_gallery

        shown = sorted(suspects, key=lambda r: r["label_probability"])[:48]
        caps = [f"{r['attribute']}: {r['label']} -> {r['suggested']}\n{Path(r['path']).name}"
                for r in shown]
        error_gallery([read_image(root / r["path"]) for r in shown], caps, args.gallery,
                      title=f"{len(suspects)} suspect attribute labels ({args.rule} rule)")
    summary = {"out": args.out, "cells": len(paths), "labels": len(rows),
               "suspects": len(suspects), "per_attribute": per_attribute,
               "confusions": {name: a.confusions() for name, a in audits.items()
                              if a.suspect.any()},
               "rule": args.rule, "unreadable": len(errors)}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"{args.out}: {len(suspects)} of {len(rows)} attribute labels of {len(paths)} "
              "cells look wrong"
              + (f" ({', '.join(f'{k}: {n}' for k, n in per_attribute.items() if n)})"
                 if suspects else ""))
    return 0


BOX_FIELDS = ["image", "kind", "label", "suggested", "score", "x0", "y0", "x1", "y1"]


def _audit_boxes(args: argparse.Namespace) -> int:
    from hemascope.cli.detect import load_field_set
    from hemascope.detect.audit import (DEFAULT_ABSENT, KINDS, detector_thresholds,
                                        find_box_issues)
    from hemascope.detect.predict import load_detector, predict_ensemble
    from hemascope.evaluate.detector import load_fields

    det = load_detector(args.detector)
    fields = load_fields(load_field_set(args), det.classes, split=args.split).fields
    preds = []
    for i, f in enumerate(fields, 1):
        preds.append(predict_ensemble([det], f.image, views=args.tta))
        if i % 20 == 0 or i == len(fields):
            print(f"detected {i}/{len(fields)} fields", file=sys.stderr, flush=True)
    issues, thresholds = find_box_issues(
        preds, [(f.boxes, f.labels) for f in fields], len(det.classes), absent=DEFAULT_ABSENT,
        thresholds=detector_thresholds(det.config, det.classes, args.thresholds))
    name = ["", *det.classes]
    issues = sorted(issues, key=lambda x: (KINDS.index(x.kind), -x.score))
    _write_audit(args.out, [{"image": fields[x.field].name, "kind": x.kind,
                             "label": name[x.label], "suggested": name[x.suggested],
                             "score": round(x.score, 4),
                             **dict(zip(("x0", "y0", "x1", "y1"), (round(v, 1) for v in x.box)))}
                            for x in issues], empty=BOX_FIELDS)
    counts = {k: sum(1 for x in issues if x.kind == k) for k in KINDS}
    if args.gallery:
        from hemascope.report.plots import error_gallery

        shown = issues[:48]
        crops = [_box_crop(fields[x.field].image, x.box) for x in shown]
        caps = [f"{x.kind}: {name[x.label] or '-'} -> {name[x.suggested] or '-'} "
                f"({x.score:.2f})\n{fields[x.field].name}" for x in shown]
        error_gallery(crops, caps, args.gallery,
                      title=f"{len(issues)} suspect boxes in {len(fields)} fields")
    summary = {"out": args.out, "fields": len(fields),
               "boxes": int(sum(len(f.boxes) for f in fields)), "issues": counts,
               "thresholds": {c: round(float(thresholds[k + 1]), 4)
                              for k, c in enumerate(det.classes)}, "views": args.tta}
    if args.json:
        emit_json(summary, args.json)
    else:
        print(f"{args.out}: {len(issues)} suspect boxes in {len(fields)} fields "
              f"({', '.join(f'{k} {n}' for k, n in counts.items())})")
    return 0


def _box_crop(image, box, *, margin: float = 0.5):
    """The box with ``margin`` of its size around it, its outline drawn."""
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin + 8, (y1 - y0) * margin + 8
    a, b = int(max(0, x0 - mx)), int(max(0, y0 - my))
    c, d = int(min(w, x1 + mx)), int(min(h, y1 + my))
    crop = image[b:d, a:c].copy()
    cv2.rectangle(crop, (int(x0) - a, int(y0) - b), (int(x1) - a, int(y1) - b), (0, 255, 0), 2)
    return crop


def _read_list(path: str) -> list[str]:
    """Non-empty lines of a text file (the first column of a CSV with a ``path`` header)."""
    from pathlib import Path

    from hemascope.errors import DatasetError

    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read the list {path}: {e}") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and lines[0].startswith("path,"):  # hemascope suggest's CSV: its first column
        import csv

        lines = [row[0] for row in csv.reader(lines[1:]) if row]
    if not lines:
        raise DatasetError(f"{path} lists no image")
    return lines


def _uda(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hemascope.adapt.fewshot import load_target
    from hemascope.adapt.uda import (UdaConfig, adapt_batchnorm, adapt_unsupervised,
                                     load_unlabelled, save_adapted)
    from hemascope.data import detect_format
    from hemascope.errors import DatasetError
    from hemascope.io.atomic import check_output_folder
    from hemascope.io.image import is_image_file
    from hemascope.models.artifact import load_classifier

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    tgt = Path(args.target)
    if not tgt.exists():
        raise DatasetError(f"target {tgt} does not exist")
    check_output_folder(args.out, not_inside=[tgt, *([args.source] if getattr(args, "source", None) else [])])
    base = load_classifier(args.base)
    # labelled = a label table or class folders; a flat folder of images (or one image) is
    # unlabelled
    labelled = not args.unlabelled and (
        (tgt.is_file() and not is_image_file(tgt))
        or (tgt.is_dir() and (detect_format(tgt) != "folder" or any(d.is_dir() for d in tgt.iterdir()))))
    # labels only score the adaptation, so every class must be one the model has
    target = (load_target(args.target, base, new_classes=False) if labelled
              else load_unlabelled(args.target, base))
    for path, reason in target.errors.items():
        log(f"skipping unreadable image {path}: {reason}")
    if args.method == "bn":
        res = adapt_batchnorm(target, base, target_labelled=labelled, log=log)
        save_adapted(res, base, UdaConfig(method="bn"), args.out, source=None, target=args.target)
        return _report_uda(args, res)
    if args.method == "shot":
        from hemascope.adapt.shot import ShotConfig, adapt_source_free

        classes = _model_classes(args.classes, base.classes) if args.classes else None
        if classes is None and not labelled:
            log(f"no --classes: SHOT spreads predictions over all {len(base.classes)} classes of "
                "the model; name the classes the lab's cells have if they are fewer")
        scfg = ShotConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          diversity=args.diversity, pseudo_weight=args.pseudo_weight,
                          max_images=args.max_images, seed=args.seed, threads=args.threads)
        res = adapt_source_free(target, base, scfg, target_labelled=labelled, classes=classes,
                                log=log)
        save_adapted(res, base, scfg, args.out, source=None, target=args.target)
        return _report_uda(args, res)
    source = load_target(args.source, base, new_classes=False)
    cfg = UdaConfig(method=args.method, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                    batch_size=args.batch_size, lr=args.lr, domain_weight=args.domain_weight,
                    seed=args.seed, threads=args.threads)
    res = adapt_unsupervised(source, target, base, cfg, target_labelled=labelled, log=log)
    save_adapted(res, base, cfg, args.out, source=args.source, target=args.target)
    return _report_uda(args, res)


def _model_classes(names: list[str], model_classes: list[str]) -> list[str]:
    """``names`` (any spelling the taxonomy knows) as the model's class names, in its order."""
    from hemascope.model_classes import allowed_classes

    return [model_classes[i] for i in allowed_classes(names, model_classes)]


def _report_uda(args: argparse.Namespace, res) -> int:
    summary = {"out": args.out, "classes": res.classes,
               "target_accuracy_before": res.before.accuracy if res.before else None,
               "target_accuracy_after": res.after.accuracy if res.after else None,
               "target_macro_f1_before": res.before.macro_f1 if res.before else None,
               "target_macro_f1_after": res.after.macro_f1 if res.after else None}
    if args.json:
        emit_json(summary, args.json)
    else:
        from hemascope.adapt.uda import ADAPTATION_NAMES

        msg = f"wrote {args.out} ({ADAPTATION_NAMES[args.method]}, classes {', '.join(res.classes)})"
        if res.before:
            msg += (f": target accuracy {res.before.accuracy:.4f} -> {res.after.accuracy:.4f}, "
                    f"macro-F1 {res.before.macro_f1:.4f} -> {res.after.macro_f1:.4f}")
        print(msg)
    return 0
