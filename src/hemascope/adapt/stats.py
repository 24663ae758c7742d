"""Small statistics for comparing adaptation conditions (pure functions)."""

from __future__ import annotations

import itertools

import numpy as np


def wilcoxon_signed_rank(a, b) -> float:
    """Two-sided p-value of the paired Wilcoxon signed-rank test (Wilcoxon 1945).

    Exact (all sign patterns) for up to 20 non-zero differences, normal approximation
    beyond; zero differences are dropped (Wilcoxon's convention). Returns 1.0 when every
    pair is equal.
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.abs(d) > 1e-12]
    n = len(d)
    if n == 0:
        return 1.0
    ranks = _average_ranks(np.abs(d))
    w = ranks[d > 0].sum()
    total = ranks.sum()
    observed = min(w, total - w)
    if n <= 20:
        count = 0
        for signs in itertools.product((0, 1), repeat=n):
            s = float(np.dot(signs, ranks))
            if min(s, total - s) <= observed + 1e-9:
                count += 1
        return min(1.0, count / 2**n)
    mean = total / 2
    sd = np.sqrt((ranks**2).sum() / 4)
    z = (observed - mean) / sd
    from math import erf, sqrt

    return float(min(1.0, 2 * 0.5 * (1 + erf(z / sqrt(2)))))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):  # ties share their average rank
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks
