"""What more training buys the attribute model: longer schedules, a deeper encoder, seeds,
and an ensemble of them, on the WBCAtt official test split.

    python benchmarks/attributes_budget.py --model default --model RUN_DIR ... \
        [--val-only RUN_DIR ...] [--name attributes_budget]

Each ``--model`` is an attribute-model folder (``default``: the shipped one); it is scored
alone on the 3,099 test cells, and all of them together as an ensemble (softmax averaged per
attribute head). Each ``--val-only`` is a run folder whose weights were not kept (its
``config.json`` / ``history.jsonl`` still say how far it got on validation); it is listed,
not scored. The runs come from ``scripts/gpu_attributes.sh`` (``--fit-to-time``: each run's
cosine fitted to the same time box). Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results


def _summary(config: dict, history: Path | None) -> dict:
    tr = config.get("training", {})
    rows = ([json.loads(x) for x in history.read_text().splitlines()]
            if history is not None and history.is_file() else [])
    return {"arch": config.get("arch"), "image_size": config.get("image_size"),
            "val_average_macro_f1": config.get("metrics", {}).get("val", {}).get("average_macro_f1"),
            "best_epoch": tr.get("best_epoch"), "epochs": tr.get("config", {}).get("epochs"),
            "epochs_run": len(rows) or None, "seed": tr.get("config", {}).get("seed"),
            "fit_to_time": tr.get("config", {}).get("fit_to_time", False),
            "training_device": tr.get("device"), "training_wall_time_s": tr.get("wall_time_s")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="attribute model (repeat)")
    ap.add_argument("--val-only", action="append", default=[], help="run folder, not scored")
    ap.add_argument("--name", default="attributes_budget")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.attributes import load_attribute_model
    from hemascope.attributes.predict import attribute_probabilities
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.evaluate.attributes import attribute_report
    from hemascope.io.image import read_image

    ds = read_wbcatt_any(shared_data() / "wbcatt" / "pbc_attr_v1_test.csv")
    images = [read_image(ds.root / s.path) for s in ds.samples]
    runs, probs, attrs, truth = {}, [], None, {}
    for spec in args.model:
        loaded = load_attribute_model(spec)
        if attrs is not None and loaded.model.attributes != attrs:
            raise SystemExit(f"{spec}: other attributes than the first model")
        attrs = loaded.model.attributes
        truth = truth or {k: [s.attributes.get(k, "") for s in ds.samples] for k in attrs}
        p = attribute_probabilities(loaded, images)
        pred = {k: [v[j] for j in p[k].argmax(1)] for k, v in attrs.items()}
        rep = attribute_report(truth, pred, attrs)
        history = None if spec == "default" else Path(spec) / "history.jsonl"
        runs[str(spec)] = {**_summary(loaded.config, history), "test": rep.to_dict()}
        probs.append(p)
    mean = {k: np.mean([p[k] for p in probs], 0) for k in attrs}
    ens = attribute_report(truth, {k: [v[j] for j in mean[k].argmax(1)] for k, v in attrs.items()},
                           attrs).to_dict()
    val_only = {}
    for run in args.val_only:
        cfg = json.loads((Path(run) / "config.json").read_text())
        val_only[run] = _summary(cfg, Path(run) / "history.jsonl")
    payload = {"n_test_cells": len(images), "models": runs, "ensemble": {
        "members": list(runs), "test": ens}, "val_only": val_only, "machine": machine()}

    def row(name: str, r: dict, test: dict | None) -> str:
        epochs = f"{r['best_epoch']} of {r['epochs_run'] or r['epochs']}"
        fit = " (fitted)" if r["fit_to_time"] else ""
        scored = (f"{test['average_macro_f1']:.4f} | {test['average_accuracy']:.4f}"
                  if test else "not scored | ")
        return (f"| {name} | {r['arch']} | {r['seed']} | {epochs}{fit} | "
                f"{(r['training_wall_time_s'] or 0) / 60:.1f} | {r['val_average_macro_f1']:.4f} | "
                f"{scored} |")

    lines = [row(n, r, r["test"]) for n, r in runs.items()]
    lines += [row(n, r, None) for n, r in val_only.items()]
    lines.append(f"| ensemble of the {len(runs)} scored models (mean softmax) | | | | | | "
                 f"{ens['average_macro_f1']:.4f} | {ens['average_accuracy']:.4f} |")
    per = [f"| {k} | " + " | ".join(f"{r['test']['attributes'][k]['macro_f1']:.4f}"
                                    for r in runs.values())
           + f" | {ens['attributes'][k]['macro_f1']:.4f} |" for k in attrs]
    table = f"""## Attribute model: training budget, encoder, seeds and ensemble (WBCAtt test, {len(images)} cells)

Best epoch chosen on validation; the test split is scored here on the original images.

| model | encoder | seed | best epoch of run | training min | val avg macro-F1 | test avg macro-F1 | test avg accuracy |
|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

Per-attribute test macro-F1 (columns: {', '.join(runs)}, ensemble):

| attribute | {' | '.join(f'm{i + 1}' for i in range(len(runs)))} | ensemble |
|---|{'---|' * len(runs)}---|
{chr(10).join(per)}"""
    write_results(args.name, payload, table)


if __name__ == "__main__":
    main()
