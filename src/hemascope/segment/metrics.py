"""Scores of semantic segmentation: per-class IoU and F1 (Dice), mean IoU.

Pure functions over label arrays. A class enters the mean IoU when it occurs in the truth
or the prediction of the evaluated images (a class absent from both cannot be scored).
JSON keys: ``per_class`` (``{name: {"iou", "f1", "support"}}``), ``miou``,
``miou_foreground`` (without background), ``pixel_accuracy``, ``classes``, ``n_images``,
``merged``.

Masks in the CellaVision convention cannot hold vacuoles, platelets or red cells: a
predicted part that no truth mask of the set holds is scored as what such masks call it
(:data:`hemascope.io.masks.COARSE_PARTS`: a vacuole as cytoplasm, platelets and red cells as
background); ``merged`` names the parts so counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    merged: dict[str, str] = field(default_factory=dict)

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
                "classes": list(self.classes), "n_images": self.n_images,
                "merged": dict(self.merged)}


def coarse_map(truths: Sequence[np.ndarray], classes: Sequence[str]) -> dict[str, str]:
    """The finer parts (:data:`~hemascope.io.masks.COARSE_PARTS`) among ``classes`` that no
    truth mask holds, each with the class such masks call it."""
    from hemascope.io.masks import COARSE_PARTS

    names = list(classes)
    held = set()
    for t in truths:
        held.update(int(v) for v in np.unique(t))
    return {p: c for p, c in COARSE_PARTS.items()
            if p in names and c in names and names.index(p) not in held}


def segmentation_report(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                        classes: Sequence[str], *, coarsen: bool = True) -> SegmentationReport:
    """Pool the pixels of every image pair (index 0 is background) into one report; with
    ``coarsen`` a predicted part that no truth holds counts as its coarse class
    (:func:`coarse_map`)."""
    if len(truths) != len(preds):
        raise ValueError(f"{len(truths)} truths but {len(preds)} predictions")
    k = len(classes)
    merged = coarse_map(truths, classes) if coarsen else {}
    lut = np.arange(max(k, 256), dtype=np.int64)
    for p, c in merged.items():
        lut[list(classes).index(p)] = list(classes).index(c)
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(truths, preds):
        p = np.asarray(p)
        cm += pixel_confusion(t, lut[p] if merged and p.dtype.kind in "ui" else p, k)
    return SegmentationReport(tuple(classes), cm, len(truths), merged)
