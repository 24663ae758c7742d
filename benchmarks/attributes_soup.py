"""A model soup of attribute models: the weights of runs fine-tuned from the same start,
averaged into one model (Wortsman et al., "Model soups", ICML 2022). Same size and speed
as one model.

    python benchmarks/attributes_soup.py --model default --model runs/gpu/i1e3 \
        [--cache DIR] [--out runs/wbcatt_soup] [--name attributes_soup]

The first ``--model`` is the baseline (the shipped model); the soup is the uniform average
of every ``--model``'s weights (batch-norm running statistics averaged too). They must share
architecture and start: the committed run uses the shipped model (``runs/gpu/i2e3``, lr
0.002) and its sibling trained side by side on the H200 from the same PBC-classifier start
(``runs/gpu/i1e3``, lr 0.001; ``benchmarks/results/attributes_init.md``).

Rule, fixed before the first run (2026-11-28): the soup replaces the shipped attribute
model if its validation average macro-F1 (official val split, 1,030 cells, scored by this
script for both models) is at least 0.003 above the baseline's. The test split is scored
after the decision and reported either way, on all 3,099 cells and on the 584 held out
from the PBC classifier's training (``attributes_init.py``), with paired bootstrap 95 %
intervals. Writes ``results/<name>.{json,md}`` and the soup to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results
from attributes_bias import _probs
from attributes_init import average_f1, paired_gap

MIN_GAIN = 0.003


def soup(models: list) -> dict:
    """The uniform average of the models' state dicts (integer buffers from the first)."""
    states = [m.model.state_dict() for m in models]
    out = {}
    for k, v in states[0].items():
        out[k] = (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                  if v.is_floating_point() else v.clone())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--cache", type=Path, help="the baseline's val/test softmax (npz), if kept")
    ap.add_argument("--out", type=Path, default=Path("runs/wbcatt_soup"))
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="attributes_soup")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.attributes import load_attribute_model
    from hemascope.data.splits import load_split
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.models.artifact import load_classifier, save_artifact

    members = [load_attribute_model(m) for m in args.model]
    if len(members) < 2:
        raise SystemExit("a soup needs two or more --model")
    if any(m.config["arch"] != members[0].config["arch"] or m.model.attributes
           != members[0].model.attributes for m in members):
        raise SystemExit("the models differ in architecture or attributes")
    base = members[0]
    cfg = {k: v for k, v in base.config.items() if k not in ("weights_sha256", "format")}
    cfg["training"] = {**cfg.get("training", {}), "soup_of": [str(m) for m in args.model]}
    soup_model = load_attribute_model(args.model[0])
    soup_model.model.load_state_dict(soup(members))
    save_artifact(args.out, soup_model.model, cfg, dtype=base.config.get("weights_dtype", "float32"))
    soup_model = load_attribute_model(args.out)  # as it will be shipped (weights dtype)

    attrs = base.model.attributes
    sizes = {k: len(v) for k, v in attrs.items()}
    root = shared_data() / "wbcatt"
    scores = {}
    for split in ("val", "test"):
        table = root / f"pbc_attr_v1_{split}.csv"
        pb, truth = _probs(base, table, 1, args.cache)
        ps, _ = _probs(soup_model, table, 1, None)
        scores[split] = {"truth": truth, "base": {k: p.argmax(1) for k, p in pb.items()},
                         "soup": {k: p.argmax(1) for k, p in ps.items()}}
    v = scores["val"]
    rows = np.arange(len(next(iter(v["truth"].values()))))
    val = {m: average_f1(v["truth"], v[m], sizes, rows) for m in ("base", "soup")}
    ship = val["soup"] - val["base"] >= MIN_GAIN

    t = scores["test"]
    test_rows = np.arange(len(next(iter(t["truth"].values()))))
    ds = read_wbcatt_any(root / "pbc_attr_v1_test.csv")
    clf = load_classifier("default")
    held = set(load_split(clf.path / clf.config["training"]["split_file"]).keys("test"))
    held_rows = np.flatnonzero([s.path.removeprefix("PBC_dataset_normal_DIB/") in held
                                for s in ds.samples])
    test = {m: average_f1(t["truth"], t[m], sizes, test_rows) for m in ("base", "soup")}
    held_out = {m: average_f1(t["truth"], t[m], sizes, held_rows) for m in ("base", "soup")}
    gap_test = paired_gap(t["truth"], t["base"], t["soup"], sizes, test_rows, n=args.boot)
    gap_held = paired_gap(t["truth"], t["base"], t["soup"], sizes, held_rows, n=args.boot)
    per = {k: {m: average_f1({k: t["truth"][k]}, t[m], sizes,
                             test_rows[t["truth"][k][test_rows] >= 0]) for m in ("base", "soup")}
           for k in attrs}
    payload = {"models": args.model, "soup": str(args.out), "val": val, "min_gain": MIN_GAIN,
               "ship": bool(ship), "test": test, "test_gap": gap_test, "held_out": held_out,
               "held_out_gap": gap_held, "n_held_out": int(len(held_rows)),
               "per_attribute_test": per, "machine": machine()}

    def g(d: dict) -> str:
        return f"{d['gap']:+.4f} ({d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f})"

    lines = "\n".join(f"| {k} | {v['base']:.4f} | {v['soup']:.4f} |" for k, v in per.items())
    table = f"""## Model soup of attribute models ({' + '.join(args.model)})

Uniform average of the weights; the first model is the baseline. Average macro-F1:

| split | baseline | soup | gain (paired bootstrap 95 % CI) |
|---|---|---|---|
| val ({len(rows)} cells) | {val['base']:.4f} | {val['soup']:.4f} | {val['soup'] - val['base']:+.4f} |
| test ({len(test_rows)} cells) | {test['base']:.4f} | {test['soup']:.4f} | {g(gap_test)} |
| test, held out from the PBC classifier ({len(held_rows)}) | {held_out['base']:.4f} | {held_out['soup']:.4f} | {g(gap_held)} |

Rule (fixed before the first run): ship the soup if its val score is at least {MIN_GAIN}
above the baseline's: **{ship}**. Test was scored after the decision.

| attribute (test) | baseline | soup |
|---|---|---|
{lines}"""
    write_results(args.name, payload, table)
    print(json.dumps({"val": val, "ship": bool(ship)}))


if __name__ == "__main__":
    main()
