"""Fields stretched along one axis (exports resized to a square): `--scale auto` with and
without undoing the stretch.

    python benchmarks/detector_stretch.py [--name detector_stretch]

Many public smear sets are exports resized to a fixed square (Roboflow's BCCD is the
640x480 fields stretched to 416x416), so their round cells come out as ellipses. Each CBC
val and test field is resized to three such shapes (boxes scaled with it) and kept as is:

* ``640x480``: the field itself (nothing to undo; checks that nothing changes);
* ``416x416`` and ``640x640``: cells 0.75 times as wide as tall;
* ``640x360``: cells 1.33 times as wide as tall.

Two rules, in this run on the same machine: ``size only`` (`--scale auto` before this
benchmark's commit: the scale search alone, re-created by switching the stretch check
off) and ``auto`` (the current `--scale auto`: the scale search, then the widening that
makes the field's content direction-free, `hemascope.detect.predict._unstretch`).
The rule was chosen on the val split's copies among three: widening searched from the red
cells' box shapes alone (the boxes follow a stretch only about a third of the way,
`benchmarks/detector_stretch_gain.py`, so the search stopped short), widening from the
gradients alone (best on stretched val copies, but it moved some unstretched val fields),
and the gradients corroborated by the boxes (kept: unstretched val fields unchanged; this
table).
Reported per split, shape and rule: COCO mAP50 and mAP50:95, WBC AP50, count MAE per class
(the model's counting thresholds) and seconds per field. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from _common import machine, shared_data, write_results

SHAPES = ((640, 480), (416, 416), (640, 640), (640, 360))  # width, height
RULES = ("size only", "auto")
SPLITS = ("val", "test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="detector_stretch")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.detect import predict
    from hemascope.evaluate.detection import GroundTruth, detection_report
    from hemascope.evaluate.detector import load_fields

    det = predict.load_detector("default")
    ds = load_dataset(shared_data() / "cbc")
    unstretch = predict._unstretch

    def stretched(f, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = f.image.shape[:2]
        fx, fy = width / w, height / h
        image = f.image if (fx, fy) == (1, 1) else cv2.resize(
            f.image, (width, height), interpolation=cv2.INTER_AREA if fx * fy < 1 else cv2.INTER_LINEAR)
        return image, f.boxes * np.array([fx, fy, fx, fy])

    results, summary = [], {}
    for split in SPLITS:
        fields = load_fields(ds, det.classes, split=split).fields
        for width, height in SHAPES:
            views = [stretched(f, width, height) for f in fields]
            gts = [GroundTruth(boxes, f.labels) for (_, boxes), f in zip(views, fields)]
            for rule in RULES:
                if rule == "size only":
                    predict._unstretch = lambda model, image, found, s, config: found
                t0 = time.perf_counter()
                with torch.no_grad():
                    preds = [predict.detect_field(det, image, scale="auto") for image, _ in views]
                sec = (time.perf_counter() - t0) / len(views)
                predict._unstretch = unstretch
                rep = detection_report(gts, preds, det.classes,
                                       count_thresholds=det.config["count_thresholds"])
                row = {"split": split, "shape": f"{width}x{height}", "rule": rule,
                       "fields": len(views), "map50": round(rep.map50, 4),
                       "map50_95": round(rep.map50_95, 4),
                       "wbc_ap50": round(rep.per_class["WBC"]["ap50"], 4),
                       "count_mae": {c: round(v, 3) for c, v in rep.count_mae.items()},
                       "seconds_per_field": round(sec, 3)}
                results.append(row)
                print(row, flush=True)
    lines = ["## CBC fields stretched along one axis: `--scale auto` with and without undoing "
             "the stretch", "",
             "| split | field (cells w:h) | rule | mAP50 | mAP50:95 | WBC AP50 | count MAE "
             "WBC / RBC / platelets | s / field |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        w, h = (int(v) for v in r["shape"].split("x"))
        ratio = (w / 640) / (h / 480)
        mae = " / ".join(f"{r['count_mae'][c]:.2f}" for c in ("WBC", "RBC", "Platelets"))
        lines.append(f"| {r['split']} | {r['shape']} ({ratio:.2f}) | {r['rule']} | {r['map50']:.3f} "
                     f"| {r['map50_95']:.3f} | {r['wbc_ap50']:.3f} | {mae} | "
                     f"{r['seconds_per_field']:.2f} |")
        key = f"{r['split']} {r['shape']}"
        summary.setdefault(key, {})[r["rule"]] = {k: r[k] for k in ("map50", "map50_95")}
    lines += ["", "size only = `--scale auto` before the stretch check (scale search alone); "
              "auto = the current rule (chosen on the val copies). "
              f"{machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "aspect_tolerance": predict.ASPECT_TOLERANCE,
                              "gradient_tolerance": predict.GRADIENT_TOLERANCE, "summary": summary,
                              "rows": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
