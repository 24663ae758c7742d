"""Counting on fields larger than the training fields: `--scale auto` before and after.

    python benchmarks/detector_large_fields.py [--fields 12] [--name detector_large_fields]

The shipped detector was trained on 640x480 CBC fields. Two kinds of larger field are
made from CBC test fields (never used in training or model selection):

* **mosaic k x k**: k x k copies of a field side by side, the same magnification over a
  wider view (a stitched scan or a large-sensor camera); the true count is k^2 times the
  field's annotated count.
* **upscaled x f**: the field resized f times larger, the same view at more pixels (a
  phone on the eyepiece); the true count is the field's own.

Each is detected with three scale rules, all in this run on the same machine:
``none`` (the field fitted to the training size), ``one step`` (the rule before this
benchmark's commit: one correction from the median red-cell size, at most x4, re-created
here from the library's own pieces) and ``auto`` (the current `--scale auto`: correction
steps on a window until the red-cell size agrees). Counts use the model's counting
thresholds, as `hemascope analyze` does. Reported per class: the mean absolute count error
per 640x480 field's worth of image (a mosaic's error divided by k^2), comparable with the
per-field count MAE of `benchmarks/results/analyze_cbc.md`; and the pooled relative error
(sum of absolute errors / sum of true counts).
Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from _common import machine, shared_data, write_results

MOSAICS, UPSCALES = (1, 2, 4, 6), (2, 4)
RULES = ("none", "one step", "auto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=12, help="first N CBC test fields (sorted)")
    ap.add_argument("--name", default="detector_large_fields")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.detect import predict
    from hemascope.io.image import read_image

    det = predict.load_detector("default")
    ds = load_dataset(shared_data() / "cbc").subset("test")
    fields = sorted(ds.images, key=lambda im: im.file_name)[:args.fields]
    thr = det.config["count_thresholds"]

    def counts(d) -> dict[str, int]:
        return {c: int(((d.labels == i + 1) & (d.scores >= thr[c])).sum())
                for i, c in enumerate(det.classes)}

    def run(image: np.ndarray, rule: str):
        base = predict.working_scale(*image.shape[:2], det.config)
        with torch.no_grad():
            if rule == "none":
                return predict._run(det.model, image, base)
            if rule == "auto":
                return predict.detect_field(det, image, scale="auto")
            first = predict._run(det.model, image, base)  # the previous rule, one step
            ratio = predict._size_ratio(first, base, det.config)
            if ratio is None or predict._agrees(ratio):
                return first
            return predict._run(det.model, image, base * float(np.clip(ratio, 0.25, 4.0)))

    cases = [("mosaic", k) for k in MOSAICS] + [("upscaled", f) for f in UPSCALES]
    rows, t0 = [], time.time()
    for im in fields:
        field = read_image(Path(ds.image_root) / im.file_name)
        truth = {c: sum(1 for i in im.instances if i.label == c) for c in det.classes}
        for kind, k in cases:
            big = (np.tile(field, (k, k, 1)) if kind == "mosaic" else
                   cv2.resize(field, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC))
            want = {c: n * (k * k if kind == "mosaic" else 1) for c, n in truth.items()}
            for rule in RULES:
                t = time.time()
                got = counts(run(big, rule))
                rows.append({"field": im.file_name, "case": f"{kind} {k}", "size": list(big.shape[:2]),
                             "rule": rule, "truth": want, "counted": got,
                             "seconds": round(time.time() - t, 2)})
        print(f"{im.file_name} done ({time.time() - t0:.0f} s)", flush=True)

    def per_field(r: dict) -> int:
        return r["size"][0] * r["size"][1] // (480 * 640) if r["case"].startswith("mosaic") else 1

    def errors(case: str, rule: str, c: str) -> tuple[float, float]:
        sel = [r for r in rows if r["case"] == case and r["rule"] == rule]
        mae = float(np.mean([abs(r["counted"][c] - r["truth"][c]) / per_field(r) for r in sel]))
        pooled = (sum(abs(r["counted"][c] - r["truth"][c]) for r in sel)
                  / max(sum(r["truth"][c] for r in sel), 1))
        return round(mae, 3), round(pooled, 3)

    summary = {case: {rule: {c: dict(zip(("mae_per_field", "pooled_relative"), errors(case, rule, c)))
                             for c in det.classes}
                      | {"seconds": round(float(np.mean([r["seconds"] for r in rows
                                                          if r["case"] == case and r["rule"] == rule])), 2)}
                      for rule in RULES} for case in dict.fromkeys(r["case"] for r in rows)}
    lines = [f"## Counting on large fields ({len(fields)} CBC test fields)", "",
             "Count MAE per 640x480 field's worth of image (pooled relative error in brackets); "
             "lower is better.", "",
             "| field | size | rule | WBC | RBC | platelets | s / field |", "|---|---|---|---|---|---|---|"]
    for case, by_rule in summary.items():
        size = next(r["size"] for r in rows if r["case"] == case)
        for rule, e in by_rule.items():
            cells = " | ".join(f"{e[c]['mae_per_field']:.2f} ({e[c]['pooled_relative']:.2f})"
                               for c in det.classes)
            lines.append(f"| {case} | {size[1]}x{size[0]} | {rule} | {cells} | {e['seconds']:.2f} |")
    lines += ["", "mosaic k: k x k copies of a 640x480 field (true count k^2 times the field's); "
              "upscaled f: the field resized f times (true count unchanged). Rules: none = field "
              "fitted to the training size; one step = the previous --scale auto; auto = the "
              f"current one. {machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "fields": [im.file_name for im in fields],
                              "summary": summary, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
