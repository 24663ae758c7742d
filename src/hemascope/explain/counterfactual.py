"""Counterfactual retrieval: the nearest cells that differ in exactly one attribute.

"What would this cell look like with a segmented nucleus?" - answered with real cells: in
embedding space, the closest cells whose chosen attribute has another value while all
other attributes match (or, if none match fully, differ least).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Counterfactual:
    index: int
    distance: float
    value: str
    other_differences: int


def counterfactuals(query: int, embeddings: np.ndarray, attributes: Mapping[str, Sequence[str]],
                    attribute: str, *, k: int = 5, value: str | None = None) -> list[Counterfactual]:
    """Up to ``k`` nearest cells to ``query`` with a different ``attribute`` value.

    Candidates are ranked first by how many *other* attributes differ from the query (0 is a
    true one-attribute counterfactual), then by Euclidean distance of the embeddings.
    ``value`` restricts to one target value of the attribute.
    """
    emb = np.asarray(embeddings, float)
    if attribute not in attributes:
        raise KeyError(f"unknown attribute {attribute!r}; have {', '.join(attributes)}")
    cols = {a: np.asarray(v) for a, v in attributes.items()}
    target = cols[attribute]
    cand = target != target[query]
    if value is not None:
        cand &= target == value
    idx = np.flatnonzero(cand)
    if not len(idx):
        return []
    others = sum((cols[a][idx] != cols[a][query]).astype(int) for a in cols if a != attribute)
    others = np.asarray(others) if not np.isscalar(others) else np.zeros(len(idx), int)
    dist = np.linalg.norm(emb[idx] - emb[query], axis=1)
    order = np.lexsort((dist, others))[:k]
    return [Counterfactual(int(idx[i]), float(dist[i]), str(target[idx[i]]), int(others[i]))
            for i in order]
