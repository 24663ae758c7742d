"""Attribute transfer to another lab: the shipped attribute model on CellaVision's cells
(another lab, stain and scanner), before and after ``hemascope adapt attributes``.

    python benchmarks/attributes_transfer.py [--seeds 0 1 2] [--name attributes_transfer]

CellaVision's cells carry cell types, not attributes, so two proxies are scored, both
with the adaptation's defaults (fixed before this benchmark was first run; nothing is
tuned on CellaVision, and its labels are never used to adapt):

- **type from the attributes**: the shipped concept bottleneck reads the (adapted)
  attribute probabilities and names the cell type; accuracy and macro-F1 on the 5 types.
- **type-determined attributes**: the attributes whose value the cell type fixes in
  WBCAtt's train split (one value covers >= 95 % of the train cells of every type:
  granule type, colour, granularity...); agreement of the predicted value with that value
  for the cell's true type.

Conditions: none, AdaBN (``--method bn``), MMD and DANN (``--method mmd|dann``, source:
2,000 WBCAtt train cells) over ``--seeds``. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch

from _common import machine, shared_data, write_results

DETERMINED_SHARE = 0.95


def type_determined(tables, attributes: dict, classes: list[str]) -> dict[str, dict[str, str]]:
    """``{attribute: {type: value}}`` for attributes whose majority value per type covers
    at least DETERMINED_SHARE of that type's train cells, for every type in ``classes``."""
    rows = [s for s in tables.samples if s.split == "train" and s.label in classes]
    out = {}
    for name in attributes:
        fixed = {}
        for c in classes:
            vals = Counter(s.attributes.get(name) for s in rows if s.label == c)
            value, n = vals.most_common(1)[0]
            if n / sum(vals.values()) < DETERMINED_SHARE:
                break
            fixed[c] = value
        else:
            out[name] = fixed
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["mmd", "dann"])
    ap.add_argument("--name", default="attributes_transfer")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.adapt.fewshot import load_target
    from hemascope.attributes import attribute_probabilities
    from hemascope.attributes.adapt import adapt_attributes, attribute_uda_config, source_cells
    from hemascope.data.tables import read_wbcatt_folder
    from hemascope.evaluate.classification import classification_report
    from hemascope.explain.concept_model import load_concept_model
    from hemascope.models.artifact import LoadedModel, load_classifier

    data = shared_data()
    cm = load_concept_model("default")
    base = cm.attributes
    classes = list(cm.bottleneck.classes)
    target = load_target(data / "cellavision", load_classifier("default"), new_classes=False)
    if int(base.config["image_size"]) != target.images.shape[1]:
        raise SystemExit("the classifier and the attribute model read different input sizes")
    names = [target.classes[i] for i in target.labels]
    keep = np.array([n in classes for n in names])
    images = target.images[keep]
    y = np.array([classes.index(n) for n, k in zip(names, keep) if k])
    attrs = base.model.attributes
    fixed = type_determined(read_wbcatt_folder(data / "wbcatt", image_root=data / "pbc"),
                            attrs, classes)

    def score(loaded) -> dict:
        probs = attribute_probabilities(loaded, list(images))
        feats = np.concatenate([probs[k] for k in attrs], axis=1)
        rep = classification_report(y, cm.bottleneck.predict_proba(feats).argmax(1), classes,
                                    n_bootstrap=0)
        agree = {a: float(np.mean([attrs[a][probs[a][i].argmax()] == fixed[a][classes[t]]
                                   for i, t in enumerate(y)])) for a in fixed}
        return {"accuracy": rep.accuracy, "macro_f1": rep.macro_f1,
                "per_class_recall": {c: v["recall"] for c, v in rep.to_dict()["per_class"].items()},
                "determined_agreement": agree,
                "determined_mean": float(np.mean(list(agree.values()))) if agree else None}

    runs = [{"method": "none", "seed": None, **score(base)}]
    t = time.perf_counter()
    bn = adapt_attributes(base, images, attribute_uda_config(method="bn"))
    runs.append({"method": "bn", "seed": None, "seconds": time.perf_counter() - t,
                 **score(LoadedModel(bn.model, base.config, base.path))})
    src = labels = None
    for method in args.methods:
        for seed in args.seeds:
            if src is None:
                src, labels, _ = source_cells(data / "wbcatt", base, images=data / "pbc", seed=0)
            cfg = attribute_uda_config(method=method, seed=seed)
            t = time.perf_counter()
            res = adapt_attributes(base, images, cfg, source=src, source_targets=labels)
            runs.append({"method": method, "seed": seed, "seconds": time.perf_counter() - t,
                         "history": res.history,
                         **score(LoadedModel(res.model, base.config, base.path))})
            print(f"{method} seed {seed}: accuracy {runs[-1]['accuracy']:.3f}", flush=True)

    def agg(method: str) -> dict:
        rs = [r for r in runs if r["method"] == method]
        out = {"n": len(rs)}
        for k in ("accuracy", "macro_f1", "determined_mean"):
            v = np.array([r[k] for r in rs], float)
            out[k] = [float(v.mean()), float(v.std())]
        return out

    methods = ["none", "bn", *args.methods]
    summary = {m: agg(m) for m in methods}
    payload = {"cells": int(len(y)), "classes": classes, "type_determined": fixed,
               "config": attribute_uda_config().to_dict(), "runs": runs, "summary": summary,
               "machine": machine()}
    label = {"none": "none (shipped attribute model)", "bn": "AdaBN (`--method bn`)",
             "mmd": "MMD (`--method mmd`)", "dann": "DANN (`--method dann`)"}

    def cell(v) -> str:
        return f"{v[0]:.3f} +- {v[1]:.3f}" if v[1] else f"{v[0]:.3f}"

    lines = [f"| {label[m]} | {s['n']} | {cell(s['accuracy'])} | {cell(s['macro_f1'])} | "
             f"{cell(s['determined_mean'])} |" for m, s in summary.items()]
    per = [f"| {a} | " + " | ".join(
        f"{np.mean([r['determined_agreement'][a] for r in runs if r['method'] == m]):.3f}"
        for m in methods) + " |" for a in fixed]
    table = f"""## Attribute transfer: PBC-trained attributes on CellaVision ({len(y)} cells, 5 types)

No CellaVision label is used to adapt; they only score. Type from the attributes: the shipped
concept bottleneck on the (adapted) attribute probabilities. Type-determined attributes:
agreement with the value WBCAtt's train split fixes for the cell's type ({', '.join(fixed)}).
Mean +- std over seeds where a method trains.

| adaptation | runs | type accuracy | type macro-F1 | type-determined attributes agree |
|---|---|---|---|---|
{chr(10).join(lines)}

Per type-determined attribute (mean over runs; columns: {', '.join(methods)}):

| attribute | {' | '.join(methods)} |
|---|{'---|' * len(methods)}
{chr(10).join(per)}"""
    write_results(args.name, payload, table)


if __name__ == "__main__":
    main()
