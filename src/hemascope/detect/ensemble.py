"""Fusing the boxes of several detectors (pure numpy).

Three rules, each taking one prediction set per model (``boxes`` ``(N, 4)`` xyxy,
``scores`` ``(N,)``, ``labels`` ``(N,)`` int):

* :func:`vote_fusion`, the leukocyte-detection study's rule (Li et al., Sci Rep 2023): boxes
  that overlap across models form a group; a group is kept only if more than half of the
  models found it; its class is the majority vote, its box the confidence-weighted mean,
  its score the summed confidence divided by the number of models.
* :func:`weighted_boxes_fusion` (Solovyev et al., Image Vis Comput 2021), per class.
* :func:`nms_fusion`: pool everything and keep local maxima (the usual baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Boxes ``(N, 4)`` xyxy float, scores ``(N,)``, integer labels ``(N,)``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if np.shape(self.boxes) not in ((n, 4), (0,)) or len(self.scores) != n or len(self.labels) != n:
            raise ValueError("boxes (N, 4), scores (N,) and labels (N,) must agree")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``(N, 4)`` x ``(M, 4)``."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _pool(preds: Sequence[Detections]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.concatenate([np.asarray(p.boxes, float).reshape(-1, 4) for p in preds])
    scores = np.concatenate([np.asarray(p.scores, float) for p in preds])
    labels = np.concatenate([np.asarray(p.labels, np.int64) for p in preds])
    model = np.concatenate([np.full(len(p), i) for i, p in enumerate(preds)])
    return boxes, scores, labels, model


def _group(boxes: np.ndarray, scores: np.ndarray, iou: float,
           owner: np.ndarray | None = None) -> list[list[int]]:
    """Greedy clustering by descending score: a box joins the group whose fused box it
    overlaps most, by at least ``iou``; otherwise it starts a group. With ``owner`` (the
    model of each box), a group takes at most one box per model: a model's second box on
    the same spot is one its own NMS kept, so it stays apart."""
    n = len(scores)
    fused = np.zeros((n, 4))  # score-weighted mean box of each group so far
    weighted, total = np.zeros((n, 4)), np.zeros(n)
    taken = None if owner is None or not n else np.zeros((n, int(owner.max()) + 1), bool)
    groups: list[list[int]] = []
    for i in np.argsort(-scores, kind="mergesort"):
        g = len(groups)
        if g:
            ov = iou_matrix(boxes[i][None], fused[:g])[0]
            if taken is not None:
                ov[taken[:g, owner[i]]] = -1.0
            j = int(np.argmax(ov))
            if ov[j] >= iou:
                groups[j].append(int(i))
                weighted[j] += boxes[i] * scores[i]
                total[j] += scores[i]
                fused[j] = weighted[j] / max(total[j], 1e-12)
                if taken is not None:
                    taken[j, owner[i]] = True
                continue
        groups.append([int(i)])
        fused[g], weighted[g], total[g] = boxes[i], boxes[i] * scores[i], scores[i]
        if taken is not None:
            taken[g, owner[i]] = True
    return groups


def vote_fusion(preds: Sequence[Detections], *, iou: float = 0.5) -> Detections:
    """Majority-vote ensemble (Li et al. 2023); boxes of any class are grouped together."""
    n_models = len(preds)
    if n_models == 0:
        return Detections.empty()
    boxes, scores, labels, model = _pool(preds)
    out_b, out_s, out_l = [], [], []
    for g in _group(boxes, scores, iou):
        g = np.array(g)
        # one vote per model: its most confident box in the group
        best = {}
        for i in g:
            if model[i] not in best or scores[i] > scores[best[model[i]]]:
                best[model[i]] = i
        members = np.array(list(best.values()))
        if len(members) * 2 <= n_models:  # "more than half of the models"
            continue
        votes = np.bincount(labels[members])
        top = np.flatnonzero(votes == votes.max())
        # ties go to the class with the larger summed confidence
        label = top[np.argmax([scores[members][labels[members] == c].sum() for c in top])]
        w = scores[members]
        out_b.append((boxes[members] * w[:, None]).sum(0) / max(w.sum(), 1e-12))
        out_s.append(w.sum() / n_models)
        out_l.append(label)
    if not out_b:
        return Detections.empty()
    return Detections(np.array(out_b), np.array(out_s), np.array(out_l, np.int64))


def weighted_boxes_fusion(preds: Sequence[Detections], *, iou: float = 0.55,
                          skip_score: float = 0.0) -> Detections:
    """Weighted boxes fusion per class (Solovyev et al. 2021), equal model weights.

    A cluster holds at most one box per model (see :func:`_group`): in the paper's version a
    detector's own low-score near-duplicates join its confident box's cluster and drag the
    fused score and box down (see the README: a two-model WBF fell below both members).
    The fused box is the score-weighted mean, the fused score the mean member score scaled by
    ``#members / #models``, so a box only some models found ranks lower but is kept.
    """
    n_models = len(preds)
    if n_models == 0:
        return Detections.empty()
    boxes, scores, labels, model = _pool(preds)
    keep = scores >= skip_score
    boxes, scores, labels, model = boxes[keep], scores[keep], labels[keep], model[keep]
    out_b, out_s, out_l = [], [], []
    for c in np.unique(labels):
        m = np.flatnonzero(labels == c)
        for g in _group(boxes[m], scores[m], iou, owner=model[m]):
            idx = m[np.array(g)]
            w = scores[idx]
            out_b.append((boxes[idx] * w[:, None]).sum(0) / max(w.sum(), 1e-12))
            out_s.append(w.sum() / n_models)
            out_l.append(c)
    if not out_b:
        return Detections.empty()
    order = np.argsort(-np.array(out_s), kind="mergesort")
    return Detections(np.array(out_b)[order], np.array(out_s)[order],
                      np.array(out_l, np.int64)[order])


def nms(boxes: np.ndarray, scores: np.ndarray, *, iou: float = 0.5) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, by descending score."""
    order = np.argsort(-np.asarray(scores, float), kind="mergesort")
    keep: list[int] = []
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    while len(order):
        i = int(order[0])
        keep.append(i)
        if len(order) == 1:
            break
        ov = iou_matrix(boxes[i][None], boxes[order[1:]])[0]
        order = order[1:][ov < iou]
    return np.array(keep, np.int64)


def nms_fusion(preds: Sequence[Detections], *, iou: float = 0.5) -> Detections:
    """Pool all models' boxes and apply class-wise NMS."""
    if not preds:
        return Detections.empty()
    boxes, scores, labels, _ = _pool(preds)
    kept = [np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou=iou)]
            for c in np.unique(labels)]
    idx = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    idx = idx[np.argsort(-scores[idx], kind="mergesort")]
    return Detections(boxes[idx], scores[idx], labels[idx])


#: Fusion rules by the name the CLI and :func:`hemascope.detect.predict.predict_ensemble` use.
FUSIONS: dict[str, Callable[..., Detections]] = {
    "wbf": weighted_boxes_fusion, "vote": vote_fusion, "nms": nms_fusion}
