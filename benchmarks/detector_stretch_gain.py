"""How far the stretch measures follow a real stretch: red-cell boxes vs field gradients.

    python benchmarks/detector_stretch_gain.py [--name detector_stretch_gain]

CBC val fields (never test) are squeezed to 0.75 of their width, as an export resized to a
square squeezes them. For each field, two measures of "cells are wider than tall", as log
ratios, squeezed minus as is, divided by log 0.75 (1 = follows the stretch fully, 0 = not
at all):

* ``boxes``: the median width / height of the default detector's confident red-cell boxes
  inside the field (`hemascope.detect.predict._log_aspect`), at the working scale;
* ``gradients``: `hemascope.detect.predict.gradient_aspect` at the working scale.

The median over fields of the gradients' follow is ``ASPECT_GAIN`` in
`hemascope.detect.predict` (the widening divides the gradients' log stretch by it); the
boxes' follow is why the widening is not read from the boxes. Writes
``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from _common import machine, shared_data, write_results

SQUEEZE = 0.75


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="detector_stretch_gain")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.data import load_dataset
    from hemascope.detect import predict
    from hemascope.evaluate.detector import load_fields

    det = predict.load_detector("default")
    fields = load_fields(load_dataset(shared_data() / "cbc"), det.classes, split="val").fields
    follows: dict[str, list[float]] = {"boxes": [], "gradients": []}
    for f in fields:
        h, w = f.image.shape[:2]
        squeezed = cv2.resize(f.image, (round(w * SQUEEZE), h), interpolation=cv2.INTER_AREA)
        logs = {"boxes": [], "gradients": []}
        for image in (f.image, squeezed):
            image = predict.balanced(det, image)
            s = predict.working_scale(*image.shape[:2], det.config)
            with torch.no_grad():
                boxes = predict._log_aspect(predict._run(det.model, image, s), image.shape,
                                            det.config)
            logs["boxes"].append(None if boxes is None else boxes[0])
            logs["gradients"].append(float(np.log(predict.gradient_aspect(image, s))))
        for k, (plain, sq) in logs.items():
            if plain is not None and sq is not None:
                follows[k].append((sq - plain) / np.log(SQUEEZE))
    summary = {k: {"median": round(float(np.median(v)), 3),
                   "quartiles": [round(float(q), 3) for q in np.percentile(v, [25, 75])],
                   "fields": len(v)} for k, v in follows.items()}
    lines = [f"## How far stretch measures follow a squeeze to {SQUEEZE} (CBC val, "
             f"{len(fields)} fields)", "",
             "| measure | follow, median | quartiles | fields |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['median']:.2f} | {v['quartiles'][0]:.2f} - {v['quartiles'][1]:.2f} | "
              f"{v['fields']} |" for k, v in summary.items()]
    lines += ["", f"1 = the measure follows the stretch fully. `ASPECT_GAIN` in "
              f"`hemascope.detect.predict` is {predict.ASPECT_GAIN}. {machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "squeeze": SQUEEZE, "summary": summary,
                              "aspect_gain": predict.ASPECT_GAIN}, "\n".join(lines))


if __name__ == "__main__":
    main()
