"""``hemascope explain``: show why a model decided what it did."""

from __future__ import annotations

import argparse
from pathlib import Path

from hemascope.cli._common import (Formatter, add_json_option, emit_json, iter_images, number,
                                   finish_batch, output_stems, print_skipped)


def register(groups: argparse._SubParsersAction) -> None:
    ex = groups.add_parser("explain", help="explanations (Grad-CAM, concepts, counterfactuals, bias)", formatter_class=Formatter)
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
    gc.add_argument("--alpha", type=number(float, 0, 1), default=0.45, help="heat-map opacity")
    add_json_option(gc)
    gc.set_defaults(handler=_gradcam)

    cc = verbs.add_parser(
        "concepts", formatter_class=Formatter, help="cell type from attributes, with interventions",
        description="For each image: the attributes the attribute model reads, the cell type "
                    "the concept bottleneck gives, the concepts that pushed it there, and with "
                    "--set ATTRIBUTE=VALUE how the prediction changes when a person corrects an "
                    "attribute (an intervention).")
    cc.add_argument("paths", nargs="+", help="single-cell images and/or folders")
    cc.add_argument("--concepts", default="default",
                    help="folder of `hemascope train concepts`, or 'default' (the shipped one)")
    cc.add_argument("--set", action="append", default=[], metavar="ATTRIBUTE=VALUE",
                    help="intervene: set this attribute to this value (repeatable)")
    cc.add_argument("--top", type=number(int, 1), default=5, help="contributing concepts to show")
    add_json_option(cc)
    cc.set_defaults(handler=_concepts)

    cf = verbs.add_parser(
        "counterfactual", formatter_class=Formatter,
        help="nearest real cells that differ in one attribute",
        description="Read the attributes of one cell image with an attribute model, then find "
                    "the gallery cells (an annotated WBCAtt table) nearest to it in the model's "
                    "embedding space whose ATTRIBUTE differs while the other attributes agree "
                    "(or differ least). With --out, writes a captioned montage PNG.")
    cf.add_argument("path", help="one single-cell image")
    cf.add_argument("--attributes", default="default", metavar="DIR",
                    help="attribute model (`hemascope train attributes`) or 'default'")
    cf.add_argument("--attribute", required=True, metavar="NAME", help="e.g. nucleus_shape")
    cf.add_argument("--value", default=None, help="only cells with this value of the attribute")
    cf.add_argument("--gallery", default=None, metavar="CSV",
                    help="WBCAtt table (or folder of tables) to search; default: the official "
                         "train table under the shared data folder")
    cf.add_argument("--images", default=None, help="folder the table's paths are relative to")
    cf.add_argument("-k", type=number(int, 1), default=5, help="cells to return")
    cf.add_argument("--max-gallery", type=number(int, 1), default=None, metavar="N",
                    help="search a seeded random subset of N gallery cells (faster)")
    cf.add_argument("--out", default=None, metavar="PNG", help="write a montage: query + results")
    add_json_option(cf)
    cf.set_defaults(handler=_counterfactual)

    bi = verbs.add_parser(
        "bias", formatter_class=Formatter, help="where a classifier errs, split by attribute",
        description="Classify the images of a WBCAtt table and split the error rate by every "
                    "attribute value (from the table, or read by --attributes MODEL); the "
                    "largest gaps between values are listed first.")
    bi.add_argument("--csv", required=True, help="WBCAtt table (or a folder of the tables)")
    bi.add_argument("--images", default=None, help="folder the table's paths are relative to")
    bi.add_argument("--model", default="default", help="classifier folder or 'default'")
    bi.add_argument("--attributes", default=None, metavar="DIR",
                    help="read attributes with this model instead of taking the table's")
    bi.add_argument("--min-support", type=number(int, 1), default=20, help="ignore rarer attribute values")
    bi.add_argument("--flag-gap", type=number(float, 0, 1), default=0.05, help="report gaps at least this large")
    add_json_option(bi)
    bi.set_defaults(handler=_bias)


def _counterfactual(args: argparse.Namespace) -> int:
    from hemascope.cli._common import progress
    from hemascope.errors import HemascopeError
    from hemascope.evaluate.attributes import default_wbcatt_test
    from hemascope.explain.counterfactual_study import counterfactual_search
    from hemascope.io.image import read_image

    if args.k < 1:
        raise HemascopeError("-k must be at least 1")
    gallery = Path(args.gallery) if args.gallery else default_wbcatt_test().with_name(
        "pbc_attr_v1_train.csv")
    if not gallery.exists():
        raise HemascopeError(f"gallery {gallery} does not exist (give --gallery and --images)")
    image = read_image(args.path)
    res = counterfactual_search(image, attributes_model=args.attributes, gallery=gallery,
                                attribute=args.attribute, value=args.value, images=args.images,
                                k=args.k, max_gallery=args.max_gallery,
                                progress=lambda it: progress(it, desc="embedding gallery"))
    res["path"] = str(args.path)
    if args.out:
        from hemascope.io.atomic import guard_inputs
        from hemascope.report.plots import error_gallery

        guard_inputs(args.out, [args.path])
        shown = [image] + [read_image(r["path"]) for r in res["results"]]
        caps = [f"query\n{res['query']['attributes'][args.attribute]}"] + [
            f"{r['label']}\n{r['value']}\n+{r['other_differences']} other diff."
            for r in res["results"]]
        error_gallery(shown, caps, args.out, columns=len(shown),
                      title=f"counterfactuals in {args.attribute}")
        res["montage"] = str(args.out)
    if args.json:
        emit_json(res, args.json)
    if args.json != "-":
        q = res["query"]["attributes"][args.attribute]
        print(f"{args.path}: {args.attribute} = {q} ({res['n_gallery']} gallery cells searched)")
        for r in res["results"]:
            print(f"  {r['value']:<20} {r['label']:<12} distance {r['distance']:.3f}  "
                  f"other differences {r['other_differences']}  {r['path']}")
        if not res["results"]:
            print(f"  no gallery cell has another {args.attribute}"
                  + (f" = {args.value}" if args.value else ""))
        if args.out:
            print(f"wrote {args.out}")
    print_skipped(res["errors"])
    return 0


