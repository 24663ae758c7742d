"""WBCAtt attribute recognition: the official test split, per attribute, and label noise.

    python benchmarks/attributes_wbcatt.py --model MODEL_DIR [--name attributes_wbcatt] [--tta 8]

Scores the model on ``pbc_attr_v1_test.csv`` (3,099 PBC cells never used in training or
model selection): accuracy and macro-F1 per attribute and their averages (Tsutsui et al.
2023). Label-noise check: on the test images that were re-annotated by other annotators
(``pbc_attr_reannotations.csv``), agreement and Cohen's kappa of annotator vs annotator,
model vs the original labels and model vs the re-annotation. Writes
``results/<name>.{json,md}``.

With ``--concepts DIR`` (``hemascope train concepts``): the concept-bottleneck cell-type
scores on the test split (sparse linear, and gradient-boosted trees for comparison), and
the bottleneck against a direct image classifier (the shipped PBC default, its argmax
restricted to the WBCAtt classes) on the test cells that neither model saw in training:
the WBCAtt test rows that also lie in the PBC classifier's recorded test split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import machine, shared_data, write_results

ANCHORS = {"ConvNeXt-T ImageNet-pretrained @ 224 px (published)": 0.916,
           "with ground-truth part masks (published)": 0.9298,
           "released ResNet-50 checkpoint (published)": 0.9127}
TARGET = 0.93


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default="attributes_wbcatt")
    ap.add_argument("--concepts", default=None, help="concept-bottleneck folder to compare")
    ap.add_argument("--classifier", default="default", help="direct classifier to compare with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tta", type=int, default=0, choices=(0, 2, 4, 8),
                    help="also score the test split averaging this many flips/rotations")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope import taxonomy
    from hemascope.attributes import attribute_probabilities, load_attribute_model
    from hemascope.data.tables import read_wbcatt, read_wbcatt_folder
    from hemascope.evaluate.attributes import agreement, evaluate_attributes
    from hemascope.io.image import read_image

    data = shared_data()
    loaded = load_attribute_model(args.model)
    t = time.perf_counter()
    ev = evaluate_attributes(data / "wbcatt" / "pbc_attr_v1_test.csv", model=loaded)
    seconds = time.perf_counter() - t
    rep = ev.report

    test = read_wbcatt(data / "wbcatt" / "pbc_attr_v1_test.csv")
    re = read_wbcatt(data / "wbcatt" / "pbc_attr_reannotations.csv")
    original = {s.path: s for s in test.samples}
    both = [s for s in re.samples if s.path in original]
    attrs = loaded.model.attributes
    probs = attribute_probabilities(loaded, [read_image(re.root / s.path) for s in both])
    model = {k: [v[j] for j in probs[k].argmax(1)] for k, v in attrs.items()}
    first = {k: [original[s.path].attributes.get(k, "") for s in both] for k in attrs}
    second = {k: [s.attributes.get(k, "") for s in both] for k in attrs}
    # annotator vs annotator needs no model: every re-annotated cell of the three splits
    tables = {s.path: s for s in read_wbcatt_folder(data / "wbcatt").samples}
    every = [s for s in re.samples if s.path in tables]
    noise = {"n_images": len(both),
             "annotator_vs_annotator": agreement(first, second, attrs),
             "model_vs_original": agreement(model, first, attrs),
             "model_vs_reannotation": agreement(model, second, attrs),
             "n_images_all": len(every),
             "annotator_vs_annotator_all": agreement(
                 {k: [tables[s.path].attributes.get(k, "") for s in every] for k in attrs},
                 {k: [s.attributes.get(k, "") for s in every] for k in attrs}, attrs)}

    tta = None
    if args.tta:
        t = time.perf_counter()
        rep_tta = evaluate_attributes(data / "wbcatt" / "pbc_attr_v1_test.csv", model=loaded,
                                      tta=args.tta).report
        tta = {"views": args.tta, "test": rep_tta.to_dict(),
               "cells_per_s": round(rep_tta.n_images / (time.perf_counter() - t), 1)}

    concepts = bottleneck_vs_direct(args.concepts, args.classifier, test) if args.concepts else None
    training = loaded.config.get("training", {})
    payload = {"model": loaded.path.name, "arch": loaded.config["arch"],
               "image_size": loaded.config["image_size"], "test": rep.to_dict(),
               "label_noise": noise, "eval_seconds": round(seconds, 1),
               "cells_per_s": round(rep.n_images / seconds, 1),
               "training_wall_time_s": training.get("wall_time_s"),
               "training_device": training.get("device"), "anchors": ANCHORS,
               "target_average_macro_f1": TARGET, "concept_bottleneck": concepts, "tta": tta,
               "machine": machine()}
    rows = []
    for name in taxonomy.ATTRIBUTES:
        if name not in rep.attributes:
            continue
        r = rep.attributes[name]
        aa = noise["annotator_vs_annotator"].get(name, {})
        mo = noise["model_vs_original"].get(name, {})
        al = noise["annotator_vs_annotator_all"].get(name, {})
        rows.append(f"| {name} | {r.accuracy:.4f} | {r.macro_f1:.4f} | "
                    f"{aa.get('agreement', float('nan')):.3f} | {mo.get('agreement', float('nan')):.3f} | "
                    f"{al.get('agreement', float('nan')):.3f} ({al.get('kappa', float('nan')):.2f}) |")
    anchors = "\n".join(f"| anchor: {k} | | {v:.4f} | | | |" for k, v in ANCHORS.items())
    table = f"""## WBCAtt official test split ({rep.n_images} cells)

