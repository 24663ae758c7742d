"""Classification metrics as pure functions over label arrays (numpy in, named results out).

The JSON shape (``ClassificationReport.to_dict``) is the one every hemascope command
writes: ``accuracy``, ``balanced_accuracy``, ``macro_precision``, ``macro_recall``,
``macro_f1``, ``per_class``, ``confusion_matrix`` (row-normalised), ``classes``,
``n_images``, ``ci95`` (bootstrap, Efron 1979).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of one evaluation.

    Attributes:
        classes: class names; ``y_true``/``y_pred`` index into it.
        confusion: raw counts ``[true, predicted]``.
        ci95: ``{"accuracy": (lo, hi), "macro_f1": (lo, hi)}`` from the bootstrap.
    """

    classes: tuple[str, ...]
    accuracy: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion: np.ndarray
    n_images: int
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)

    def confusion_normalized(self) -> np.ndarray:
        rows = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, rows, out=np.zeros(self.confusion.shape), where=rows > 0)

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "per_class": {c: {"precision": s.precision, "recall": s.recall, "f1": s.f1,
                              "support": s.support} for c, s in self.per_class.items()},
            "confusion_matrix": np.round(self.confusion_normalized(), 6).tolist(),
            "classes": list(self.classes),
            "n_images": self.n_images,
            "ci95": {k: list(v) for k, v in self.ci95.items()},
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` of shape ``(n_classes, n_classes)``."""
    t, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def _scores(cm: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(float)
    pred = cm.sum(axis=0).astype(float)
    true = cm.sum(axis=1).astype(float)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def _macro(cm: np.ndarray) -> tuple[float, float, float, float, float]:
    present = cm.sum(axis=1) > 0  # classes absent from the truth do not enter macro means
    p, r, f = _scores(cm, present)
    n = cm.sum()
    acc = float(np.trace(cm) / n) if n else 0.0
    if not present.any():
        return acc, 0.0, 0.0, 0.0, 0.0
    return acc, float(r[present].mean()), float(p[present].mean()), float(r[present].mean()), \
        float(f[present].mean())


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str],
                          *, n_bootstrap: int = 1000, seed: int = 0) -> ClassificationReport:
    """Accuracy, balanced accuracy, macro and per-class P/R/F1, confusion, bootstrap CIs.

    Macro averages run over the classes present in ``y_true`` (a class the evaluation set
    lacks cannot be scored); per-class entries exist for every class.
    """
    k = len(classes)
    t, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    cm = confusion_matrix(t, p, k)
    acc, bal, mp, mr, mf = _macro(cm)
    prec, rec, f1 = _scores(cm, cm.sum(axis=1) > 0)
    support = cm.sum(axis=1)
    per_class = {c: ClassScores(float(prec[i]), float(rec[i]), float(f1[i]), int(support[i]))
                 for i, c in enumerate(classes)}
    ci = bootstrap_ci(t, p, k, n=n_bootstrap, seed=seed) if n_bootstrap and t.size else {}
    return ClassificationReport(tuple(classes), acc, bal, mp, mr, mf, per_class, cm, int(t.size), ci)


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *, n: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of accuracy and macro-F1 (resampling images)."""
    rng = np.random.default_rng(seed)
    m = len(y_true)
    accs, f1s = np.empty(n), np.empty(n)
    for i in range(n):
        idx = rng.integers(0, m, m)
        cm = confusion_matrix(y_true[idx], y_pred[idx], n_classes)
        accs[i], _, _, _, f1s[i] = _macro(cm)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {"accuracy": (float(np.percentile(accs, lo)), float(np.percentile(accs, hi))),
            "macro_f1": (float(np.percentile(f1s, lo)), float(np.percentile(f1s, hi)))}
