"""Which cells a lab should label first: the most typical cell of each cluster.

With a budget of a handful of labels, the cells worth labelling are the ones that stand
for many others, not the ones the model is least sure of (Hacohen, Dekel & Weinshall,
"Active learning on a budget", ICML 2022: TypiClust). The lab's images are embedded by the
base model, with batch-norm statistics re-estimated on them (AdaBN); k-means splits the
embeddings into as many clusters as there are labels to spend, and each cluster offers its
most typical member: the one whose 20 nearest neighbours are closest (highest mean cosine
similarity). No label is needed. Pure numpy apart from the embedding.
"""

from __future__ import annotations

import copy

import numpy as np

from hemascope.adapt.batchnorm import reestimate_batchnorm
from hemascope.adapt.propagate import knn_graph
from hemascope.models.artifact import LoadedModel


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine) of the rows of ``x`` with k-means++ seeding: cluster index
    per row ``(n,)`` and unit centres ``(k, d)``. Every cluster keeps at least one row."""
    x = _unit(x)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in 1..{n} (got {k})")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    dist = 1.0 - x @ centres[0]
    for _ in range(1, k):  # k-means++: the next centre far from those chosen
        p = np.maximum(dist, 0.0) ** 2
        i = rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)
        centres.append(x[i])
        dist = np.minimum(dist, 1.0 - x @ x[i])
    c = np.stack(centres)
    assign = np.full(n, -1)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        counts = np.bincount(new, minlength=k)
        for j in np.flatnonzero(counts == 0):  # an empty cluster takes the worst-fit row
            fit = np.einsum("nd,nd->n", x, c[new])
            fit[counts[new] <= 1] = np.inf  # of a cluster that keeps another member
            i = int(np.argmin(fit))
            counts[new[i]] -= 1
            new[i], counts[j] = j, 1
        if np.array_equal(new, assign):
            break
        assign = new
        c = _unit(np.stack([x[assign == j].mean(0) for j in range(k)]))
    return assign, c


def typicality(x: np.ndarray, *, neighbours: int = 20) -> np.ndarray:
    """Mean cosine similarity of each row to its ``neighbours`` nearest other rows."""
    if len(x) < 2:
        return np.ones(len(x))
    _, sim = knn_graph(x, k=neighbours, power=1.0)
    return sim.mean(1)


def typical_per_cluster(emb: np.ndarray, n: int, *, seed: int = 0
                        ) -> tuple[list[int], list[int], np.ndarray]:
    """The most typical row of each of ``n`` k-means clusters, largest cluster first:
    ``(row indices, their clusters' sizes, every row's typicality)``."""
    assign, _ = kmeans(emb, n, seed=seed)
    typ = typicality(emb)
    sizes = np.bincount(assign, minlength=n)
    order = np.argsort(-sizes, kind="stable")
    picks = []
    for j in order:
        members = np.flatnonzero(assign == j)
        picks.append(int(members[np.argmax(typ[members])]))
    return picks, [int(sizes[j]) for j in order], typ


def select_typical(emb: np.ndarray, n: int, *, seed: int = 0) -> list[int]:
    """``n`` row indices: the most typical row of each of ``n`` k-means clusters, largest
    cluster first."""
    return typical_per_cluster(emb, n, seed=seed)[0]


def embed_for_selection(base: LoadedModel, images: np.ndarray) -> np.ndarray:
    """The base model's 128-d embeddings of ``images`` with batch-norm statistics from them."""
    from hemascope.adapt.shot import embed_all

    mean, std = base.normalisation
    model = copy.deepcopy(base.model)
    reestimate_batchnorm(model, images, mean, std)
    emb, _ = embed_all(model, images, mean, std)  # no gradients
    return emb.float().numpy()


def suggest_cells(base: LoadedModel, images: np.ndarray, n: int, *, seed: int = 0,
                  embeddings: np.ndarray | None = None) -> list[int]:
    """Indices of the ``n`` images of a lab to label first (see the module docstring);
    ``embeddings`` from :func:`embed_for_selection`, if already computed."""
    if not 1 <= n <= len(images):
        raise ValueError(f"can suggest 1 to {len(images)} cells (asked for {n})")
    emb = embed_for_selection(base, images) if embeddings is None else embeddings
    return select_typical(emb, n, seed=seed)
