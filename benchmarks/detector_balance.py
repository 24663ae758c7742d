"""Fields in another lab's colours: the default detector with and without white balance.

    python benchmarks/detector_balance.py [--name detector_balance]

Each CBC val and test field is recoloured the way another lab, lamp or camera would
(boxes unchanged), then detected with `--no-balance` and with the default white balance
(`hemascope.stain.background`: per-channel gains bring the field's background, the
median of its brightest tenth, to the training fields'):

* ``as is``: nothing changed;
* ``colour cast 0.25 / 0.5 / 0.75``: the interference factor (an additive random tint of
  up to 10 / 20 / 30 levels per channel; seeded per field);
* ``warm lamp``: multiplicative gains R x1.1, G x0.95, B x0.8 (a halogen lamp with the
  camera's white balance off);
* ``PBC style`` / ``CellaVision style``: Reinhard colour transfer onto the style of 40
  PBC cells / 40 CellaVision cells (other labs' scanners and stains);
* ``low illumination``, ``pH high``, ``pH low``: the interference factors at severity 0.5.

The rule (brightest tenth, median, gains up to x2) was settled on the val split with
``as is``, ``colour cast 0.5`` and the two styles; the rest were added for this table.
Reported per split: mAP50 and mAP50:95 of each arm. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import machine, shared_data, write_results

SPLITS = ("val", "test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="detector_balance")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope import interference
    from hemascope.data import load_dataset
    from hemascope.detect import predict
    from hemascope.evaluate.detection import GroundTruth, detection_report
    from hemascope.evaluate.detector import load_fields
    from hemascope.io.image import read_image
    from hemascope.stain import fit_reference, standardize

    det = predict.load_detector("default")
    data = shared_data()
    pbc = sorted((data / "pbc").rglob("*.jpg"))
    cv = sorted((data / "cellavision").glob("*.bmp"))
    rng = np.random.default_rng(0)
    styles = {name: fit_reference([read_image(files[i]) for i in
                                   sorted(rng.choice(len(files), size=40, replace=False))])
              for name, files in (("PBC", pbc), ("CellaVision", cv))}

    def factor(name: str, severity: float):
        return lambda im, boxes, i: interference.apply_interference(
            im, name, boxes=boxes, severity=severity, seed=i)[0]

    def gains(g):
        return lambda im, boxes, i: np.clip(im * np.asarray(g, np.float32), 0, 255).astype(np.uint8)

    shifts = {
        "as is": lambda im, boxes, i: im,
        "colour cast 0.25": factor("colour_cast", 0.25),
        "colour cast 0.5": factor("colour_cast", 0.5),
        "colour cast 0.75": factor("colour_cast", 0.75),
        "warm lamp": gains((1.1, 0.95, 0.8)),
        "PBC style": lambda im, boxes, i: standardize(im, reference=styles["PBC"]),
        "CellaVision style": lambda im, boxes, i: standardize(im, reference=styles["CellaVision"]),
        "low illumination": factor("low_illumination", 0.5),
        "pH high": factor("ph_high", 0.5),
        "pH low": factor("ph_low", 0.5),
    }
    ds = load_dataset(data / "cbc")
    rows = []
    for split in SPLITS:
        fields = load_fields(ds, det.classes, split=split).fields
        gts = [GroundTruth(f.boxes, f.labels) for f in fields]
        for name, shift in shifts.items():
            images = [shift(f.image, f.boxes, i) for i, f in enumerate(fields)]
            row = {"split": split, "shift": name}
            for arm, balance in (("no balance", False), ("balance", True)):
                with torch.no_grad():
                    preds = [predict.detect_field(det, im, balance=balance) for im in images]
                rep = detection_report(gts, preds, det.classes)
                row[arm] = {"map50": round(rep.map50, 4), "map50_95": round(rep.map50_95, 4)}
            rows.append(row)
            print(row, flush=True)
    lines = ["## CBC fields recoloured: the default detector without and with white balance", "",
             "mAP50 / mAP50:95.", "",
             "| field colours | val, no balance | val, balance | test, no balance | test, balance |",
             "|---|---|---|---|---|"]
    for name in shifts:
        cells = []
        for split in SPLITS:
            r = next(r for r in rows if r["split"] == split and r["shift"] == name)
            cells += [f"{r[a]['map50']:.3f} / {r[a]['map50_95']:.3f}" for a in ("no balance", "balance")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Background reference {det.config['background']} (the training fields'). "
              "The rule was settled on val (as is, colour cast 0.5, the two styles). "
              f"{machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "background": det.config["background"],
                              "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