def _bias(args: argparse.Namespace) -> int:
    from hemascope.cli._common import progress
    from hemascope.explain.bias_study import bias_study

    res = bias_study(args.csv, model=args.model, images=args.images, attributes=args.attributes,
                     min_support=args.min_support, flag_gap=args.flag_gap,
                     progress=lambda it: progress(it, desc="classifying"))
    if args.json:
        emit_json(res, args.json)
    if args.json != "-":
        print(f"{res['n_images']} images, accuracy {res['accuracy']:.4f}; attributes from the "
              f"{res['source']}")
        for f in res["findings"]:
            print(f"{f['attribute']:<28} error {f['worst_error']:.3f} when {f['worst_value']!r} vs "
                  f"{f['best_error']:.3f} when {f['best_value']!r} (gap {f['gap']:+.3f})")
    print_skipped(res["errors"])
    return 0


def _concepts(args: argparse.Namespace) -> int:
    import numpy as np

    from hemascope.classify import expand_paths
    from hemascope.errors import HemascopeError
    from hemascope.explain.concept_model import load_concept_model

    cm = load_concept_model(args.concepts)
    attrs = cm.attributes.model.attributes
    edits = []
    for item in args.set:
        raw_name, _, raw_value = item.partition("=")
        # names and values as the model spells them, whatever the case and spacing typed
        name = next((a for a in attrs if _fold(a) == _fold(raw_name)), raw_name)
        value = next((v for v in attrs.get(name, ()) if _fold(v) == _fold(raw_value)), raw_value)
        if name not in attrs or value not in attrs[name]:
            raise HemascopeError(f"--set {item!r}: expected ATTRIBUTE=VALUE with one of "
                                 f"{', '.join(attrs)}" + (f"; {name} takes {', '.join(attrs[name])}"
                                                           if name in attrs else ""))
        if any(name == n for n, _ in edits):
            raise HemascopeError(f"--set names {name} twice: give one value per attribute")
        edits.append((name, value))
    files = expand_paths(args.paths)
    rows, errors = [], {}
    classes = cm.bottleneck.classes
    for f, img, err in iter_images(files, desc="concepts"):
        if img is None:
            errors[str(f)] = err
            continue
        x = cm.features([img])[0]
        p = cm.bottleneck.predict_proba(x[None])[0]
        row = {"path": str(f), "class": classes[int(p.argmax())], "probability": float(p.max()),
               "attributes": {}, "because": cm.bottleneck.explain(x, top=args.top)}
        start = 0
        for name, values in attrs.items():
            block = x[start:start + len(values)]
            row["attributes"][name] = values[int(block.argmax())]
            start += len(values)
        if edits:
            q = cm.bottleneck.intervene_many(x, dict(edits))
            row["after_intervention"] = {"set": dict(edits), "class": classes[int(np.argmax(q))],
                                         "probability": float(q.max()),
                                         "probabilities": dict(zip(classes, map(float, q)))}
        rows.append(row)
    if args.json:
        emit_json({"cells": rows, "errors": errors}, args.json)
    if args.json != "-":
        for r in rows:
            why = ", ".join(f"{c} ({v:+.2f})" for c, v in r["because"])
            print(f"{r['path']}\t{r['class']} {r['probability']:.3f}\tbecause {why}")
            if "after_intervention" in r:
                a = r["after_intervention"]
                print(f"  with {a['set']}: {a['class']} {a['probability']:.3f}")
    return finish_batch(errors, len(rows))


def _gradcam(args: argparse.Namespace) -> int:
    from hemascope.classify import expand_paths, preprocess
    from hemascope.errors import HemascopeError
    from hemascope.explain.gradcam import gradcam, overlay
    from hemascope.io.atomic import guard_inputs
    from hemascope.io.image import write_image
    from hemascope.models.artifact import load_classifier, require_pytorch
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
        require_pytorch(loaded, "Grad-CAM")
        names = loaded.classes
        if args.target is not None:
            concept = resolve(args.target)
            if concept not in names:
                raise HemascopeError(f"--target {args.target!r} is not a class of the model "
                                     f"({', '.join(names)})")
            target = names.index(concept)
    files = expand_paths(args.paths)
    stems = output_stems(files)
    out_dir = Path(args.out)
    rows, errors = [], {}
    for f, img, err in iter_images(files, desc="grad-cam"):
        if img is None:
            errors[str(f)] = err
            continue
        [cam] = gradcam(loaded.model, preprocess([img], loaded.config), target=target, block=block)
        dest = out_dir / (f"{stems[f]}_{args.attribute}_gradcam.png" if args.attribute
                          else f"{stems[f]}_gradcam.png")
        guard_inputs(dest, files)
        write_image(dest, overlay(img, cam.heatmap, alpha=args.alpha))
        rows.append({"path": str(f), "overlay": str(dest), "class": names[cam.target],
                     "probability": cam.score})
    if args.json:
        emit_json({"explanations": rows, "errors": errors}, args.json)
    if args.json != "-":
        for r in rows:
            print(f"{r['path']}\t{r['class']}\t{r['probability']:.3f}\t{r['overlay']}")
    return finish_batch(errors, len(rows))


def _fold(text: str) -> str:
    """``Nucleus Shape`` -> ``nucleus_shape``: how names typed on a command line are matched."""
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
