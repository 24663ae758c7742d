"""A class the base model has no output for, learned from its shots: PBC -> CellaVision.

    python benchmarks/new_class_cellavision.py [--hold-out monocyte] [--shots 10]
        [--seeds 0 1 2 3 4] [--threads 0] [--name new_class_cellavision]

For every K and seed, two ``hemascope fewshot`` runs with the defaults on the same shots:

- ``full base``: the shipped PBC classifier, which has an output for every CellaVision class;
- ``class removed``: the same model with the held-out class's row of the last layer
  deleted, so it cannot name that class. ``hemascope fewshot`` then treats it as a new class
  (``--new-classes``, the default): a head row imprinted from its shots
  (:mod:`hemascope.adapt.imprint`), then the usual SHOT start, fine-tuning, self-training
  and label propagation.

This measures what imprinting and the adaptation recover of a class the head never learned.
It is not a class the encoder never saw: the encoder was trained on PBC with that class among
its eight, so its features already separate it. A truly unseen class (blasts, plasma cells
for this model) has no labelled set here. Nothing is tuned on these runs. Reports accuracy
and macro-F1 (paired, Wilcoxon signed-rank) and the held-out class's precision, recall and F1
in each arm. Writes results/NAME.{json,md}.
"""

from __future__ import annotations

from _common import fewshot_parser, machine, paired_tables, shared_data, write_results

ARMS = ("full_base", "class_removed")
LABELS = ("full base", "class removed, imprinted")


def without_class(base, name: str):
    """``base`` with the output of class ``name`` removed (a copy)."""
    import copy

    from hemascope.models.artifact import LoadedModel

    keep = [c for c in base.classes if c != name]
    model = copy.deepcopy(base.model)
    model.restrict_classes([base.classes.index(c) for c in keep])
    return LoadedModel(model, {**base.config, "classes": keep}, base.path)


def main() -> None:
    import time

    import numpy as np

    from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
    from hemascope.models.artifact import load_classifier

    ap = fewshot_parser(__doc__.splitlines()[0])
    ap.set_defaults(shots=[10])
    ap.add_argument("--hold-out", default="monocyte", help="class whose head row is removed")
    ap.add_argument("--name", default="new_class_cellavision", help="results/NAME.{json,md}")
    args = ap.parse_args()
    full = load_classifier(args.model)
    if args.hold_out not in full.classes:
        raise SystemExit(f"--hold-out must be one of {full.classes}")
    reduced = without_class(full, args.hold_out)
    data = shared_data() / "cellavision"
    targets = {"full_base": load_target(data, full),
               "class_removed": load_target(data, reduced, new_classes=True)}
    bases = {"full_base": full, "class_removed": reduced}
    assert args.hold_out in targets["class_removed"].classes, "the held-out class is not in the data"
    condition = "hemascope fewshot defaults"
    t0, runs = time.time(), []
    for k in args.shots:
        for seed in args.seeds:
            row = {"condition": condition, "shots": k, "seed": seed}
            shots = {}
            for arm in ARMS:
                cfg = FewShotConfig(shots=k, seed=seed, threads=args.threads)
                res = run_fewshot(targets[arm], bases[arm], cfg)
                held = res.report.per_class[args.hold_out]
                row[arm] = {"accuracy": res.report.accuracy, "macro_f1": res.report.macro_f1,
                            "held_out": {"precision": held.precision, "recall": held.recall,
                                         "f1": held.f1, "support": held.support},
                            "seconds": res.seconds}
                shots[arm] = res.shots
            assert shots["full_base"] == shots["class_removed"], "the arms drew different shots"
            row["n_held_out_shots"] = sum(_label(targets["full_base"], s) == args.hold_out
                                          for s in shots["full_base"])
            print(f"K={k} seed={seed}: accuracy {row['full_base']['accuracy']:.3f} -> "
                  f"{row['class_removed']['accuracy']:.3f}; {args.hold_out} recall "
                  f"{row['full_base']['held_out']['recall']:.2f} -> "
                  f"{row['class_removed']['held_out']['recall']:.2f}", flush=True)
            runs.append(row)
    minutes = (time.time() - t0) / 60
    table, summary = paired_tables(runs, [condition], args.shots, ARMS, LABELS)
    held_lines = [f"| K | arm | {args.hold_out} precision | recall | F1 |", "|---|---|---|---|---|"]
    held_summary = {}
    for k in args.shots:
        for arm, label in zip(ARMS, LABELS):
            sel = [r[arm]["held_out"] for r in runs if r["shots"] == k]
            means = {m: float(np.mean([s[m] for s in sel])) for m in ("precision", "recall", "f1")}
            stds = {m: float(np.std([s[m] for s in sel])) for m in ("precision", "recall", "f1")}
            held_summary[f"{k}/{arm}"] = {"mean": means, "std": stds}
            held_lines.append(f"| {k} | {label} | " + " | ".join(
                f"{means[m]:.3f} +- {stds[m]:.3f}" for m in ("precision", "recall", "f1")) + " |")
    secs = [r[a]["seconds"] for r in runs for a in ARMS]
    n_shots = [r["n_held_out_shots"] for r in runs]
    lines = [f"## A class the base model cannot name, learned from its shots: PBC model -> "
             f"CellaVision ({len(targets['full_base'].labels)} cells; test = every non-shot "
             f"cell; seeds {args.seeds})", "",
             f"Held-out class: **{args.hold_out}** (its head row removed in the second arm; "
             f"{min(n_shots)}-{max(n_shots)} of its cells among the shots).", "",
             *table, "", f"### {args.hold_out} alone", "", *held_lines, "",
             f"Seconds per run (2 threads unless said): {min(secs):.0f}-{max(secs):.0f}; "
             f"{minutes:.0f} min in all."]
    payload = {"runs": runs, "summary": summary, "held_out_summary": held_summary,
               "hold_out": args.hold_out, "shots": args.shots, "seeds": args.seeds,
               "n_target": len(targets["full_base"].labels), "base": str(full.path),
               "minutes": minutes, "machine": machine()}
    write_results(args.name, payload, "\n".join(lines) + "\n")


def _label(target, key: str) -> str:
    return target.classes[target.labels[target.keys.index(key)]]


if __name__ == "__main__":
    main()
