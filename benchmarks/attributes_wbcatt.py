"""WBCAtt attribute recognition: the official test split, per attribute, and label noise.

    python benchmarks/attributes_wbcatt.py --model MODEL_DIR [--name attributes_wbcatt]

Scores the model on ``pbc_attr_v1_test.csv`` (3,099 PBC cells never used in training or
model selection): accuracy and macro-F1 per attribute and their averages (Tsutsui et al.
2023). Label-noise check: on the test images that were re-annotated by other annotators
(``pbc_attr_reannotations.csv``), agreement and Cohen's kappa of annotator vs annotator,
model vs the original labels and model vs the re-annotation. Writes
``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

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
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope import taxonomy
    from hemascope.attributes import attribute_probabilities, load_attribute_model
    from hemascope.data.tables import read_wbcatt
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
    noise = {"n_images": len(both),
             "annotator_vs_annotator": agreement(first, second, attrs),
             "model_vs_original": agreement(model, first, attrs),
             "model_vs_reannotation": agreement(model, second, attrs)}

    training = loaded.config.get("training", {})
    payload = {"model": str(loaded.path), "arch": loaded.config["arch"],
               "image_size": loaded.config["image_size"], "test": rep.to_dict(),
               "label_noise": noise, "eval_seconds": round(seconds, 1),
               "cells_per_s": round(rep.n_images / seconds, 1),
               "training_wall_time_s": training.get("wall_time_s"),
               "training_device": training.get("device"), "anchors": ANCHORS,
               "target_average_macro_f1": TARGET, "machine": machine()}
    rows = []
    for name in taxonomy.ATTRIBUTES:
        if name not in rep.attributes:
            continue
        r = rep.attributes[name]
        aa = noise["annotator_vs_annotator"].get(name, {})
        mo = noise["model_vs_original"].get(name, {})
        rows.append(f"| {name} | {r.accuracy:.4f} | {r.macro_f1:.4f} | "
                    f"{aa.get('agreement', float('nan')):.3f} | {mo.get('agreement', float('nan')):.3f} |")
    anchors = "\n".join(f"| anchor: {k} | | {v:.4f} | | |" for k, v in ANCHORS.items())
    table = f"""## WBCAtt official test split ({rep.n_images} cells)

Model: {loaded.config['arch']} @ {loaded.config['image_size']} px, trained {(training.get('wall_time_s') or 0) / 60:.0f} min on {training.get('device')}.
Average macro-F1 **{rep.average_macro_f1:.4f}** (target {TARGET}), average accuracy {rep.average_accuracy:.4f}.

| attribute | accuracy | macro-F1 | annotator vs annotator agreement* | model vs original labels* |
|---|---|---|---|---|
{chr(10).join(rows)}
| **average** | {rep.average_accuracy:.4f} | {rep.average_macro_f1:.4f} | | |
{anchors}

\\* on the {len(both)} test images that were re-annotated by other annotators."""
    write_results(args.name, payload, table)


if __name__ == "__main__":
    main()
