"""Smear-field detection on the CBC test split: COCO metrics, counting, robustness, speed.

    python benchmarks/detector_cbc.py [--model default|DIR ...] [--tta 4] [--name detector_cbc]

For each model (the shipped default by default), each model with test-time augmentation
(``--tta`` mirror views fused by WBF) and, with several models, their voting ensemble
(Li et al. 2023; WBF for comparison): COCO mAP@.5:.95 / @.5 / @.75, mAR@100,
AP50 per class, mean absolute count error per image and class, fields/s on 2 CPU threads
at 640x480, parameters and file size. Robustness: mAP50 on copies of the test split
perturbed by each of the nine interference factors (severity 0.5, seeded per image).
The CBC test split (60 fields) is never used in training or model selection.
Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results

ANCHORS = {"YOLOv8-based (BCCD, published)": 0.947, "YOLOv8n (BCCD, published)": 0.924}
TARGETS = {"map50": 0.93, "wbc_ap50": 0.99, "map50_95": 0.65, "fields_per_s": 5.0}


def speed(models, image: np.ndarray, *, views: int, fusion: str, repeats: int = 20) -> float:
    from hemascope.detect.predict import predict_ensemble

    predict_ensemble(models, image, views=views, fusion=fusion)
    t = time.perf_counter()
    for _ in range(repeats):
        predict_ensemble(models, image, views=views, fusion=fusion)
    return repeats / (time.perf_counter() - t)


def summary(rep) -> dict:
    return {"map50_95": rep.map50_95, "map50": rep.map50, "map75": rep.map75, "mar100": rep.mar100,
            "ap50": {c: v["ap50"] for c, v in rep.per_class.items()},
            "ap": {c: v["ap"] for c, v in rep.per_class.items()}, "count_mae": rep.count_mae}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--name", default="detector_cbc")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tta", type=int, default=4, choices=(1, 2, 4),
                    help="mirror views for the test-time-augmentation rows (1: none)")
    ap.add_argument("--no-robustness", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.detect.predict import load_detector
    from hemascope.detect.registry import count_parameters
    from hemascope.evaluate.detector import evaluate_detector, load_fields
    from hemascope.interference import apply_interference, interference_names

    ds = load_dataset(shared_data() / "cbc")
    specs = args.model or ["default"]
    models = [load_detector(m) for m in specs]
    fields = load_fields(ds, models[0].classes, split="test")
    rows, payload = [], {"data": "cbc Testing (60 fields)", "machine": machine(), "models": {},
                         "anchors": ANCHORS, "targets": TARGETS}
    names = [Path(m.path).name for m in models]
    names = [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]
    # (models, name, fusion, views)
    members = [([m], n, "vote", 1) for m, n in zip(models, names)]
    if args.tta > 1:
        members += [([m], f"{n} + TTA{args.tta} (wbf)", "wbf", args.tta) for m, n in zip(models, names)]
    if len(models) > 1:
        members += [(models, "ensemble (vote)", "vote", 1), (models, "ensemble (wbf)", "wbf", 1)]
    for group, name, fusion, views in members:
        ev = evaluate_detector(group, ds, fields=fields, fusion=fusion, views=views)
        entry = {"metrics": summary(ev.report), "seconds_per_field_eval": ev.seconds_per_image,
                 "fusion": fusion if len(group) * views > 1 else None, "views": views,
                 "fields_per_s_640x480": round(speed(group, fields.fields[0].image, views=views,
                                                     fusion=fusion), 2)}
        if len(group) == 1 and views == 1:
            m = group[0]
            entry.update({"parameters": count_parameters(m.model),
                          "file_mb": round((Path(m.path) / "model.safetensors").stat().st_size / 2**20, 2),
                          "arch": m.config["arch"],
                          "training": {k: m.config["training"].get(k) for k in
                                       ("command", "wall_time_s", "best_epoch", "device")}})
        if not args.no_robustness:
            rob = {}
            for factor in interference_names():
                def perturb(img, boxes, i, factor=factor):
                    return apply_interference(img, factor, boxes=boxes, severity=0.5, seed=i)[0]

                r = evaluate_detector(group, ds, fields=fields, fusion=fusion, views=views,
                                      transform=perturb).report
                rob[factor] = {"map50": r.map50, "map50_95": r.map50_95,
                               "drop_map50": ev.report.map50 - r.map50}
            entry["robustness"] = rob
        payload["models"][name] = entry
        r = ev.report
        rows.append(f"| {name} | {r.map50_95:.3f} | {r.map50:.3f} | {r.map75:.3f} | {r.mar100:.3f} | "
                    + " | ".join(f"{r.per_class[c]['ap50']:.3f}" for c in models[0].classes) + " | "
                    + " | ".join(f"{r.count_mae[c]:.2f}" for c in models[0].classes) + " | "
                    + f"{entry['fields_per_s_640x480']:.1f} |")
    cls = models[0].classes
    table = ["## Detection on the CBC test split (60 fields, 640x480)", "",
             "| model | mAP50:95 | mAP50 | mAP75 | mAR100 | " + " | ".join(f"AP50 {c}" for c in cls)
             + " | " + " | ".join(f"count MAE {c}" for c in cls) + " | fields/s (2 threads) |",
             "|---" * (6 + 2 * len(cls)) + "|", *rows, "",
             f"Targets: mAP50 >= {TARGETS['map50']}, WBC AP50 >= {TARGETS['wbc_ap50']}, "
             f"mAP50:95 >= {TARGETS['map50_95']}, >= {TARGETS['fields_per_s']} fields/s. "
             "Published anchors (BCCD): " + ", ".join(f"{k} {v}" for k, v in ANCHORS.items()) + "."]
    if not args.no_robustness:
        table += ["", "### mAP50 under interference (severity 0.5)", "",
                  "| model | clean | " + " | ".join(interference_names()) + " |",
                  "|---" * (2 + len(interference_names())) + "|"]
        for name, entry in payload["models"].items():
            clean = entry["metrics"]["map50"]
            table.append(f"| {name} | {clean:.3f} | " + " | ".join(
                f"{entry['robustness'][f]['map50']:.3f}" for f in interference_names()) + " |")
    write_results(args.name, payload, "\n".join(table))


if __name__ == "__main__":
    main()
