"""Which test-time views help the shipped detector: mirrors, 90-degree turns, other scales.

    python benchmarks/detector_tta_views.py [--model default] [--name detector_tta_views]

Each condition runs the detector on several views of every CBC field and fuses their boxes
by weighted boxes fusion (the ``--tta`` fusion, IoU 0.55):

- ``mirror N``: the first N mirror views (``--tta 1|2|4`` before this benchmark);
- ``dihedral 8``: the four mirrors of the field and of its transpose, i.e. the field turned
  by 0, 90, 180 and 270 degrees and mirrored (the detector trained with 90-degree turns);
- ``... x scales (a, b, ...)``: each of those views also run at the working scale times
  a, b, ... (the field resized, boxes mapped back).

Decision rules, fixed before the first run (val = the 60 CBC validation fields, which the
detector's checkpoint and working size were chosen on but never trained on; test = the 60
test fields, scored after the decision and reported, not acted on):

1. ``hemascope detect / evaluate detector --tta 8`` (and ``analyze --detector-tta 8``) is
   offered if ``dihedral 8`` beats ``mirror 4`` on val mAP50:95 by at least 0.003.
   (1 view stays the default either way: it is the one that meets the 5 fields/s target.)
2. Scales become a test-time option only if the best scaled condition beats the best
   unscaled one on val mAP50:95 by at least 0.005 (a new option must pay for itself).

Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import machine, shared_data, write_results

CONDITIONS = {  # name: (views, scale factors)
    "mirror 1": (1, (1.0,)),
    "mirror 4": (4, (1.0,)),
    "dihedral 8": (8, (1.0,)),
    "mirror 4 x scales (1, 1.25)": (4, (1.0, 1.25)),
    "mirror 4 x scales (0.8, 1, 1.25)": (4, (0.8, 1.0, 1.25)),
    "dihedral 8 x scales (1, 1.25)": (8, (1.0, 1.25)),
}
RULE_TTA8, RULE_SCALES = 0.003, 0.005


def views_at_scales(det, image: np.ndarray, views: int, factors) -> list:
    """One prediction set per (view, scale factor), in the field's own pixels."""
    from hemascope.detect.predict import balanced, detect_field, working_scale
    from hemascope.detect.tta import VIEWS, detect_views, flip_detections, flip_image

    out = []
    for f in factors:
        if f == 1.0:  # exactly what --tta N runs (scale "auto")
            out += detect_views(det, image, views=views)
            continue
        img = balanced(det, image)
        h, w = img.shape[:2]
        for hf, vf, tr in VIEWS[:views]:
            x = flip_image(img, horizontal=hf, vertical=vf, transpose=tr)
            s = working_scale(*x.shape[:2], det.config) * f
            out.append(flip_detections(detect_field(det, x, scale=s, balance=False), h, w,
                                       horizontal=hf, vertical=vf, transpose=tr))
    return out


def score(det, fields, views: int, factors) -> tuple[dict, float]:
    from hemascope.detect.ensemble import weighted_boxes_fusion
    from hemascope.evaluate.detection import GroundTruth, detection_report

    preds, t0 = [], time.perf_counter()
    for f in fields.fields:
        p = views_at_scales(det, f.image, views, factors)
        preds.append(p[0] if len(p) == 1 else weighted_boxes_fusion(p, iou=0.55))
    sec = (time.perf_counter() - t0) / len(fields.fields)
    rep = detection_report([GroundTruth(f.boxes, f.labels) for f in fields.fields], preds,
                           det.classes, count_thresholds=det.config.get("count_thresholds"))
    return {"map50_95": rep.map50_95, "map50": rep.map50, "map75": rep.map75,
            "mar100": rep.mar100, "ap": {c: v["ap"] for c, v in rep.per_class.items()},
            "count_mae": rep.count_mae}, sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--name", default="detector_tta_views")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.detect.predict import load_detector
    from hemascope.evaluate.detector import load_fields

    det = load_detector(args.model)
    ds = load_dataset(shared_data() / "cbc")
    results: dict = {"val": {}, "test": {}}
    for split in ("val", "test"):
        fields = load_fields(ds, det.classes, split=split)
        for name, (views, factors) in CONDITIONS.items():
            m, sec = score(det, fields, views, factors)
            m["seconds_per_field"] = sec
            results[split][name] = m
            print(f"{split} {name}: mAP50:95 {m['map50_95']:.4f} mAP50 {m['map50']:.4f} "
                  f"({sec:.2f} s/field)", flush=True)
    val = {k: v["map50_95"] for k, v in results["val"].items()}
    gain8 = val["dihedral 8"] - val["mirror 4"]
    unscaled = max(v for k, v in val.items() if "scales" not in k)
    best_scaled = max((k for k in val if "scales" in k), key=val.get)
    gain_scales = val[best_scaled] - unscaled
    decisions = {
        "offer_tta8": {"val_gain": gain8, "threshold": RULE_TTA8, "met": gain8 >= RULE_TTA8},
        "offer_scales": {"best": best_scaled, "val_gain": gain_scales, "threshold": RULE_SCALES,
                         "met": gain_scales >= RULE_SCALES},
    }
    cls = det.classes
    lines = ["## Test-time views for the shipped detector (CBC, WBF of the views)", "",
             "| condition | val mAP50:95 | test mAP50:95 | test mAP50 | test mAP75 | test mAR100 | "
             + " | ".join(f"test AP {c}" for c in cls) + " | s/field (2 threads) |",
             "|---" * (7 + len(cls)) + "|"]
    for name in CONDITIONS:
        v, t = results["val"][name], results["test"][name]
        lines.append(f"| {name} | {v['map50_95']:.4f} | {t['map50_95']:.4f} | {t['map50']:.4f} | "
                     f"{t['map75']:.4f} | {t['mar100']:.4f} | "
                     + " | ".join(f"{t['ap'][c]:.3f}" for c in cls)
                     + f" | {t['seconds_per_field']:.2f} |")
    lines += ["", f"Rule 1 (offer `--tta 8`: dihedral 8 - mirror 4 >= {RULE_TTA8} on val): "
              f"{gain8:+.4f}, {'met' if decisions['offer_tta8']['met'] else 'not met'}.",
              f"Rule 2 (scales: best scaled - best unscaled >= {RULE_SCALES} on val): "
              f"{best_scaled} {gain_scales:+.4f}, "
              f"{'met' if decisions['offer_scales']['met'] else 'not met'}.",
              "Test columns were scored after the decision; they are reported, not acted on."]
    write_results(args.name, {"model": str(det.path), "conditions": {k: {"views": v, "scales": s}
                              for k, (v, s) in CONDITIONS.items()}, "results": results,
                              "decisions": decisions, "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
