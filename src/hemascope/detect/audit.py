"""Which boxes of an annotated smear set look wrong: a detector's confident disagreements.

The label audit of single cells (:mod:`hemascope.adapt.audit`) carried over to boxes. A
detector that never trained on the fields scores them, and a score at or above its class's
threshold is *confident*. The thresholds are the detector's own counting thresholds (its
config's ``count_thresholds``, chosen on validation fields to count cells) by default, or,
as in confident learning, the mean score the detector gives the annotated cells of each
class (the best same-class detection overlapping each annotated box by IoU >= 0.5, 0
where none does: :func:`score_thresholds`). Three kinds of issue:

- ``missing``: a confident detection that overlaps no annotated box of any class (IoU <
  0.3): a cell nobody boxed. Suggested class: the detection's.
- ``class``: an annotated box whose overlapping confident detections (IoU >= 0.5) include
  another class scored higher than any of its own class. Suggested class: that one.
- ``unmatched``: an annotated box that no detection of any class even touches (IoU >= 0.3;
  by default any detection the model outputs counts, ``absent``): a box on no cell, or
  far from the cell it meant.

``benchmarks/audit_boxes.py`` chose these defaults on CBC's val split: the mean-score
thresholds for every kind flagged half of the real red cells as ``unmatched``, because the
detector scores half of them below their mean. Ground truth and detections use labels
``1..C`` (index into the detector's classes + 1). Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hemascope.detect.ensemble import Detections, iou_matrix

KINDS = ("missing", "class", "unmatched")
MATCH_IOU, TOUCH_IOU = 0.5, 0.3
#: Defaults of ``hemascope audit --what boxes`` (``benchmarks/results/audit_boxes.md``):
#: mirror views per field, where the thresholds come from, and the bar below which a
#: touching detection does not count for ``unmatched`` (the detectors' own output floor).
DEFAULT_VIEWS, DEFAULT_THRESHOLDS, DEFAULT_ABSENT = 1, "count", 0.05
THRESHOLDS = ("count", "mean")


def detector_thresholds(config: dict, classes: Sequence[str], how: str = DEFAULT_THRESHOLDS
                        ) -> np.ndarray | None:
    """The thresholds array (index = label) from a detector's ``count_thresholds`` with
    ``how="count"``, or None (:func:`score_thresholds` on the fields) with ``"mean"`` or
    when the config has none."""
    if how not in THRESHOLDS:
        raise ValueError(f"thresholds must be one of {THRESHOLDS} (got {how!r})")
    table = config.get("count_thresholds") or {}
    if how == "mean" or not all(c in table for c in classes):
        return None
    return np.array([1.0] + [float(table[c]) for c in classes])


@dataclass(frozen=True)
class BoxIssue:
    """One suspect box: ``field`` index, ``kind`` (one of :data:`KINDS`), the annotated
    ``label`` (0 for a missing box), the ``suggested`` label (0 for an unmatched box), the
    box (xyxy; the detection's for a missing box) and the detector's ``score`` for the
    suggestion (for an unmatched box: the best score of any class touching it)."""

    field: int
    kind: str
    label: int
    suggested: int
    box: tuple[float, float, float, float]
    score: float


def _best_scores(pred: Detections, ious: np.ndarray, n_classes: int, iou: float) -> np.ndarray:
    """``(n truth boxes, n_classes + 1)``: per annotated box and class, the best score of that
    class's detections overlapping it by at least ``iou`` (0 if none); column 0 unused.
    ``ious``: ``(n truth boxes, len(pred))``."""
    out = np.zeros((len(ious), n_classes + 1))
    if not len(pred) or not len(ious):
        return out
    labels = np.asarray(pred.labels, np.int64)
    scores = np.asarray(pred.scores, float)
    for k in range(1, n_classes + 1):
        of_k = labels == k
        if of_k.any():
            s = np.where(ious[:, of_k] >= iou, scores[of_k][None, :], 0.0)
            out[:, k] = s.max(1)
    return out


def score_thresholds(preds: Sequence[Detections],
                     truths: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int, *,
                     match_iou: float = MATCH_IOU) -> np.ndarray:
    """``(n_classes + 1,)``: per class (index = label), the mean best same-class score over
    its annotated boxes (1.0 for a class with no box: never confident)."""
    total, count = np.zeros(n_classes + 1), np.zeros(n_classes + 1)
    for pred, (boxes, labels) in zip(preds, truths):
        labels = np.asarray(labels, np.int64)
        ious = iou_matrix(np.asarray(boxes, float).reshape(-1, 4), pred.boxes)
        best = _best_scores(pred, ious, n_classes, match_iou)
        np.add.at(total, labels, best[np.arange(len(labels)), labels])
        np.add.at(count, labels, 1)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0)


def find_box_issues(preds: Sequence[Detections], truths: Sequence[tuple[np.ndarray, np.ndarray]],
                    n_classes: int, *, match_iou: float = MATCH_IOU, touch_iou: float = TOUCH_IOU,
                    thresholds: np.ndarray | None = None, absent: float | None = None
                    ) -> tuple[list[BoxIssue], np.ndarray]:
    """The issues of every field (see the module docstring) and the class thresholds used
    (``(n_classes + 1,)``, index = label; computed from these fields unless given).

    ``absent``: an annotated box is ``unmatched`` when no detection scored at least this
    touches it (None: at least its class's threshold, as the module docstring says)."""
    if len(preds) != len(truths):
        raise ValueError("one prediction per annotated field is needed")
    t = score_thresholds(preds, truths, n_classes, match_iou=match_iou) if thresholds is None \
        else np.asarray(thresholds, float)
    issues: list[BoxIssue] = []
    for f, (pred, (boxes, labels)) in enumerate(zip(preds, truths)):
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        labels = np.asarray(labels, np.int64)
        pl = np.asarray(pred.labels, np.int64)
        ps = np.asarray(pred.scores, float)
        pb = np.asarray(pred.boxes, float).reshape(-1, 4)
        sure = ps >= t[np.clip(pl, 0, n_classes)] - 1e-12
        # missing: confident detections touching no annotated box
        ious = iou_matrix(boxes, pb)  # (boxes, detections), once per field
        touching = (ious.max(0) if len(boxes) else np.zeros(len(pb))) >= touch_iou
        for i in np.flatnonzero(sure & ~touching):
            issues.append(BoxIssue(f, "missing", 0, int(pl[i]), tuple(map(float, pb[i])), float(ps[i])))
        if not len(boxes):
            continue
        close = _best_scores(pred, ious, n_classes, match_iou)
        near = _best_scores(pred, ious, n_classes, touch_iou)
        for j, c in enumerate(labels):
            confident = close[j] >= t - 1e-12
            confident[0] = False
            if confident.any():
                k = int(np.argmax(np.where(confident, close[j], -1.0)))
                if k != c:
                    issues.append(BoxIssue(f, "class", int(c), k, tuple(map(float, boxes[j])),
                                           float(close[j, k])))
                continue
            bar = t[1:] if absent is None else np.full(n_classes, absent)
            touched = near[j, 1:] >= bar - 1e-12
            if not touched.any():
                issues.append(BoxIssue(f, "unmatched", int(c), 0, tuple(map(float, boxes[j])),
                                       float(near[j, 1:].max())))
    return issues, t