Model: {loaded.config['arch']} @ {loaded.config['image_size']} px, trained {(training.get('wall_time_s') or 0) / 60:.0f} min on {training.get('device')}.
Average macro-F1 **{rep.average_macro_f1:.4f}** (target {TARGET}), average accuracy {rep.average_accuracy:.4f}.

| attribute | accuracy | macro-F1 | annotator vs annotator agreement* | model vs original labels* | annotator vs annotator, all re-annotated** (kappa) |
|---|---|---|---|---|---|
{chr(10).join(rows)}
| **average** | {rep.average_accuracy:.4f} | {rep.average_macro_f1:.4f} | | | |
{anchors}

\\* on the {len(both)} test images that were re-annotated by other annotators.
\\*\\* on all {len(every)} re-annotated images of the three splits (no model involved)."""
    if tta:
        tr = tta["test"]
        table += (f"\n\nWith test-time augmentation over {tta['views']} flips/rotations (`hemascope "
                  f"evaluate attributes --tta {tta['views']}`): average macro-F1 "
                  f"**{tr['average_macro_f1']:.4f}**, average accuracy {tr['average_accuracy']:.4f} "
                  f"({tta['cells_per_s']:.0f} cells/s against {payload['cells_per_s']:.0f}); "
                  "per attribute: " + ", ".join(f"{k} {v['macro_f1']:.4f}"
                                                for k, v in tr["attributes"].items()) + ".")
    if concepts:
        full, gb, pair = concepts["full_test"], concepts["full_test_gradient_boosting"], concepts["paired"]
        table += f"""

## Concept bottleneck: cell type from the predicted attributes

| model | cells | accuracy | macro-F1 |
|---|---|---|---|
| sparse linear bottleneck, whole test split | {full['n_images']} | {full['accuracy']:.4f} | {full['macro_f1']:.4f} |
""" + (f"| gradient-boosted trees bottleneck, whole test split | {gb['n_images']} | {gb['accuracy']:.4f} | {gb['macro_f1']:.4f} |\n" if gb else "") + f"""| sparse linear bottleneck, paired cells** | {pair['n_images']} | {pair['bottleneck']['accuracy']:.4f} | {pair['bottleneck']['macro_f1']:.4f} |
| direct classifier ({pair['classifier']}), paired cells** | {pair['n_images']} | {pair['direct']['accuracy']:.4f} | {pair['direct']['macro_f1']:.4f} |

Gap (direct - bottleneck) in macro-F1 on the paired cells: {pair['gap_macro_f1']:+.4f} (target: within 0.02).
\\*\\* WBCAtt test cells that are also in the direct classifier's own test split (neither model trained on them)."""
    write_results(args.name, payload, table)


def bottleneck_vs_direct(concepts_dir: str, classifier: str, test) -> dict:
    """Bottleneck scores from its file, and bottleneck vs direct classifier on paired cells."""
    import numpy as np

    from hemascope.classify import predict_arrays
    from hemascope.data.splits import load_split
    from hemascope.evaluate.classification import classification_report
    from hemascope.model_classes import map_to_classes
    from hemascope.explain.concept_model import load_concept_model
    from hemascope.io.image import read_image
    from hemascope.models.artifact import load_classifier

    cm = load_concept_model(concepts_dir)
    clf = load_classifier(classifier)
    held_out = set(load_split(clf.path / clf.config["training"]["split_file"]).keys("test"))
    classes = cm.bottleneck.classes
    prefix = "PBC_dataset_normal_DIB/"
    paired = [s for s in test.samples if s.path.removeprefix(prefix) in held_out
              and s.label in classes]
    images = [read_image(test.root / s.path) for s in paired]
    y = np.array([classes.index(s.label) for s in paired])
    cbm = cm.bottleneck.predict_proba(cm.features(images)).argmax(1)
    probs = predict_arrays(clf, images)
    cols = [clf.classes.index(map_to_classes(c, clf.classes)) for c in classes]
    direct = probs[:, cols].argmax(1)
    b = classification_report(y, cbm, classes).to_dict()
    d = classification_report(y, direct, classes).to_dict()
    return {"concepts": Path(concepts_dir).name, "full_test": cm.config["metrics"]["test"],
            "full_test_gradient_boosting": cm.config["metrics"].get("test_gradient_boosting"),
            "paired": {"n_images": len(paired), "classifier": clf.path.name, "bottleneck": b,
                       "direct": d, "gap_macro_f1": d["macro_f1"] - b["macro_f1"]}}


if __name__ == "__main__":
    main()
