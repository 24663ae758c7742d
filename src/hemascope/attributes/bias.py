"""Per-value decision offsets for attribute heads, fitted for macro-F1 on labelled cells.

A head trained with cross-entropy picks the value of highest probability, which favours
common values; WBCAtt is scored by macro-F1, which weighs every value alike. Adding a
small offset to each value's log-probability moves the decision boundaries without
retraining. Two ways to choose the offsets, both fitted on labelled cells the model did
not train on (its validation split, or a lab's own labelled cells):

- ``prior``: logit adjustment (Menon et al., ICLR 2021): offset = -tau * log(prior of the
  value in the training table), one ``tau`` per attribute from a grid;
- ``bias``: one free offset per value, by coordinate ascent on macro-F1 over a grid
  (the first value's offset stays 0; only differences matter).

All functions are pure; ``apply_value_bias`` is what prediction uses.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

METHODS = ("prior", "bias")
BIAS_GRID = np.round(np.arange(-2.0, 2.0001, 0.1), 2)
TAU_GRID = np.round(np.arange(0.0, 1.5001, 0.1), 2)


def macro_f1(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 over the values present in ``truth`` (the WBCAtt protocol's definition)."""
    cm = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k).astype(float)
    tp, n_pred, n_true = np.diag(cm), cm.sum(0), cm.sum(1)
    prec = np.divide(tp, n_pred, out=np.zeros(k), where=n_pred > 0)
    rec = np.divide(tp, n_true, out=np.zeros(k), where=n_true > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=prec + rec > 0)
    return float(f1[n_true > 0].mean()) if (n_true > 0).any() else 0.0


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def apply_value_bias(probs: np.ndarray, bias) -> np.ndarray:
    """``(N, k)`` probabilities with ``log p + bias`` renormalised (``bias`` None: unchanged)."""
    probs = np.asarray(probs)
    if bias is None or len(probs) == 0:
        return probs
    bias = np.asarray(bias, dtype=np.float64)
    if bias.shape != probs.shape[1:]:
        raise ValueError(f"{bias.shape[0] if bias.ndim else 0} offsets for {probs.shape[1]} values")
    z = _log(probs) + bias
    z = np.exp(z - z.max(1, keepdims=True))
    return (z / z.sum(1, keepdims=True)).astype(probs.dtype)


def _check(probs: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, truth = np.asarray(probs), np.asarray(truth, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(truth):
        raise ValueError(f"{len(probs)} probability rows for {len(truth)} labels")
    keep = truth >= 0  # -1: the cell's value is unknown
    if (truth[keep] >= probs.shape[1]).any():
        raise ValueError(f"a label outside the {probs.shape[1]} values")
    return _log(probs[keep]), truth[keep]


def fit_value_bias(probs: np.ndarray, truth: np.ndarray, *, grid=BIAS_GRID,
                   sweeps: int = 3) -> np.ndarray:
    """Free per-value offsets that maximise macro-F1 of ``argmax(log p + b)`` on these cells.

    Coordinate ascent over ``grid`` (the first value stays at 0); a move is taken only when it
    raises macro-F1, and among equal scores the offset nearest 0 wins, so values the cells
    cannot tell apart keep their trained boundary. ``truth`` holds value indices, -1 for
    unknown.
    """
    logp, t = _check(probs, truth)
    k = logp.shape[1]
    bias = np.zeros(k)
    if len(t) == 0 or k < 2:
        return bias
    best = macro_f1(t, logp.argmax(1), k)
    order = np.argsort(np.abs(grid), kind="stable")
    for _ in range(sweeps):
        moved = False
        for j in range(1, k):
            cur = bias[j]
            for g in np.asarray(grid)[order]:
                if g == cur:
                    continue
                bias[j] = g
                s = macro_f1(t, (logp + bias).argmax(1), k)
                if s > best + 1e-12 or (s >= best - 1e-12 and abs(g) < abs(cur)):
                    best, cur, moved = max(s, best), g, True
            bias[j] = cur
        if not moved:
            break
    return bias


def fit_prior_tau(probs: np.ndarray, truth: np.ndarray, log_prior, *, grid=TAU_GRID) -> float:
    """The ``tau`` of logit adjustment (offset ``-tau * log_prior``) with the best macro-F1;
    the smallest such ``tau`` on ties."""
    logp, t = _check(probs, truth)
    log_prior = np.asarray(log_prior, dtype=np.float64)
    k = logp.shape[1]
    best_tau, best = 0.0, -1.0
    for tau in grid:
        s = macro_f1(t, (logp - tau * log_prior).argmax(1), k) if len(t) else 0.0
        if s > best + 1e-12:
            best_tau, best = float(tau), s
    return best_tau


def log_prior_from_counts(counts) -> np.ndarray:
    """Log frequencies of the values in the training table (add-one smoothed)."""
    c = np.asarray(counts, dtype=np.float64) + 1.0
    return np.log(c / c.sum())


def fit_offsets(method: str, probs: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray],
                counts: Mapping[str, np.ndarray] | None = None) -> dict[str, list[float]]:
    """Offsets for every attribute in ``truth`` by ``method`` (``prior`` needs the training
    table's value ``counts``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    out = {}
    for name, t in truth.items():
        if method == "bias":
            out[name] = fit_value_bias(probs[name], t)
        else:
            if counts is None or name not in counts:
                raise ValueError(f"the prior method needs the training counts of {name!r}")
            lp = log_prior_from_counts(counts[name])
            out[name] = -fit_prior_tau(probs[name], t, lp) * lp
    return {k: [round(float(x), 4) for x in v] for k, v in out.items()}
