"""Box-edge offsets: a detector's boxes moved onto one lab's annotation style.

Annotators differ in how tightly they draw a box (a white cell with or without its faint
cytoplasm edge), and a detector carries the habits of its training boxes. Matched to the
boxes of a labelled set (IoU >= 0.5, one truth per prediction, most confident first), each
class's predicted edges are off the truth by a typical fraction of the box: the median of
``(truth x0 - predicted x0) / predicted width`` and likewise for y0 (height), x1 and y1.
Those four medians per class are the offsets; applying them moves every edge of that class
by its fraction of the box. A class with fewer than ``min_matches`` matches keeps its
boxes. By default (``keep="significant"``) an edge moves only when the bootstrap 95 %
interval of its median excludes zero, so that a few fields of the detector's own style do
not move boxes by noise; ``keep="all"`` moves every edge by its median. Pure numpy; the
offsets live in the detector's config (``box_offsets``) and are applied after mirror views
are flipped back (:func:`hemascope.detect.tta.detect_views`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hemascope.detect.ensemble import Detections, iou_matrix

#: Defaults of :func:`fit_box_offsets`.
MATCH_IOU, MIN_SCORE, MIN_MATCHES = 0.5, 0.3, 20
#: Which edges :func:`fit_box_offsets` moves: those whose median is significant, or all.
KEEP = ("significant", "all")
BOOTSTRAP = 1000


def edge_residuals(pred: Detections, truth_boxes: np.ndarray, truth_labels: np.ndarray,
                   label: int, *, match_iou: float = MATCH_IOU,
                   min_score: float = MIN_SCORE) -> np.ndarray:
    """``(M, 4)`` edge residuals (truth minus prediction, in units of the predicted box's
    width or height) of the predictions of one ``label`` (scored at least ``min_score``)
    matched greedily to that label's truth boxes."""
    keep = (np.asarray(pred.labels) == label) & (np.asarray(pred.scores) >= min_score)
    boxes = np.asarray(pred.boxes, float).reshape(-1, 4)[keep]
    scores = np.asarray(pred.scores, float)[keep]
    truth = np.asarray(truth_boxes, float).reshape(-1, 4)[np.asarray(truth_labels) == label]
    if not len(boxes) or not len(truth):
        return np.zeros((0, 4))
    ious = iou_matrix(boxes, truth)
    used, out = set(), []
    for i in np.argsort(-scores, kind="stable"):
        j = int(np.argmax(ious[i]))
        if ious[i, j] < match_iou or j in used:
            continue
        used.add(j)
        w, h = boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]
        if w <= 0 or h <= 0:
            continue
        out.append((truth[j] - boxes[i]) / np.array([w, h, w, h]))
    return np.array(out).reshape(-1, 4)


def median_interval(r: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap 95 % interval ``(low, high)`` of the column medians of ``r`` ``(M, K)``."""
    rng = np.random.default_rng(seed)
    meds = np.median(r[rng.integers(0, len(r), (n_boot, len(r)))], axis=1)
    return np.quantile(meds, 0.025, axis=0), np.quantile(meds, 0.975, axis=0)


def fit_box_offsets(preds: Sequence[Detections], truths: Sequence[tuple[np.ndarray, np.ndarray]],
                    classes: Sequence[str], *, match_iou: float = MATCH_IOU,
                    min_score: float = MIN_SCORE, min_matches: int = MIN_MATCHES,
                    keep: str = "significant") -> dict:
    """Per class name, ``{"offsets": [dx0, dy0, dx1, dy1], "matches": n, "interval": [[low
    x4], [high x4]]}`` from predictions and their images' truth ``(boxes, labels)`` (labels
    ``1..C`` as the detector's); classes with fewer than ``min_matches`` matches are left
    out. With ``keep="significant"`` an edge whose interval holds zero gets offset 0.

    Raises:
        ValueError: predictions and truths of different lengths, or an unknown ``keep``.
    """
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions but {len(truths)} annotated images")
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, not {keep!r}")
    out = {}
    for k, name in enumerate(classes, start=1):
        res = [edge_residuals(p, b, lab, k, match_iou=match_iou, min_score=min_score)
               for p, (b, lab) in zip(preds, truths)]
        r = np.concatenate(res) if res else np.zeros((0, 4))
        if len(r) >= min_matches:
            med = np.median(r, axis=0)
            low, high = median_interval(r)
            if keep == "significant":
                med = np.where((low > 0) | (high < 0), med, 0.0)
            out[name] = {"offsets": [round(float(v), 4) for v in med], "matches": int(len(r)),
                         "interval": [[round(float(v), 4) for v in low],
                                      [round(float(v), 4) for v in high]]}
    return out


def apply_box_offsets(d: Detections, offsets: Mapping[str, Mapping], classes: Sequence[str],
                      height: int, width: int) -> Detections:
    """``d`` with each box of a class in ``offsets`` moved edge by edge (fractions of its
    own width / height), clipped to the image; a box the offsets would turn inside out keeps
    its edges. Pure."""
    if not len(d) or not offsets:
        return d
    table = np.zeros((len(classes) + 1, 4))
    for k, name in enumerate(classes, start=1):
        if name in offsets:
            table[k] = offsets[name]["offsets"]
    boxes = np.asarray(d.boxes, float).reshape(-1, 4)
    labels = np.asarray(d.labels, np.int64)
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    moved = boxes + table[np.clip(labels, 0, len(classes))] * wh
    moved[:, [0, 2]] = moved[:, [0, 2]].clip(0, width)
    moved[:, [1, 3]] = moved[:, [1, 3]].clip(0, height)
    bad = (moved[:, 2] <= moved[:, 0]) | (moved[:, 3] <= moved[:, 1])
    moved[bad] = boxes[bad]
    return Detections(moved, d.scores, d.labels)


def calibrate_detector(det, ds, *, split: str | None = None, scale="auto", balance: bool = True,
                       min_matches: int = MIN_MATCHES, keep: str = "significant") -> dict:
    """Fit box-edge offsets of a loaded detector on an annotated set (or one split of it):
    its boxes as inference makes them (1 view; offsets it already has ignored) against the
    set's. Returns ``{"offsets", "n_images", "matches"}``.

    Raises:
        DatasetError: the split is absent, the set empty, or its labels map to none of the
            detector's classes (:func:`hemascope.evaluate.detector.load_fields`).
    """
    from hemascope.evaluate.detector import evaluate_detector, load_fields

    fields = load_fields(ds, det.classes, split=split)
    ev = evaluate_detector([det], ds, fields=fields, scale=scale, balance=balance,
                           box_offsets=False)
    offsets = fit_box_offsets(ev.predictions, [(f.boxes, f.labels) for f in fields.fields],
                              det.classes, min_matches=min_matches, keep=keep)
    return {"offsets": offsets, "n_images": len(fields.fields)}


def check_calibrated_out(det, out) -> None:
    """Refuse to write a calibrated copy over the detector's own folder (before any work).

    Raises:
        HemascopeError: ``out`` is ``det.path``.
    """
    from hemascope.models.artifact import refuse_own_folder

    refuse_own_folder(det.path, out, "detector")


def write_calibrated(det, offsets: dict, out, *, source: str) -> Path:
    """A copy of the detector folder ``det.path`` at ``out`` whose config carries ``offsets``
    (``box_offsets``) and where they came from (``box_offsets_source``).

    Raises:
        HemascopeError: ``out`` is the detector's own folder.
    """
    from hemascope.models.artifact import copy_with_config

    return copy_with_config(det.path, out, {"box_offsets": offsets, "box_offsets_source": source},
                            what="detector")
