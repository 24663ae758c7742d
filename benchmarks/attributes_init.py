"""Does in-domain pre-training help the attribute model? Attribute models whose encoder
started from the shipped PBC cell-type classifier (``train attributes --init default``)
against the random-start model that was shipped before them, on the WBCAtt official test
split.

    python benchmarks/attributes_init.py --model BASELINE --model RUN_DIR ... \
        [--val-only RUN_DIR ...] [--name attributes_init]

The first ``--model`` is the baseline. The committed results used the random-start model
shipped until 2026-11-28, taken back out of git into ``runs/wbcatt_resnet18_random``::

    mkdir -p runs/wbcatt_resnet18_random && for f in config.json model.safetensors split.json; do
      git show 7ee30c1:src/hemascope/weights/wbcatt_resnet18/$f > runs/wbcatt_resnet18_random/$f; done
 Every model is scored on all 3,099 test cells and on
the *held-out* subset: the test cells that also lie in the classifier's own recorded test
split. The classifier trained on PBC images with their cell types, and WBCAtt's images are
PBC images, so an encoder started from it has seen most WBCAtt test images (not their
attributes) in training. On the held-out cells it has not: a gain that holds there is not
memory of the test images. Each model's difference from the baseline comes with a paired
bootstrap 95 % interval over cells (the same resampled cells for both models).

The rule for shipping, fixed before any of these runs was trained (2026-11-28): among the
new runs take the one with the best validation average macro-F1. It replaces the shipped
model only if that score is at least 0.914 (the shipped model's 0.911 plus 0.003; two seeds
of the shipped recipe differed by 0.001 before) and, on test, its average macro-F1 on the
held-out cells is not below the baseline's. The test split is scored once, after the choice.
Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results
from attributes_budget import _summary

from hemascope.attributes.bias import macro_f1

SHIP_AT_VAL = 0.914


def _run_info(config: dict, history: Path | None) -> dict:
    tc = config.get("training", {}).get("config", {})
    return {**_summary(config, history), "init": tc.get("init"), "lr": tc.get("lr")}


def average_f1(truth: dict, pred: dict, sizes: dict, rows: np.ndarray) -> float:
    """Average over attributes of the macro-F1 on ``rows`` (cells without a value left out)."""
    out = []
    for name, t in truth.items():
        r = rows[t[rows] >= 0]
        out.append(macro_f1(t[r], pred[name][r], sizes[name]))
    return float(np.mean(out))


def paired_gap(truth, a, b, sizes, rows, *, n=1000, seed=0) -> dict:
    """``b`` minus ``a`` in average macro-F1 on ``rows`` with a paired bootstrap 95 % CI."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        r = rows[rng.integers(0, len(rows), len(rows))]
        diffs.append(average_f1(truth, b, sizes, r) - average_f1(truth, a, sizes, r))
    return {"gap": average_f1(truth, b, sizes, rows) - average_f1(truth, a, sizes, rows),
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
            "n_cells": int(len(rows))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="attribute model (repeat; "
                    "the first is the baseline)")
    ap.add_argument("--val-only", action="append", default=[], help="run folder, not scored")
    ap.add_argument("--classifier", default="default", help="whose test split is held out")
    ap.add_argument("--name", default="attributes_init")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.attributes import load_attribute_model
    from hemascope.attributes.predict import attribute_probabilities
    from hemascope.data.splits import load_split
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.io.image import read_image
    from hemascope.models.artifact import load_classifier

    ds = read_wbcatt_any(shared_data() / "wbcatt" / "pbc_attr_v1_test.csv")
    clf = load_classifier(args.classifier)
    held = set(load_split(clf.path / clf.config["training"]["split_file"]).keys("test"))
    prefix = "PBC_dataset_normal_DIB/"
    in_held = np.array([s.path.removeprefix(prefix) in held for s in ds.samples])
    images = [read_image(ds.root / s.path) for s in ds.samples]
    everyone, held_rows = np.arange(len(images)), np.flatnonzero(in_held)
    attrs, truth, preds, runs = None, {}, [], {}
    for spec in args.model:
        loaded = load_attribute_model(spec)
        if attrs is None:
            attrs = loaded.model.attributes
            truth = {k: np.array([v.index(s.attributes[k]) if s.attributes.get(k) else -1
                                  for s in ds.samples]) for k, v in attrs.items()}
        elif loaded.model.attributes != attrs:
            raise SystemExit(f"{spec}: other attributes than the first model")
        p = attribute_probabilities(loaded, images)
        preds.append({k: p[k].argmax(1) for k in attrs})
        history = None if spec == "default" else Path(spec) / "history.jsonl"
        runs[str(spec)] = _run_info(loaded.config, history)
    sizes = {k: len(v) for k, v in attrs.items()}
    for r, pred in zip(runs.values(), preds):
        r["test_average_macro_f1"] = average_f1(truth, pred, sizes, everyone)
        r["held_out_average_macro_f1"] = average_f1(truth, pred, sizes, held_rows)
        r["test_per_attribute_macro_f1"] = {
            k: macro_f1(t[t >= 0], pred[k][t >= 0], sizes[k]) for k, t in truth.items()}
        if pred is not preds[0]:
            r["vs_baseline"] = {"test": paired_gap(truth, preds[0], pred, sizes, everyone, n=args.boot),
                                "held_out": paired_gap(truth, preds[0], pred, sizes, held_rows,
                                                       n=args.boot)}
    val_only = {run: _run_info(json.loads((Path(run) / "config.json").read_text()),
                               Path(run) / "history.jsonl") for run in args.val_only}
    new = {n: r for n, r in {**runs, **val_only}.items() if n != args.model[0]}
    pick = max(new, key=lambda n: new[n]["val_average_macro_f1"] or -1) if new else None
    decision = None
    if pick is not None:
        r = new[pick]
        ok_val = (r["val_average_macro_f1"] or 0) >= SHIP_AT_VAL
        ok_held = ("held_out_average_macro_f1" in r and r["held_out_average_macro_f1"]
                   >= runs[args.model[0]]["held_out_average_macro_f1"])
        decision = {"pick_by_val": pick, "val_at_least": SHIP_AT_VAL, "val_ok": ok_val,
                    "held_out_not_worse": ok_held, "ship": bool(ok_val and ok_held)}
    payload = {"n_test_cells": len(images), "n_held_out_cells": int(len(held_rows)),
               "models": runs, "val_only": val_only, "decision": decision, "machine": machine()}

    def gap(r: dict, part: str) -> str:
        g = r.get("vs_baseline", {}).get(part)
        return f"{g['gap']:+.4f} ({g['ci95'][0]:+.4f} to {g['ci95'][1]:+.4f})" if g else "-"

    lines = [f"| {n} | {r['init'] or 'random'} | {r['lr']} | {r['best_epoch']} of "
             f"{r['epochs_run'] or r['epochs']} | {r['val_average_macro_f1']:.4f} | "
             f"{r['test_average_macro_f1']:.4f} | {gap(r, 'test')} | "
             f"{r['held_out_average_macro_f1']:.4f} | {gap(r, 'held_out')} |" for n, r in runs.items()]
    lines += [f"| {n} | {r['init'] or 'random'} | {r['lr']} | {r['best_epoch']} of {r['epochs_run']} | "
              f"{r['val_average_macro_f1']:.4f} | not scored | | | |" for n, r in val_only.items()]
    per = [f"| {k} | " + " | ".join(f"{r['test_per_attribute_macro_f1'][k]:.4f}"
                                    for r in runs.values()) + " |" for k in attrs]
    verdict = ("no new run" if decision is None else
               f"pick by val: {decision['pick_by_val']}; val >= {SHIP_AT_VAL}: {decision['val_ok']}; "
               f"held-out not below the baseline: {decision['held_out_not_worse']}; "
               f"ship: **{decision['ship']}**")
    table = f"""## Attribute model started from the PBC classifier's encoder (WBCAtt test, {len(images)} cells)

Held out: the {len(held_rows)} test cells in the classifier's own test split (no model here
trained on them). Gaps are against the first row, paired bootstrap 95 % CI over cells.

| model | encoder start | lr | best epoch of run | val avg macro-F1 | test avg macro-F1 | gap | held-out avg macro-F1 | gap |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

Rule fixed before training: {verdict}.

Per-attribute test macro-F1 (columns in the order above):

| attribute | {' | '.join(f'm{i + 1}' for i in range(len(runs)))} |
|---|{'---|' * len(runs)}
{chr(10).join(per)}"""
    write_results(args.name, payload, table)


if __name__ == "__main__":
    main()
