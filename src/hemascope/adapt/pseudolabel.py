"""Pseudo-labels for self-training on a target lab's unlabelled cells.

After few-shot fine-tuning, the adapted model labels the target images nobody labelled; the
most confident part of each predicted class joins the shots and the base model is fine-tuned
again on the larger set (self-training with a per-class curriculum, as in curriculum
labelling, Cascante-Bonilla et al. 2021). Taking the same fraction of every predicted class,
rather than every image above one confidence threshold, keeps rare classes in the pseudo-
labelled set: a threshold is passed mostly by the classes the model already knows best.
"""

from __future__ import annotations

import numpy as np


def select_pseudo_labels(probs: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of the ``fraction`` most confident images of each predicted class.

    ``probs`` is ``(N, C)``; every predicted class keeps ``ceil(fraction * n_c)`` of its
    ``n_c`` images, ranked by the top probability (ties by index, so the choice is
    deterministic). Returns ``(indices, labels)``, indices in increasing order.

    Raises:
        ValueError: ``fraction`` outside ``(0, 1]`` or ``probs`` not two-dimensional.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    pred, conf = probs.argmax(1), probs.max(1)
    keep: list[np.ndarray] = []
    for c in np.unique(pred):
        idx = np.flatnonzero(pred == c)
        order = idx[np.lexsort((idx, -conf[idx]))]
        keep.append(order[:int(np.ceil(fraction * len(idx)))])
    chosen = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    return chosen, pred[chosen]
