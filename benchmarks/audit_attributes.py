"""Does the label audit find real label noise? WBCAtt attribute labels against a second team
of annotators.

Confident learning (``hemascope.adapt.audit.find_label_issues``) needs each cell's class
probabilities from a model that never trained on its label. The shipped attribute model
trained on WBCAtt's train split only, so its probabilities on the val and test cells (4,129)
are such. Per attribute, the audit takes thresholds from those cells' original labels and
flags cells, exactly as it would on a lab's own attribute table.

WBCAtt had 1,000 cells annotated again by other annotators
(``pbc_attr_reannotations.csv``); 408 of them lie in val and test. A cell's original label
is *contested* when the re-annotation differs. Real label noise, then, with no injected
flips: if the audit works, the cells it flags should be contested far more often than cells
at large, and the second annotators should often have chosen the value it suggests.

Scored per attribute and pooled over the 11 (cell-attribute pairs), on the 408 cells, for
the ``confident`` and ``argmax`` rules: cells flagged; share of flags contested (precision
against the second annotators); the contested share of all pairs (base rate); lift
(precision / base rate); share of contested pairs flagged (recall); and, among flagged
contested pairs, how often the re-annotation is the suggested value.

**Decision rule, fixed before the first run.** ``hemascope audit`` gains a mode for
attribute tables (WBCAtt layout) if, pooled over the 11 attributes with the ``confident``
rule, flagged pairs are contested at least 3 times as often as pairs at large (lift >= 3)
and the re-annotation is the suggested value in at least half of the flagged contested
pairs.

    python benchmarks/audit_attributes.py        # ~3 min on 2 CPU threads
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import machine, shared_data, write_results

RULES = ("confident", "argmax")
MIN_LIFT, MIN_SUGGESTED = 3.0, 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--name", default="audit_attributes")
    args = ap.parse_args()

    import torch

    from hemascope import taxonomy
    from hemascope.adapt.audit import find_label_issues
    from hemascope.attributes import attribute_probabilities, load_attribute_model
    from hemascope.data.tables import read_wbcatt, read_wbcatt_folder
    from hemascope.io.image import read_image

    torch.set_num_threads(2)
    start = time.time()
    data = shared_data() / "wbcatt"
    loaded = load_attribute_model(args.model)
    attrs = loaded.model.attributes
    cells = [s for s in read_wbcatt_folder(data).samples if s.split in ("val", "test")]
    root = read_wbcatt(data / "pbc_attr_v1_test.csv").root
    probs = {k: [] for k in attrs}
    for i in range(0, len(cells), 256):
        p = attribute_probabilities(loaded, [read_image(root / s.path) for s in cells[i:i + 256]],
                                    adjusted=False)
        for k in attrs:
            probs[k].append(p[k])
    probs = {k: np.concatenate(v) for k, v in probs.items()}
    print(f"probabilities of {len(cells)} cells in {time.time() - start:.0f} s", flush=True)

    second = {s.path: s for s in read_wbcatt(data / "pbc_attr_reannotations.csv").samples}
    again = np.array([s.path in second for s in cells])
    rows, pooled = [], {r: {"pairs": 0, "flagged": 0, "contested": 0, "flagged_contested": 0,
                            "suggested_chosen": 0} for r in RULES}
    for k in taxonomy.ATTRIBUTES:
        values = attrs[k]
        y = np.array([values.index(s.attributes[k]) for s in cells])
        other = np.array([values.index(second[s.path].attributes[k]) if s.path in second else -1
                          for s in cells])
        contested = again & (other != y)
        for rule in RULES:
            suspect, suggested, _ = find_label_issues(probs[k], y, method=rule)
            f = suspect & again
            row = {"attribute": k, "rule": rule, "pairs": int(again.sum()),
                   "flagged": int(f.sum()), "contested": int(contested.sum()),
                   "flagged_contested": int((f & contested).sum()),
                   "suggested_chosen": int((f & contested & (other == suggested)).sum()),
                   "flagged_all_val_test": int(suspect.sum())}
            rows.append(row)
            for key in pooled[rule]:
                pooled[rule][key] += row[key]

    def rates(r: dict) -> dict:
        base = r["contested"] / r["pairs"]
        precision = r["flagged_contested"] / r["flagged"] if r["flagged"] else 0.0
        return {"base_rate": base, "precision": precision,
                "lift": precision / base if base else float("nan"),
                "recall": r["flagged_contested"] / r["contested"] if r["contested"] else float("nan"),
                "suggested_share": (r["suggested_chosen"] / r["flagged_contested"]
                                    if r["flagged_contested"] else float("nan"))}

    for r in rows:
        r.update(rates(r))
    summary = {rule: {**pooled[rule], **rates(pooled[rule])} for rule in RULES}
    met = (summary["confident"]["lift"] >= MIN_LIFT
           and summary["confident"]["suggested_share"] >= MIN_SUGGESTED)

    n_again = int(again.sum())
    lines = [f"# Label audit against a second team of annotators (WBCAtt, {n_again} re-annotated "
             f"val/test cells; thresholds from all {len(cells)} val/test cells)", "",
             "| attribute | rule | flagged | contested (base rate) | flags contested (precision) "
             "| lift | contested flagged (recall) | re-annotation = suggested |",
             "|---|---|---|---|---|---|---|---|"]

    def line(name: str, r: dict) -> str:
        return (f"| {name} | {r['rule']} | {r['flagged']} | "
                f"{r['contested']} ({r['base_rate']:.3f}) | {r['flagged_contested']} "
                f"({r['precision']:.3f}) | {r['lift']:.1f} | {r['recall']:.3f} | "
                f"{r['suggested_chosen']} ({r['suggested_share']:.2f}) |")

    for r in rows:
        lines.append(line(r["attribute"], r))
    for rule in RULES:
        lines.append(line("**all 11, pooled**", {**summary[rule], "rule": rule}))
    lines += ["", f"Rule (confident, pooled): lift >= {MIN_LIFT:g} and re-annotation = suggested "
              f"in >= {MIN_SUGGESTED:.0%} of flagged contested pairs: "
              f"**{'met' if met else 'not met'}** (lift {summary['confident']['lift']:.2f}, "
              f"{summary['confident']['suggested_share']:.2f}).",
              "", f"Command: `python benchmarks/audit_attributes.py`; "
              f"{(time.time() - start) / 60:.1f} min on {machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "model": args.model, "cells": len(cells),
                              "reannotated": n_again, "per_attribute": rows, "pooled": summary,
                              "rule": {"min_lift": MIN_LIFT, "min_suggested_share": MIN_SUGGESTED,
                                       "met": met}}, "\n".join(lines))


if __name__ == "__main__":
    main()
