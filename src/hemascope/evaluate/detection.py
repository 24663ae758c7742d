"""COCO-style detection metrics (pycocotools), counting error and PR curves.

:func:`detection_report` takes ground truth and predictions as plain arrays per image
(``boxes`` xyxy in pixels, integer ``labels`` ``1..C``, ``scores``) and returns a
:class:`DetectionReport` whose ``to_dict()`` has the keys ``map50_95``, ``map50``, ``map75``,
``mar100``, ``mar300``, ``per_class`` (AP, AP50, AR by class name), ``count_mae`` (mean
absolute count error per image by class), ``pr_curves`` (IoU 0.5 / 0.75 / 0.9) and
``n_images``. The COCO evaluation keeps up to ``max_dets`` (300) boxes per image: smear
fields hold far more than COCO's usual 100 objects.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from hemascope.detect.ensemble import Detections


@dataclass(frozen=True)
class GroundTruth:
    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class DetectionReport:
    map50_95: float
    map50: float
    map75: float
    mar100: float
    mar300: float
    per_class: dict[str, dict[str, float]]
    count_mae: dict[str, float]
    count_thresholds: dict[str, float]
    pr_curves: dict[str, dict[str, list[float]]]
    n_images: int
    n_objects: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def detection_report(gts: Sequence[GroundTruth], preds: Sequence[Detections],
                     classes: Sequence[str], *, max_dets: int = 300,
                     count_thresholds: Mapping[str, float] | None = None) -> DetectionReport:
    """COCO metrics of ``preds`` against ``gts`` (one entry per image, same order).

    Args:
        count_thresholds: per class, the score from which a box counts as a cell when
            counting (default 0.5); see :func:`best_count_thresholds`.
    """
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} predictions")
    ev = _coco_eval(gts, preds, len(classes), max_dets)
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    rec = ev.eval["recall"]  # [T, K, A, M]
    iou = ev.params.iouThrs
    m_last, m_100 = len(ev.params.maxDets) - 1, list(ev.params.maxDets).index(100)

    def mean(x: np.ndarray) -> float:
        x = x[x > -1]
        return float(x.mean()) if x.size else float("nan")

    t50, t75 = int(np.argmin(abs(iou - 0.5))), int(np.argmin(abs(iou - 0.75)))
    per_class: dict[str, dict[str, float]] = {}
    n_objects = {c: int(sum((g.labels == k + 1).sum() for g in gts)) for k, c in enumerate(classes)}
    for k, c in enumerate(classes):
        per_class[c] = {"ap": mean(prec[:, :, k, 0, m_last]), "ap50": mean(prec[t50, :, k, 0, m_last]),
                        "ap75": mean(prec[t75, :, k, 0, m_last]), "ar": mean(rec[:, k, 0, m_last])}
    thr = {c: float((count_thresholds or {}).get(c, 0.5)) for c in classes}
    curves = {}
    for t in (0.5, 0.75, 0.9):
        ti = int(np.argmin(abs(iou - t)))
        curves[f"{t:g}"] = {c: [round(float(max(v, 0.0)), 4) for v in prec[ti, :, k, 0, m_last]]
                            for k, c in enumerate(classes)}
    curves["recall"] = {"points": [round(float(r), 2) for r in ev.params.recThrs]}
    return DetectionReport(
        map50_95=mean(prec[:, :, :, 0, m_last]), map50=mean(prec[t50, :, :, 0, m_last]),
        map75=mean(prec[t75, :, :, 0, m_last]), mar100=mean(rec[:, :, 0, m_100]),
        mar300=mean(rec[:, :, 0, m_last]), per_class=per_class,
        count_mae=count_errors(gts, preds, classes, thr), count_thresholds=thr,
        pr_curves=curves, n_images=len(gts), n_objects=n_objects)


def count_errors(gts: Sequence[GroundTruth], preds: Sequence[Detections],
                 classes: Sequence[str], thresholds: Mapping[str, float]) -> dict[str, float]:
    """Mean absolute error of the per-image count of each class."""
    out = {}
    for k, c in enumerate(classes):
        err = [abs(int((g.labels == k + 1).sum()) -
                   int(((p.labels == k + 1) & (p.scores >= thresholds[c])).sum()))
               for g, p in zip(gts, preds)]
        out[c] = float(np.mean(err)) if err else float("nan")
    return out


def best_count_thresholds(gts: Sequence[GroundTruth], preds: Sequence[Detections],
                          classes: Sequence[str], *, grid: Sequence[float] | None = None
                          ) -> dict[str, float]:
    """Per class, the score threshold with the smallest count error (pick it on validation)."""
    grid = list(grid if grid is not None else np.round(np.arange(0.1, 0.91, 0.05), 2))
    best = {}
    for c in classes:
        errs = [count_errors(gts, preds, classes, dict.fromkeys(classes, t))[c] for t in grid]
        best[c] = float(grid[int(np.argmin(errs))])
    return best


def _coco_eval(gts: Sequence[GroundTruth], preds: Sequence[Detections], n_classes: int,
               max_dets: int):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (g, p) in enumerate(zip(gts, preds)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for b, lab in zip(np.asarray(g.boxes, float).reshape(-1, 4), g.labels):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab),
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s, lab in zip(np.asarray(p.boxes, float).reshape(-1, 4), p.scores, p.labels):
            dets.append({"image_id": i + 1, "category_id": int(lab), "score": float(s),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": k + 1, "name": str(k + 1)} for k in range(n_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        if not dets:  # pycocotools cannot load an empty result list
            dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = sorted({1, 10, 100, int(max_dets)})
        ev.params.catIds = list(range(1, n_classes + 1))
        ev.evaluate()
        ev.accumulate()
    return ev
