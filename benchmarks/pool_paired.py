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

from _common import RESULTS, paired_tables, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", nargs="+", required=True)
    ap.add_argument("--first", nargs="+", required=True, help="baseline arm key(s)")
    ap.add_argument("--second", required=True, help="arm key compared with it")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()

    runs = []
    for name in args.results:
        data = json.loads((RESULTS / f"{name}.json").read_text())
        for r in data["fewshot"]["runs"] if "fewshot" in data else data["runs"]:
            runs.append({"condition": "pooled", "file": name, "shots": r["shots"],
                         "seed": r["seed"], "first": next(r[k] for k in args.first if k in r),
                         "second": r[args.second]})
    shots = sorted({r["shots"] for r in runs})
    labels = (" / ".join(args.first), args.second)
    # means per K and the paired test over every run; then the paired test within each K
    lines, summary = paired_tables(runs, ["pooled"], shots, ("first", "second"), labels)
    rows = []
    for group, sel in [(f"K = {k}", [r for r in runs if r["shots"] == k]) for k in shots] + [
            ("all", runs)]:
        s = paired_tables(sel, ["pooled"], sorted({r["shots"] for r in sel}), ("first", "second"),
                          labels)[1]["pooled"]
        summary[group] = s
        a, f = s["accuracy"], s["macro_f1"]
        rows.append(f"| {group} | {a['pairs']} | {a['mean_difference']:+.4f} | "
                    f"{a['second_better']} / {a['second_worse']} | {a['wilcoxon_p']:.3f} | "
                    f"{f['mean_difference']:+.4f} | {f['second_better']} / {f['second_worse']} | "
                    f"{f['wilcoxon_p']:.3f} |")
    md = "\n".join([f"## Pooled paired runs: {args.second} vs {labels[0]} ({', '.join(args.results)})",
                    "", *lines[:2 + len(shots)], "", "Paired (second minus first):", "",
                    "| runs | pairs | accuracy difference | better / worse | Wilcoxon p | "
                    "macro-F1 difference | better / worse | Wilcoxon p |",
                    "|---|---|---|---|---|---|---|---|", *rows])
    write_results(args.name, {"results": args.results, "pairs": runs, "summary": summary}, md)


if __name__ == "__main__":
    main()
