"""What a PBC classifier keeps on its own test split and gives on another lab, untouched.

    python benchmarks/crosslab_zero_shot.py --models default runs/pbc8_crosslab [--name crosslab_zero_shot]

For each model: accuracy and macro-F1 on its recorded PBC test split (the split file in the
model folder), and on all 100 CellaVision cells (another lab, stain and magnification) with
no adaptation at all (labels mapped onto the model's classes; macro-F1 over the five types
CellaVision has), plus recall per CellaVision type. Used to judge training recipes meant
to transfer, e.g. ``--augment cross-lab``. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import machine, shared_data, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--name", default="crosslab_zero_shot")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.evaluate.classifier import evaluate_classifier
    from hemascope.models.artifact import load_classifier

    data = shared_data()
    rows, lymph, out = [], [], {}
    for spec in args.models:
        loaded = load_classifier(spec)
        aug = loaded.config["training"]["config"].get("augment", {})
        pbc = evaluate_classifier(data / "pbc" / "PBC_dataset_normal_DIB", model=loaded,
                                  split="test", n_bootstrap=0, tta=1).report
        cv = evaluate_classifier(data / "cellavision", model=loaded, n_bootstrap=0, tta=1).report
        present = [c for c in cv.classes if cv.per_class[c].support > 0]
        recall = {c: cv.per_class[c].recall for c in present}
        f1_present = float(np.mean([cv.per_class[c].f1 for c in present]))
        # where each CellaVision type went: cells per predicted class (raw confusion counts)
        went = {c: {k: int(n) for k, n in zip(cv.classes, cv.confusion[list(cv.classes).index(c)])
                    if n > 0} for c in present}
        out[spec] = {"model": str(loaded.path), "augment": aug,
                     "pbc_test": {"accuracy": pbc.accuracy, "macro_f1": pbc.macro_f1,
                                  "n_images": pbc.n_images},
                     "cellavision": {"accuracy": cv.accuracy, "macro_f1_present_classes": f1_present,
                                     "recall": recall, "predicted_as": went,
                                     "n_images": cv.n_images}}
        rows.append(f"| {spec} | {pbc.accuracy:.4f} | {pbc.macro_f1:.4f} | {cv.accuracy:.3f} | "
                    f"{f1_present:.3f} | " + " / ".join(f"{recall[c]:.2f}" for c in present) + " |")
        classes = present
        lymph.append(f"| {spec} | " + ", ".join(f"{k} {n}" for k, n in sorted(
            went.get("lymphocyte", {}).items(), key=lambda kv: -kv[1])) + " |")
    table = f"""## PBC classifiers with no adaptation: own test split vs another lab (CellaVision, 100 cells)

| model | PBC test accuracy | PBC test macro-F1 | CellaVision accuracy | CellaVision macro-F1 (5 types) | CellaVision recall {' / '.join(classes)} |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Where CellaVision's lymphocytes went (cells per predicted class):

| model | predicted as |
|---|---|
{chr(10).join(lymph)}"""
    write_results(args.name, {"models": out, "machine": machine()}, table)


if __name__ == "__main__":
    main()
