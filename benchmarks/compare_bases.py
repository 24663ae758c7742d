"""Two base models, one few-shot protocol: paired comparison of their adapted scores.

    python benchmarks/compare_bases.py --first selftrain_cellavision --second selftrain_crosslab_aug \
        [--arm self_trained] [--condition "default (no colour transform)"] [--name NAME]

Reads two result files of ``benchmarks/selftrain_cellavision.py`` (run with different
``--model``; the shots depend only on K and the seed, so the same (K, seed) pairs saw the
same labelled cells) and compares one arm of one condition between them: means +- std per
K, then the mean difference (second minus first) over every (K, seed) pair, how often the
second is better, and a two-sided Wilcoxon signed-rank p-value. Trains nothing; writes
``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json

from _common import RESULTS, paired_tables, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", required=True, help="results name of the first base (the reference)")
    ap.add_argument("--second", required=True, help="results name of the second base")
    ap.add_argument("--arm", default="self_trained", choices=("shots_only", "self_trained"))
    ap.add_argument("--condition", default="default (no colour transform)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()

    first, second = (json.loads((RESULTS / f"{n}.json").read_text()) for n in (args.first, args.second))

    def by_pair(res: dict) -> dict:
        return {(r["shots"], r["seed"]): r[args.arm] for r in res["runs"]
                if r["condition"] == args.condition}

    a, b = by_pair(first), by_pair(second)
    pairs = sorted(set(a) & set(b))
    if not pairs:
        raise SystemExit(f"no (K, seed) pair of {args.condition!r} is in both files")
    runs = [{"condition": args.condition, "shots": k, "seed": s, "first": a[(k, s)],
             "second": b[(k, s)]} for k, s in pairs]
    shots = sorted({k for k, _ in pairs})
    lines, summary = paired_tables(runs, [args.condition], shots, ("first", "second"),
                                   (args.first, args.second))
    head = [f"## Few-shot adaptation to CellaVision from two base models ({args.arm.replace('_', ' ')} "
            f"arm; same shots per (K, seed))", "",
            f"first: `{first['base']}`; second: `{second['base']}`", ""]
    name = args.name or f"compare_{args.first}_vs_{args.second}"
    write_results(name, {"first": args.first, "second": args.second, "arm": args.arm,
                         "condition": args.condition, "bases": [first["base"], second["base"]],
                         "pairs": runs, "summary": summary}, "\n".join(head + lines))


if __name__ == "__main__":
    main()
