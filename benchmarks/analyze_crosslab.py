"""`hemascope analyze` on another lab's cells, with and without adapting to the run's cells.

    python benchmarks/analyze_crosslab.py [--seeds 0 1 2 3 4] [--pbc-images 300] [--name analyze_crosslab]

Runs the main job (``hemascope.analyze``, single-cell mode, shipped default models) on the
100 CellaVision cells (another lab, stain and camera; labels used only to score) with:
the classifier as is; ``--classes`` set to the five leukocyte types CellaVision has (what
a lab analysing normal blood can tell the run); ``--adapt bn``; ``--adapt shot``; each
adaptation with and without ``--classes``. SHOT trains, so it runs once per seed; AdaBN
is deterministic and runs once. Nothing is tuned on CellaVision: adaptation uses the
library's defaults (SHOT: the paper's loss weights, 10 epochs).

Same-lab check: a seeded sample of ``--pbc-images`` cells of the default's own PBC test
split (the lab it was trained in), analysed as is, with ``--adapt bn`` and with ``--adapt
shot`` (first seed), to see what adaptation costs where it is not needed.

Scores: accuracy and macro-F1 over the classes present in the truth.
Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, pbc_test_sample, shared_data, write_results

WBC5 = ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"]
CV_NAMES = {"1": "neutrophil", "2": "lymphocyte", "3": "monocyte", "4": "eosinophil", "5": "basophil"}


def score(result, truth: dict[str, str]) -> dict:
    from hemascope.evaluate.classification import classification_report

    pred = {str(Path(r.source).resolve()): r.cells[0].label for r in result.images if r.cells}
    keys = sorted(truth)
    classes = sorted(set(truth.values()) | set(pred.values()))
    y = [classes.index(truth[k]) for k in keys]
    p = [classes.index(pred[k]) if k in pred else -1 for k in keys]
    if -1 in p:
        raise SystemExit("a cell has no result")
    rep = classification_report(np.array(y), np.array(p), classes, n_bootstrap=0)
    present = sorted(set(truth.values()))
    return {"accuracy": rep.accuracy,
            "macro_f1": float(np.mean([rep.per_class[c].f1 for c in present])),
            "recall": {c: rep.per_class[c].recall for c in present}, "n": len(keys)}


def run(files, truth, *, classes=None, adapt="none", seed=0) -> dict:
    import hemascope

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = hemascope.analyze(files, out_dir=Path(tmp) / "out", mode="cells", classes=classes,
                                adapt=adapt, adapt_seed=seed, overlays=False)
        seconds = time.perf_counter() - t
    out = score(res, truth)
    out.update({"classes": classes, "adapt": adapt, "seed": seed, "seconds": round(seconds, 1),
                "adapt_seconds": res.seconds.get("adapt")})
    print(f"{adapt:5s} classes={'wbc5' if classes else 'all'} seed={seed}: "
          f"acc {out['accuracy']:.3f} F1 {out['macro_f1']:.3f} ({seconds:.0f} s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--pbc-images", type=int, default=300)
    ap.add_argument("--name", default="analyze_crosslab")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = shared_data()
    cv = data / "cellavision"
    with open(cv / "labels.csv", newline="") as fh:
        labels = {int(r["image ID"]): CV_NAMES[r["class"]] for r in csv.DictReader(fh)}
    cv_files = [cv / f"{i:03d}.bmp" for i in sorted(labels)]
    cv_truth = {str(f.resolve()): labels[i] for f, i in zip(cv_files, sorted(labels))}

    runs = {"cellavision": [], "pbc": []}
    for classes in (None, WBC5):
        runs["cellavision"].append(run(cv_files, cv_truth, classes=classes))
        runs["cellavision"].append(run(cv_files, cv_truth, classes=classes, adapt="bn"))
        for seed in args.seeds:
            runs["cellavision"].append(run(cv_files, cv_truth, classes=classes, adapt="shot",
                                           seed=seed))

    from hemascope.model_classes import map_to_classes
    from hemascope.models.artifact import load_classifier

    model_classes = load_classifier("default").classes
    sample = pbc_test_sample(args.pbc_images)
    pbc_files = [f for f, _ in sample]
    pbc_truth = {str(f.resolve()): map_to_classes(label, model_classes) for f, label in sample}
    runs["pbc"].append(run(pbc_files, pbc_truth))
    runs["pbc"].append(run(pbc_files, pbc_truth, adapt="bn"))
    runs["pbc"].append(run(pbc_files, pbc_truth, adapt="shot", seed=args.seeds[0]))

    def rows(sel, what):
        lines = []
        for classes in (None, WBC5):
            for adapt in ("none", "bn", "shot"):
                rs = [r for r in sel if r["adapt"] == adapt and (r["classes"] is None) == (classes is None)]
                if not rs:
                    continue
                acc = [r["accuracy"] for r in rs]
                f1 = [r["macro_f1"] for r in rs]
                spread = lambda v: f"{np.mean(v):.3f}" + (f" +- {np.std(v):.3f}" if len(v) > 1 else "")  # noqa: E731
                lym = np.mean([r["recall"].get("lymphocyte", float("nan")) for r in rs])
                secs = np.mean([r["adapt_seconds"] or 0 for r in rs])
                lines.append(f"| {what} | {'all of the classifier' if classes is None else 'the 5 leukocyte types'} "
                             f"| {adapt} | {len(rs)} | {spread(acc)} | {spread(f1)} | {lym:.2f} | {secs:.0f} |")
        return lines

    table = "\n".join([
        "## `hemascope analyze` on another lab's cells, adapting to the run's own cells",
        "",
        f"Single-cell mode, shipped default models. CellaVision: 100 cells of another lab (labels only score). "
        f"PBC: {len(pbc_files)} cells of the default's own test split (seed 0). SHOT runs once per seed "
        f"({', '.join(map(str, args.seeds))} on CellaVision, {args.seeds[0]} on PBC); mean +- std over seeds.",
        "",
        "| cells | `--classes` | `--adapt` | runs | accuracy | macro-F1 | lymphocyte recall | adaptation s |",
        "|---|---|---|---|---|---|---|---|",
        *rows(runs["cellavision"], "CellaVision (another lab)"),
        *rows(runs["pbc"], "PBC test (the classifier's lab)"),
    ])
    write_results(args.name, {"runs": runs, "seeds": args.seeds, "machine": machine()}, table)


if __name__ == "__main__":
    main()
