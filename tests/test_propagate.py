"""Label propagation over the embedding graph (hemascope.adapt.propagate)."""

from __future__ import annotations

import numpy as np
import pytest

from hemascope.adapt.propagate import knn_graph, label_propagation, transductive_probs


def _clusters(seed: int = 0, per: int = 30, d: int = 16):
    """Three well separated clusters on the sphere; labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:3] * 5.0
    x = np.concatenate([c + rng.normal(size=(per, d)) for c in centres])
    return x, np.repeat(np.arange(3), per)


def _dense_reference(emb, labelled, labels, n_classes, k=10, alpha=0.99, power=3.0):
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    n = len(x)
    w = np.zeros((n, n))
    for i, nn in enumerate(np.argsort(-s, 1)[:, :k]):
        w[i, nn] = np.maximum(s[i, nn], 0) ** power
    w = w + w.T
    d = w.sum(1)
    sn = w / np.sqrt(d[:, None] * d[None, :])
    y = np.zeros((n, n_classes))
    y[labelled, labels] = 1
    f = np.linalg.solve(np.eye(n) - alpha * sn, y)
    return f / f.sum(1, keepdims=True)


def test_knn_graph_excludes_self_and_keeps_the_closest():
    x, _ = _clusters()
    idx, w = knn_graph(x, k=5)
    assert idx.shape == w.shape == (90, 5)
    assert not (idx == np.arange(90)[:, None]).any()
    assert (w >= 0).all()
    same = (idx // 30) == (np.arange(90)[:, None] // 30)
    assert same.mean() > 0.95  # neighbours come from the same cluster


def test_two_labels_per_cluster_label_all_of_it():
    x, y = _clusters()
    labelled = np.array([0, 1, 30, 31, 60, 61])
    f = label_propagation(x, labelled, y[labelled], 3)
    assert f.shape == (90, 3) and np.allclose(f.sum(1), 1)
    assert (f.argmax(1) == y).mean() == 1.0
    # a wrong label on one shot does not beat the cluster's right ones
    wrong = y[labelled].copy()
    wrong[0] = 2
    assert (label_propagation(x, labelled, wrong, 3).argmax(1)[2:30] == 0).mean() > 0.9


def test_matches_the_dense_closed_form():
    x, y = _clusters(seed=3, per=12)
    labelled = np.array([0, 12, 24])
    f = label_propagation(x, labelled, y[labelled], 3, k=6)
    assert np.allclose(f, _dense_reference(x, labelled, y[labelled], 3, k=6), atol=1e-5)


def test_boolean_mask_and_unreached_rows():
    x, y = _clusters(per=10)
    mask = np.zeros(30, bool)
    mask[[0, 10, 20]] = True
    a = label_propagation(x, mask, y[mask], 3, k=4)
    b = label_propagation(x, np.flatnonzero(mask), y[mask], 3, k=4)
    assert np.allclose(a, b)
    # a point at negative cosine to every other one has no positive edge: a uniform row
    far = np.concatenate([np.abs(x) + 1.0, -np.ones((1, x.shape[1]))])
    f = label_propagation(far, mask.nonzero()[0], y[mask], 3, k=4)
    assert np.allclose(f[-1], 1 / 3)


def test_transductive_probs_corrects_a_confused_head():
    x, y = _clusters()
    head = np.full((90, 3), 0.1)
    head[np.arange(90), y] = 0.8
    head[30:45] = [0.45, 0.4, 0.15]  # the head mistakes half of cluster 1 for class 0
    labelled = np.array([0, 30, 31, 60])
    p = transductive_probs(head, x, labelled, y[labelled])
    assert np.allclose(p.sum(1), 1)
    assert (head.argmax(1) == y).mean() < 0.85
    assert (p.argmax(1) == y).mean() == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=1.0), "alpha"),
    (dict(labels=np.array([0, 5])), "labels must lie"),
    (dict(labels=np.array([0])), "one label per labelled row"),
])
def test_bad_arguments(kwargs, match):
    x, _ = _clusters(per=5)
    args = dict(labelled=np.array([0, 5]), labels=np.array([0, 1]), n_classes=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        label_propagation(x, args.pop("labelled"), args.pop("labels"), args.pop("n_classes"), **args)


def test_bad_embeddings():
    with pytest.raises(ValueError, match="n >= 2"):
        knn_graph(np.zeros((1, 4)))
    bad = np.ones((5, 4))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_graph(bad)
    with pytest.raises(ValueError, match="one row per embedding"):
        transductive_probs(np.ones((3, 2)) / 2, np.ones((4, 4)), np.array([0]), np.array([0]))


def test_knn_graph_in_blocks_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4500, 8))  # more rows than one block holds (2**24 // 4500 < 4500)
    idx, w = knn_graph(x, k=3, power=1.0)
    assert not (idx == np.arange(4500)[:, None]).any()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i in (0, 3727, 4499):  # rows of the first, a middle and the last block
        s = xn @ xn[i]
        s[i] = -np.inf
        assert set(idx[i]) == set(np.argsort(-s)[:3])
        assert np.allclose(sorted(w[i]), sorted(np.maximum(np.sort(s)[-3:], 0)))
