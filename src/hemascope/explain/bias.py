"""Bias discovery: where does a classifier err more, split by (predicted) morphology?

Given a classifier's correctness on a labelled set and an attribute value per image (e.g.
from the attribute model), the error rate is computed per value of every attribute and
the largest gaps between values are flagged (the WBCAtt paper's use of attributes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class BiasFinding:
    attribute: str
    worst_value: str
    best_value: str
    worst_error: float
    best_error: float
    gap: float
    support: dict[str, int]
    error_by_value: dict[str, float]


def error_rates_by_attribute(correct: Sequence[bool], attributes: Mapping[str, Sequence[str]], *,
                             min_support: int = 20, flag_gap: float = 0.05) -> list[BiasFinding]:
    """Error rate per attribute value; findings sorted by gap, largest first.

    Args:
        correct: per image, was the classifier right.
        attributes: ``{attribute: value per image}``.
        min_support: values with fewer images are not compared (too noisy).
        flag_gap: only gaps of at least this size are returned.
    """
    ok = np.asarray(correct, bool)
    out = []
    for name, values in attributes.items():
        vals = np.asarray(values)
        if len(vals) != len(ok):
            raise ValueError(f"attribute {name!r} has {len(vals)} values for {len(ok)} images")
        err, sup = {}, {}
        for v in np.unique(vals):
            m = vals == v
            sup[str(v)] = int(m.sum())
            if m.sum() >= min_support:
                err[str(v)] = float(1 - ok[m].mean())
        if len(err) < 2:
            continue
        worst = max(err, key=err.get)
        best = min(err, key=err.get)
        gap = err[worst] - err[best]
        if gap >= flag_gap:
            out.append(BiasFinding(name, worst, best, err[worst], err[best], gap, sup, err))
    return sorted(out, key=lambda f: -f.gap)
