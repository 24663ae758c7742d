"""`hemascope analyze` end to end on the CBC test split: count agreement and throughput.

    python benchmarks/analyze_cbc.py [--detector default] [--classifier default]
                                     [--parts default|none] [--detector-tta N --name analyze_cbc_tta] [--tta N]

Runs the main job (shipped default models unless told otherwise) on the 60 CBC test fields
(640x480, never used in training or model selection) and compares the per-image counts
of white cells, red cells and platelets with the annotated boxes: mean absolute error,
mean signed error (bias) and the mean true count. Throughput: fields per second end to
end on 2 CPU threads, with per-stage seconds per field (read, detect, classify, outline,
write), overlays and the report included. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results

TARGET_FIELDS_PER_S = 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="default")
    ap.add_argument("--classifier", default="default")
    ap.add_argument("--detector-tta", type=int, default=1, choices=(1, 2, 4))
    ap.add_argument("--tta", type=int, default=None, choices=(1, 2, 4, 8),
                    help="classifier views (default: the classifier's own)")
    ap.add_argument("--parts", default="none", help="part model for the outlines, or 'none'")
    ap.add_argument("--name", default="analyze_cbc")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.pipeline import analyze

    ds = load_dataset(shared_data() / "cbc").subset("test")
    root = Path(ds.image_root)
    truth = {str((root / im.file_name).resolve()): im for im in ds.images}
    with tempfile.TemporaryDirectory() as tmp:
        res = analyze(sorted(truth), out_dir=tmp, detector=args.detector,
                      classifier=args.classifier, detector_tta=args.detector_tta, tta=args.tta,
                      parts=None if args.parts == "none" else args.parts)
    n = len(res.images)
    kinds = ("WBC", "RBC", "Platelets")
    err = {k: [] for k in kinds}
    true_n = {k: [] for k in kinds}
    for r in res.images:
        im = truth[str(Path(r.file).resolve())]
        for k in kinds:
            t = sum(1 for i in im.instances if i.label == k)
            p = sum(1 for c in r.cells if c.kind == k)
            err[k].append(p - t)
            true_n[k].append(t)
    counts = {k: {"mae": float(np.mean(np.abs(err[k]))), "bias": float(np.mean(err[k])),
                  "mean_true": float(np.mean(true_n[k]))} for k in kinds}
    stages = {k: v / n for k, v in res.seconds.items() if k != "total"}
    fps = n / res.seconds["total"]
    payload = {"data": f"cbc Testing ({n} fields)", "machine": machine(),
               "detector": args.detector, "classifier": args.classifier,
               "detector_tta": args.detector_tta, "classifier_views": args.tta or "own",
               "parts": args.parts,
               "counts": counts, "fields_per_s_end_to_end": fps,
               "seconds_per_field_by_stage": stages, "target_fields_per_s": TARGET_FIELDS_PER_S,
               "wbc_types": res.differential()}
    tta = f" (`--detector-tta {args.detector_tta}`)" if args.detector_tta > 1 else ""
    tta += f" (`--parts {args.parts}`)" if args.parts != "none" else ""
    tta += f" (`--tta {args.tta}`)" if args.tta else ""
    table = [f"## `hemascope analyze`{tta} on the CBC test split", "",
             "| object | count MAE per field | bias (pred - true) | mean true count |",
             "|---|---|---|---|"]
    table += [f"| {k} | {v['mae']:.2f} | {v['bias']:+.2f} | {v['mean_true']:.2f} |"
              for k, v in counts.items()]
    table += ["", f"End to end: **{fps:.2f} fields/s** on {args.threads} CPU threads "
              f"(target >= {TARGET_FIELDS_PER_S}); seconds per field by stage: "
              + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()) + "."]
    write_results(args.name, payload, "\n".join(table))


if __name__ == "__main__":
    main()
