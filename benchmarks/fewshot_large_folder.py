"""Wall time of `hemascope fewshot` on a lab-sized folder (2 CPU threads).

    python benchmarks/fewshot_large_folder.py [--shots 100] [--seed 0]
        [--max-image-passes 6000 ...] [--name fewshot_large_folder]

CellaVision holds 100 cells; a lab adapting the model may hold thousands. We have no
other lab's labelled cells, so the folder here is the shipped classifier's own PBC test
split, its five white-cell types (about 2,000 cells, which the model never trained on):
the accuracy is a sanity check on a run of that size, not a cross-lab score. Each
``--max-image-passes`` value is one run with the recipe's defaults otherwise (a very large
value: epochs never lowered). It reports seconds, the epochs of each fine-tuning (shots,
then shots plus pseudo-labels) and the transductive accuracy / macro-F1. Writes
``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _common import machine, pbc_test_sample, write_results

WBC = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-image-passes", type=int, nargs="+", default=[6000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="fewshot_large_folder")
    args = ap.parse_args()

    from hemascope.adapt import fewshot
    from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
    from hemascope.models.artifact import load_classifier

    cells = [(p, c) for p, c in pbc_test_sample(10 ** 6) if c in WBC]
    base = load_classifier("default")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, cls in cells:  # a class-folder copy of the cells (links, no image data)
            (Path(tmp) / cls).mkdir(exist_ok=True)
            os.symlink(path, Path(tmp) / cls / path.name)
        target = load_target(tmp, base)
        for passes in args.max_image_passes:
            cfg = FewShotConfig(shots=args.shots, seed=args.seed, threads=args.threads,
                                max_image_passes=passes)
            sizes: list[int] = []
            real = fewshot.fine_tune_epochs
            fewshot.fine_tune_epochs = lambda c, n, s=sizes, f=real: s.append(n) or f(c, n)
            try:
                res = run_fewshot(target, base, cfg, log=lambda s: print(s, flush=True))
            finally:
                fewshot.fine_tune_epochs = real
            runs.append({"max_image_passes": passes, "seconds": round(res.seconds, 1),
                         "fine_tunings": [{"images": n, "epochs": real(cfg, n)} for n in sizes],
                         "accuracy": res.report.accuracy, "macro_f1": res.report.macro_f1,
                         "n_test": res.report.n_images})
            print(runs[-1], flush=True)
    payload = {"machine": {**machine(), "threads": args.threads}, "n_images": len(target.labels),
               "classes": target.classes, "shots": args.shots, "seed": args.seed, "runs": runs}
    write_results(args.name, payload, render(payload))


def render(payload: dict) -> str:
    lines = [f"## `hemascope fewshot` on a folder of {payload['n_images']} cells "
             f"(K = {payload['shots']}, seed {payload['seed']}, "
             f"{payload['machine']['threads']} CPU threads)", "",
             "| max image passes | minutes | fine-tunings (images x epochs) | accuracy | macro-F1 |",
             "|---|---|---|---|---|"]
    for r in payload["runs"]:
        tunes = ", ".join(f"{t['images']} x {t['epochs']}" for t in r["fine_tunings"])
        lines.append(f"| {r['max_image_passes']} | {r['seconds'] / 60:.1f} | {tunes} | "
                     f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} |")
    lines += ["", "The folder is the shipped classifier's own PBC test split (its five white-cell "
              "types): the same lab as its training, so the accuracy only shows that a run of "
              "this size works, not how well another lab adapts."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
