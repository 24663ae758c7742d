"""Source-free adaptation (SHOT) PBC -> CellaVision: with no labels, and before few-shot.

    python benchmarks/shot_cellavision.py [--seeds 0 1 2 3 4] [--shots 10 25] [--epochs 10]
        [--skip-fewshot | --skip-no-labels] [--shot-labels] [--threads 0] [--name NAME]

No source images are used anywhere: a lab that has only our model and its own cells can
run all of this. Part 1 (no labels): the shipped model restricted to CellaVision's five
classes, as is, after AdaBN (batch-norm statistics of the target), and after SHOT
(``hemascope adapt shot``: AdaBN, then ``--epochs`` epochs of information maximisation and
centroid pseudo-labels with the head fixed), one SHOT run per seed. Each SHOT row is the
model after its last epoch; CellaVision's labels only score it. Part 2 (few labels): for
every K and seed, ``hemascope fewshot`` on the same shots with and without a SHOT start
(``--shot-epochs``), everything else at its defaults; with ``--shot-labels`` the shots
also take part in the SHOT run (``hemascope fewshot``'s default since this measured
better; without it, SHOT uses no label). Paired differences and a Wilcoxon signed-rank
p-value over all (K, seed) pairs. SHOT's settings are the paper's loss weights and were fixed before this
was run, not tuned on CellaVision. Writes results/NAME.{json,md}.
"""

from __future__ import annotations

import time

import numpy as np

from _common import (fewshot_parser, machine, paired_fewshot_runs, paired_tables, shared_data,
                     write_results)


def main() -> None:
    ap = fewshot_parser(__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10, help="SHOT epochs")
    ap.add_argument("--skip-fewshot", action="store_true", help="part 1 only")
    ap.add_argument("--skip-no-labels", action="store_true", help="part 2 only")
    ap.add_argument("--shot-labels", action="store_true",
                    help="part 2: the shots take part in the SHOT run (semi-supervised)")
    ap.add_argument("--name", default="shot_cellavision", help="results/NAME.{json,md}")
    args = ap.parse_args()
    from hemascope.adapt.fewshot import load_target
    from hemascope.adapt.shot import ShotConfig
    from hemascope.models.artifact import load_classifier

    base = load_classifier(args.model)
    target = load_target(shared_data() / "cellavision", base)
    payload = {"shot_config": ShotConfig(epochs=args.epochs).to_dict(), "seeds": args.seeds,
               "n_target": len(target.labels), "base": str(base.path), "machine": machine()}
    lines = [f"## Source-free adaptation: PBC model -> CellaVision ({len(target.labels)} cells, "
             "no source images)"]
    if not args.skip_no_labels:
        lines += no_labels(args, base, target, payload)
    if not args.skip_fewshot:
        start = {"shot_epochs": args.epochs, "shot_labels": args.shot_labels}
        arms = {"no_shot": {}, "shot_start": start}
        label = f"SHOT start ({args.epochs} epochs{', shots included' if args.shot_labels else ''})"
        conditions = {"hemascope fewshot, otherwise defaults": {}}
        _, _, runs, minutes = paired_fewshot_runs(args, conditions, arms)
        table, summary = paired_tables(runs, conditions, args.shots, tuple(arms),
                                       ("no SHOT start", label))
        payload["fewshot"] = {"runs": runs, "summary": summary, "shots": args.shots,
                              "shot_start": start, "minutes": minutes}
        lines += ["", "### Few labels (test = every non-shot cell; same shots in both arms)", "",
                  *table]
    write_results(args.name, payload, "\n".join(lines) + "\n")


def no_labels(args, base, target, payload: dict) -> list[str]:
    """Part 1: none / AdaBN / SHOT per seed, CellaVision labels only to score."""
    from hemascope.adapt.shot import ShotConfig, adapt_source_free
    from hemascope.adapt.uda import adapt_batchnorm

    bn = adapt_batchnorm(target, base)
    shot, t0 = [], time.time()
    for seed in args.seeds:
        res = adapt_source_free(target, base, ShotConfig(epochs=args.epochs, seed=seed,
                                                          threads=args.threads))
        shot.append({"seed": seed, "accuracy": res.after.accuracy, "macro_f1": res.after.macro_f1,
                     "seconds": res.seconds, "history": res.history,
                     "recall": {c: v.recall for c, v in res.after.per_class.items()}})
        print(f"SHOT seed {seed}: accuracy {bn.before.accuracy:.3f} -> {res.after.accuracy:.3f} "
              f"({res.seconds:.0f} s)", flush=True)
    acc = np.array([r["accuracy"] for r in shot])
    f1 = np.array([r["macro_f1"] for r in shot])
    payload["no_labels"] = {
        "none": {"accuracy": bn.before.accuracy, "macro_f1": bn.before.macro_f1},
        "adabn": {"accuracy": bn.after.accuracy, "macro_f1": bn.after.macro_f1}, "shot": shot}
    payload["minutes_no_labels"] = (time.time() - t0) / 60
    return ["", f"### No labels (labels only score; SHOT {args.epochs} epochs, last epoch kept, "
            f"{len(args.seeds)} seeds)", "",
            "| adaptation | accuracy | macro-F1 |", "|---|---|---|",
            f"| none | {bn.before.accuracy:.4f} | {bn.before.macro_f1:.4f} |",
            f"| AdaBN | {bn.after.accuracy:.4f} | {bn.after.macro_f1:.4f} |",
            f"| SHOT | {acc.mean():.4f} +- {acc.std():.4f} (min {acc.min():.2f}, max "
            f"{acc.max():.2f}) | {f1.mean():.4f} +- {f1.std():.4f} |"]


if __name__ == "__main__":
    main()
