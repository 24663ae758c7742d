"""Pool the paired few-shot runs of several result files into one paired test.

    python benchmarks/pool_paired.py --results shot_labels_cellavision \
        shot_labels_cellavision_seeds5_9 --first defaults no_shot --second shot_start \
        --name shot_labels_pooled

Each file is a ``results/NAME.json`` whose runs (top level or under ``fewshot``) hold two
arms measured on the same shots. ``--first`` names the baseline arm (the first key a run
has is used, so files that call it differently pool together). Reports per K and over all
runs: means, mean difference (second minus first), how often the second is better / worse,
and a two-sided Wilcoxon signed-rank p-value. Writes results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from _common import RESULTS, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", nargs="+", required=True)
    ap.add_argument("--first", nargs="+", required=True, help="baseline arm key(s)")
    ap.add_argument("--second", required=True, help="arm key compared with it")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    from hemascope.adapt.stats import wilcoxon_signed_rank

    pairs = []
    for name in args.results:
        data = json.loads((RESULTS / f"{name}.json").read_text())
        runs = data["fewshot"]["runs"] if "fewshot" in data else data["runs"]
        for r in runs:
            first = next(r[k] for k in args.first if k in r)
            pairs.append({"file": name, "shots": r["shots"], "seed": r["seed"],
                          **{f"{m}_{arm}": v[m] for arm, v in (("first", first),
                                                               ("second", r[args.second]))
                             for m in ("accuracy", "macro_f1")}})
    groups = {f"K = {k}": [p for p in pairs if p["shots"] == k]
              for k in sorted({p["shots"] for p in pairs})}
    groups["all"] = pairs
    summary, lines = {}, ["| runs | pairs | metric | first | second | difference | second better / "
                          "worse | Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
    for g, sel in groups.items():
        for m in ("accuracy", "macro_f1"):
            a = np.array([p[f"{m}_first"] for p in sel])
            b = np.array([p[f"{m}_second"] for p in sel])
            s = {"n": len(sel), "first": float(a.mean()), "second": float(b.mean()),
                 "difference": float((b - a).mean()), "better": int((b > a).sum()),
                 "worse": int((b < a).sum()), "wilcoxon_p": wilcoxon_signed_rank(b, a)}
            summary[f"{g} {m}"] = s
            lines.append(f"| {g} | {s['n']} | {m} | {s['first']:.4f} | {s['second']:.4f} | "
                         f"{s['difference']:+.4f} | {s['better']} / {s['worse']} | "
                         f"{s['wilcoxon_p']:.3f} |")
    md = (f"## Pooled paired runs: {args.second} vs {' / '.join(args.first)} "
          f"({', '.join(args.results)})\n\n" + "\n".join(lines))
    write_results(args.name, {"results": args.results, "pairs": pairs, "summary": summary}, md)


if __name__ == "__main__":
    main()
