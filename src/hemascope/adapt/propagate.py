"""Label propagation: spread a few labels over the embedding graph of a lab's cells.

Few-shot adaptation sees a handful of labelled cells and many unlabelled ones. Cells of one
type lie close together in the adapted model's embedding even where its head is unsure, so
the labels are spread along a k-nearest-neighbour graph of all the lab's cells (Zhou et
al., "Learning with local and global consistency", NIPS 2003; the kNN graph with
``similarity ** power`` weights and the conjugate-gradient solve follow Iscen et al.,
"Label propagation for deep semi-supervised learning", CVPR 2019):

    F = (I - alpha * D^-1/2 W D^-1/2)^-1 Y

where ``W`` is the symmetric kNN affinity and ``Y`` holds the one-hot labels of the
labelled cells (zero rows elsewhere). :func:`transductive_probs` averages the propagated
class distribution with the model's own softmax, so a cell far from every labelled one
still gets the head's opinion. Pure numpy; memory grows with ``n * k``, not ``n ** 2``.
"""

from __future__ import annotations

import numpy as np


def knn_graph(emb: np.ndarray, *, k: int = 10, power: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of each row by cosine similarity, and edge weights
    ``max(cos, 0) ** power``: arrays ``(n, k)`` of indices and weights (self excluded).
    Similarities are computed in blocks of at most ~2**24 entries (128 MiB)."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or len(emb) < 2:
        raise ValueError("knn_graph needs a (n, d) array with n >= 2")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings hold NaN or infinite values")
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    n, k = len(x), min(k, len(x) - 1)
    chunk = max(1, min(n, 2**24 // n))
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k))
    for a in range(0, n, chunk):
        s = x[a:a + chunk] @ x.T
        s[np.arange(len(s)), np.arange(a, a + len(s))] = -np.inf  # no self-loops
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        idx[a:a + chunk] = top
        sim[a:a + chunk] = np.take_along_axis(s, top, axis=1)
    return idx, np.maximum(sim, 0.0) ** power


def label_propagation(emb: np.ndarray, labelled: np.ndarray, labels: np.ndarray, n_classes: int, *,
                      k: int = 10, alpha: float = 0.99, power: float = 3.0,
                      tol: float = 1e-6, max_iter: int = 200) -> np.ndarray:
    """Class scores ``(n, n_classes)`` for every row of ``emb``, rows summing to 1.

    Args:
        emb: embeddings of all cells, labelled and unlabelled.
        labelled: indices (or a boolean mask) of the labelled rows.
        labels: their class indices.
        n_classes: number of classes.
        k, alpha, power: graph size, propagation strength (0-1) and edge sharpening.

    A cell the graph does not reach gets a uniform row.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie strictly between 0 and 1")
    labelled = np.asarray(labelled)
    if labelled.dtype == bool:
        labelled = np.flatnonzero(labelled)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labelled) != len(labels) or len(labels) == 0:
        raise ValueError("label_propagation needs one label per labelled row, and at least one")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    idx, w = knn_graph(emb, k=k, power=power)
    n = len(idx)
    rows = np.repeat(np.arange(n), idx.shape[1])
    # symmetric W = A + A^T as an edge list; matvec by np.add.at
    src = np.concatenate([rows, idx.ravel()])
    dst = np.concatenate([idx.ravel(), rows])
    wt = np.concatenate([w.ravel(), w.ravel()])
    deg = np.zeros(n)
    np.add.at(deg, src, wt)
    deg[deg == 0] = 1.0
    norm = wt / np.sqrt(deg[src] * deg[dst])

    def apply(f: np.ndarray) -> np.ndarray:  # (I - alpha S) f
        sf = np.zeros_like(f)
        np.add.at(sf, src, norm[:, None] * f[dst])
        return f - alpha * sf

    y = np.zeros((n, n_classes))
    y[labelled, labels] = 1.0
    f = _conjugate_gradient(apply, y, tol=tol, max_iter=max_iter)
    f = np.maximum(f, 0.0)
    total = f.sum(1, keepdims=True)
    return np.where(total > 0, f / np.where(total > 0, total, 1.0), 1.0 / n_classes)


def transductive_probs(probs: np.ndarray, emb: np.ndarray, labelled: np.ndarray, labels: np.ndarray,
                       **kwargs) -> np.ndarray:
    """The mean of the model's ``probs`` and label propagation from ``(labelled, labels)``
    over ``emb``; rows sum to 1. ``kwargs`` go to :func:`label_propagation`."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(emb):
        raise ValueError("probs must be (n, n_classes) with one row per embedding")
    spread = label_propagation(emb, labelled, labels, probs.shape[1], **kwargs)
    return (probs + spread) / 2.0


def _conjugate_gradient(apply, b: np.ndarray, *, tol: float, max_iter: int) -> np.ndarray:
    """Solve ``apply(x) = b`` for a symmetric positive-definite operator, each column of
    ``b`` on its own (column-wise step sizes)."""
    x = np.zeros_like(b)
    r = b - apply(x)
    p = r.copy()
    rs = (r * r).sum(0)
    scale = np.maximum(np.sqrt((b * b).sum(0)), 1e-30)
    for _ in range(max_iter):
        if np.all(np.sqrt(rs) <= tol * scale):
            break
        ap = apply(p)
        step = rs / np.maximum((p * ap).sum(0), 1e-30)
        x += step * p
        r -= step * ap
        new = (r * r).sum(0)
        p = r + (new / np.maximum(rs, 1e-30)) * p
        rs = new
    return x
