"""Is CellaVision's magnification what breaks the PBC model? Red cells as a ruler.

    python benchmarks/crosslab_scale.py [--pbc-images 200] [--model default]

Red cells are about 7.5 um across in every lab, so their diameter relative to the frame
compares magnifications. For PBC (test split, a seeded sample) and every CellaVision image:
circles found by the Hough gradient transform on the green channel, minus circles centred
on the white cell (the shipped part segmenter's nucleus + cytoplasm) and circles nested in
another (central pallor); the image's red-cell diameter is the median of the rest (>= 2
circles needed). Also the white cell's size (square root of its area share). Then the
shipped classifier on CellaVision, zoomed out (mirror padding) by the measured ratio and by
larger factors: does matching the scale bring the lymphocytes back? Nothing is trained.
Writes results/crosslab_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

import numpy as np

from _common import REPO, machine, shared_data, write_results



def red_cell_diameter(image: np.ndarray, cell: np.ndarray) -> float | None:
    """Median Hough-circle diameter of the red cells, as a fraction of the shorter side."""
    import cv2

    h, w = image.shape[:2]
    s = min(h, w)
    green = cv2.GaussianBlur(np.ascontiguousarray(image[..., 1]), (5, 5), 0)
    found = cv2.HoughCircles(green, cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=0.07 * s, param1=150,
                             param2=0.8, minRadius=int(0.035 * s), maxRadius=int(0.3 * s))
    if found is None:
        return None
    c = found[0]
    radii = []
    for i, (x, y, r) in enumerate(c):
        if cell[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))]:
            continue  # the white cell or its nucleus
        if any(j != i and np.hypot(x - c[j, 0], y - c[j, 1]) + r <= c[j, 2] + 2 for j in range(len(c))):
            continue  # a pallor ring inside a red cell
        radii.append(r)
    if len(radii) < 2:
        return None
    radii = np.array(radii)
    med = np.median(radii)
    radii = radii[(radii > 0.7 * med) & (radii < 1.4 * med)]  # platelets, clumps
    return float(2 * np.median(radii) / s) if len(radii) >= 2 else None


def zoom_out(image: np.ndarray, factor: float) -> np.ndarray:
    """The image in a frame ``factor`` x larger (mirror padding): cells look smaller."""
    import cv2

    h, w = image.shape[:2]
    ph, pw = int(round(h * (factor - 1) / 2)), int(round(w * (factor - 1) / 2))
    if ph <= 0 and pw <= 0:
        return image
    return cv2.copyMakeBorder(image, ph, ph, pw, pw, cv2.BORDER_REFLECT_101)


def measure(images, labels, segmenter):
    from hemascope.segment.predict import segment_arrays

    rows = []
    for im, lab, parts in zip(images, labels, segment_arrays(segmenter, images)):
        cell = np.isin(parts, [1, 2])
        rows.append({"label": lab, "red_cell": red_cell_diameter(im, cell),
                     "white_cell": float(np.sqrt(cell.mean()))})
    return rows


def summary(rows):
    red = [r["red_cell"] for r in rows if r["red_cell"] is not None]
    by = {}
    for c in sorted({r["label"] for r in rows}):
        by[c] = float(np.median([r["white_cell"] for r in rows if r["label"] == c]))
    return {"red_cell_median": float(np.median(red)), "red_cell_iqr": np.percentile(red, [25, 75]).tolist(),
            "red_cell_found": len(red) / len(rows), "white_cell_median_by_class": by, "n": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pbc-images", type=int, default=200)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()

    from hemascope.adapt.fewshot import load_target
    from hemascope.classify import predict_arrays
    from hemascope.data.folder import read_class_folders
    from hemascope.data.splits import load_split
    from hemascope.io.image import read_image
    from hemascope.models.artifact import load_classifier
    from hemascope.segment.predict import load_segmenter
    from hemascope.taxonomy import vocabulary

    data = shared_data()
    seg = load_segmenter("default")
    clf = load_classifier(args.model)
    pbc = read_class_folders(data / "pbc" / "PBC_dataset_normal_DIB")
    test = sorted(load_split(REPO / "splits" / "pbc8_seed0.json").keys("test"))
    labels = {s.path: s.label for s in pbc.samples}
    pick = random.Random(0).sample(test, args.pbc_images)
    pbc_rows = measure([read_image(pbc.root / p) for p in pick], [labels[p] for p in pick], seg)
    target = load_target(data / "cellavision", clf)
    cv_images = [read_image(data / "cellavision" / k) for k in target.keys]  # full size
    cv_labels = [target.classes[i] for i in target.labels]
    cv_rows = measure(cv_images, cv_labels, seg)
    s_pbc, s_cv = summary(pbc_rows), summary(cv_rows)
    ratio = s_cv["red_cell_median"] / s_pbc["red_cell_median"]

    wbc5 = list(vocabulary("wbc5").classes)
    keep = [clf.classes.index(c) for c in wbc5]
    zooms = {"none": 1.0, f"red-cell ratio ({ratio:.2f})": ratio, "1.3": 1.3, "1.5": 1.5}
    runs = {}
    for name, f in zooms.items():
        p = predict_arrays(clf, [zoom_out(im, f) for im in cv_images])
        pred8 = [clf.classes[i] for i in p.argmax(1)]
        pred5 = [wbc5[i] for i in p[:, keep].argmax(1)]
        lym = [p8 for p8, y in zip(pred8, cv_labels) if y == "lymphocyte"]
        runs[name] = {"factor": f, "accuracy_8": float(np.mean([a == b for a, b in zip(pred8, cv_labels)])),
                      "accuracy_5": float(np.mean([a == b for a, b in zip(pred5, cv_labels)])),
                      "lymphocytes_as": dict(Counter(lym).most_common())}
    lines = ["| | PBC (test sample) | CellaVision | ratio |", "|---|---|---|---|",
             f"| red-cell diameter / frame (median) | {s_pbc['red_cell_median']:.3f} | "
             f"{s_cv['red_cell_median']:.3f} | {ratio:.2f} |",
             f"| images with >= 2 red cells found | {s_pbc['red_cell_found']:.2f} | "
             f"{s_cv['red_cell_found']:.2f} | |"]
    for c in wbc5:
        a, b = s_pbc["white_cell_median_by_class"].get(c), s_cv["white_cell_median_by_class"].get(c)
        if a and b:
            lines.append(f"| {c}: sqrt(cell area / frame) | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    lines += ["", "Shipped classifier on CellaVision zoomed out (no adaptation):", "",
              "| zoom-out | accuracy (8 classes) | accuracy (5 WBC types) | lymphocytes predicted as |",
              "|---|---|---|---|"]
    for name, r in runs.items():
        lym = ", ".join(f"{k} {v}" for k, v in r["lymphocytes_as"].items())
        lines.append(f"| {name} | {r['accuracy_8']:.3f} | {r['accuracy_5']:.3f} | {lym} |")
    payload = {"pbc": s_pbc, "cellavision": s_cv, "ratio": ratio, "zoom": runs,
               "model": str(clf.path), "machine": machine()}
    md = ("## Magnification PBC vs CellaVision, by the red-cell ruler\n\n" + "\n".join(lines))
    write_results("crosslab_scale", payload, md)


if __name__ == "__main__":
    main()
