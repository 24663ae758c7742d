"""Scores of semantic segmentation: per-class IoU and F1 (Dice), mean IoU.

Pure functions over label arrays. A class enters the mean IoU when it occurs in the truth
or the prediction of the evaluated images (a class absent from both cannot be scored).
JSON keys: ``per_class`` (``{name: {"iou", "f1", "support"}}``), ``miou``,
``miou_foreground`` (without background), ``pixel_accuracy``, ``classes``, ``n_images``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def pixel_confusion(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` over the pixels of two same-shaped label arrays.

    Raises:
        ValueError: shapes differ, or labels outside ``0..n_classes-1``.
    """
    t, p = np.asarray(truth, np.int64).ravel(), np.asarray(pred, np.int64).ravel()
    if np.shape(truth) != np.shape(pred):
        raise ValueError(f"truth {np.shape(truth)} and prediction {np.shape(pred)} differ in shape")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class SegmentationReport:
    classes: tuple[str, ...]
    confusion: np.ndarray
    n_images: int

    def _scores(self):
        cm = self.confusion.astype(float)
        tp = np.diag(cm)
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
        union = tp + fp + fn
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
        f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=union > 0)
        return iou, f1, union > 0

    @property
    def per_class(self) -> dict[str, dict[str, float]]:
        iou, f1, scored = self._scores()
        support = self.confusion.sum(1)
        return {c: {"iou": float(iou[i]), "f1": float(f1[i]), "support": int(support[i])}
                for i, c in enumerate(self.classes) if scored[i]}

    @property
    def miou(self) -> float:
        iou, _, scored = self._scores()
        return float(iou[scored].mean()) if scored.any() else 0.0

    @property
    def miou_foreground(self) -> float:
        iou, _, scored = self._scores()
        keep = scored.copy()
        keep[0] = False
        return float(iou[keep].mean()) if keep.any() else 0.0

    def to_dict(self) -> dict:
        n = self.confusion.sum()
        return {"per_class": self.per_class, "miou": self.miou,
                "miou_foreground": self.miou_foreground,
                "pixel_accuracy": float(np.trace(self.confusion) / n) if n else 0.0,
                "classes": list(self.classes), "n_images": self.n_images}


def segmentation_report(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                        classes: Sequence[str]) -> SegmentationReport:
    """Pool the pixels of every image pair (index 0 is background) into one report."""
    if len(truths) != len(preds):
        raise ValueError(f"{len(truths)} truths but {len(preds)} predictions")
    k = len(classes)
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(truths, preds):
        cm += pixel_confusion(t, p, k)
    return SegmentationReport(tuple(classes), cm, len(truths))
