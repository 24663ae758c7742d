"""Which cells to label: `hemascope suggest` against cells picked at random, PBC -> CellaVision.

    python benchmarks/suggest_cellavision.py [--shots 10] [--seeds 0 1 2 3 4] [--threads 0]
        [--name suggest_cellavision]

A lab that has not labelled anything yet cannot stratify its K labels by class: it does not
know the classes of its cells. For every K and seed, two ``hemascope fewshot`` runs with the
defaults, which differ only in which K cells were labelled (CellaVision's labels play the
lab's expert):

- ``random``: K cells drawn uniformly at random (seeded; a class may get none);
- ``suggested``: the K cells that ``hemascope suggest --n K --seed S`` picks with no label
  (one typical cell per k-means cluster of the base model's AdaBN embedding).

Both are scored on every other cell, so the two test sets differ by the cells each labelled.
The benchmark protocol of the other scripts, K cells stratified by their true class, needs
the labels before choosing and is not one of the arms. Reports accuracy and macro-F1
(paired, Wilcoxon signed-rank) and how many classes the shots covered. Nothing is tuned on
these runs. Writes results/NAME.{json,md}.
"""

from __future__ import annotations

from _common import fewshot_parser, machine, paired_tables, shared_data, write_results

ARMS = ("random", "suggested")
LABELS = ("random cells", "suggested cells")


def main() -> None:
    import time

    import numpy as np

    from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
    from hemascope.adapt.suggest import embed_for_selection, suggest_cells
    from hemascope.models.artifact import load_classifier

    ap = fewshot_parser(__doc__.splitlines()[0])
    ap.set_defaults(shots=[10])
    ap.add_argument("--name", default="suggest_cellavision", help="results/NAME.{json,md}")
    args = ap.parse_args()
    base = load_classifier(args.model)
    target = load_target(shared_data() / "cellavision", base)
    emb = embed_for_selection(base, target.images)  # labels unused
    condition = "hemascope fewshot defaults"
    t0, runs = time.time(), []
    for k in args.shots:
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            picks = {"random": [int(i) for i in rng.choice(len(target.keys), k, replace=False)],
                     "suggested": suggest_cells(base, target.images, k, seed=seed, embeddings=emb)}
            row = {"condition": condition, "shots": k, "seed": seed}
            for arm in ARMS:
                keys = [target.keys[i] for i in picks[arm]]
                res = run_fewshot(target, base, FewShotConfig(shots=k, seed=seed,
                                                              threads=args.threads),
                                  shot_keys=keys)
                counts = {c: int(sum(target.labels[i] == j for i in picks[arm]))
                          for j, c in enumerate(target.classes)}
                row[arm] = {"accuracy": res.report.accuracy, "macro_f1": res.report.macro_f1,
                            "shots": keys, "shots_per_class": counts,
                            "classes_covered": sum(v > 0 for v in counts.values()),
                            "seconds": res.seconds}
            print(f"K={k} seed={seed}: accuracy {row['random']['accuracy']:.3f} (random, "
                  f"{row['random']['classes_covered']} classes) vs "
                  f"{row['suggested']['accuracy']:.3f} (suggested, "
                  f"{row['suggested']['classes_covered']} classes)", flush=True)
            runs.append(row)
    minutes = (time.time() - t0) / 60
    table, summary = paired_tables(runs, [condition], args.shots, ARMS, LABELS)
    cover = ["| K | seed | classes covered, random | classes covered, suggested | "
             "shots per class, suggested |", "|---|---|---|---|---|"]
    for r in runs:
        per = ", ".join(f"{c} {n}" for c, n in r["suggested"]["shots_per_class"].items())
        cover.append(f"| {r['shots']} | {r['seed']} | {r['random']['classes_covered']} | "
                     f"{r['suggested']['classes_covered']} | {per} |")
    secs = [r[a]["seconds"] for r in runs for a in ARMS]
    lines = [f"## Which cells to label: suggested vs random, PBC model -> CellaVision "
             f"({len(target.labels)} cells, {len(target.classes)} classes; test = every "
             f"non-shot cell; seeds {args.seeds})", "", *table, "",
             "### Classes the labelled cells covered", "", *cover, "",
             f"Seconds per run (2 threads unless said): {min(secs):.0f}-{max(secs):.0f}; "
             f"{minutes:.0f} min in all."]
    payload = {"runs": runs, "summary": summary, "shots": args.shots, "seeds": args.seeds,
               "n_target": len(target.labels), "base": str(base.path), "minutes": minutes,
               "machine": machine()}
    write_results(args.name, payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
