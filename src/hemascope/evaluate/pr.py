"""Precision-recall curves and average precision, one class against the rest (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PRCurve:
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float


def pr_curve(scores: np.ndarray, positive: np.ndarray) -> PRCurve:
    """Curve over every distinct score; AP = sum of precision x recall steps (no interpolation)."""
    s = np.asarray(scores, float)
    pos = np.asarray(positive, bool)
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    tp = np.cumsum(pos)
    fp = np.cumsum(~pos)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp, fp, thr = tp[last], fp[last], s[last]
    n_pos = pos.sum()
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / n_pos if n_pos else np.zeros_like(tp, float)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if n_pos else 0.0
    return PRCurve(precision, recall, thr, ap)


def per_class_pr(probs: np.ndarray, y: np.ndarray, classes) -> dict[str, PRCurve]:
    return {c: pr_curve(probs[:, i], np.asarray(y) == i) for i, c in enumerate(classes)}
