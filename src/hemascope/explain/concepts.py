"""Concept-bottleneck classifier: cell type from attribute probabilities (Koh et al. 2020).

A multinomial logistic regression with an L1 penalty (proximal gradient, so weights are
exactly sparse) maps the predicted probabilities of the WBCAtt attribute values to cell
types. Each prediction is explained by its top contributing concepts, and a person can
*intervene*: set an attribute to a value and see how the prediction moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


def concept_names(attributes: Mapping[str, Sequence[str]]) -> list[str]:
    """Feature names ``attribute=value`` in the order of the attribute dictionary."""
    return [f"{a}={v}" for a, vals in attributes.items() for v in vals]


@dataclass
class ConceptBottleneck:
    """Fitted model: ``weights`` ``(n_concepts, n_classes)``, ``bias`` ``(n_classes,)``."""

    concepts: list[str]
    classes: list[str]
    weights: np.ndarray
    bias: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, float) @ self.weights + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def explain(self, x: np.ndarray, *, top: int = 5) -> list[tuple[str, float]]:
        """Concepts that push one cell (``x`` of shape ``(n_concepts,)``) to its predicted class."""
        x = np.asarray(x, float)
        c = int(np.argmax(self.logits(x[None])[0]))
        contrib = x * self.weights[:, c]
        order = np.argsort(-np.abs(contrib))[:top]
        return [(self.concepts[i], float(contrib[i])) for i in order if contrib[i] != 0]

    def intervene(self, x: np.ndarray, attribute: str, value: str) -> np.ndarray:
        """Probabilities after setting ``attribute`` to ``value`` (one-hot over its values)."""
        return self.intervene_many(x, {attribute: value})

    def intervene_many(self, x: np.ndarray, edits: Mapping[str, str]) -> np.ndarray:
        """Probabilities after setting several attributes at once."""
        x = np.asarray(x, float).copy()
        for attribute, value in edits.items():
            group = [i for i, n in enumerate(self.concepts) if n.split("=", 1)[0] == attribute]
            if not group:
                raise KeyError(f"unknown attribute {attribute!r}")
            name = f"{attribute}={value}"
            if name not in self.concepts:
                raise KeyError(f"unknown value {value!r} of {attribute!r}")
            x[group] = 0.0
            x[self.concepts.index(name)] = 1.0
        return self.predict_proba(x[None])[0]

    def sparsity(self) -> float:
        return float((self.weights == 0).mean())

    def to_dict(self) -> dict:
        return {"concepts": self.concepts, "classes": self.classes,
                "weights": np.round(self.weights, 8).tolist(), "bias": np.round(self.bias, 8).tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ConceptBottleneck":
        w, b = np.asarray(d["weights"], float), np.asarray(d["bias"], float)
        if w.shape != (len(d["concepts"]), len(d["classes"])) or b.shape != (len(d["classes"]),):
            raise ValueError(f"concept-bottleneck weights {w.shape} / bias {b.shape} do not fit "
                             f"{len(d['concepts'])} concepts and {len(d['classes'])} classes")
        return cls(list(d["concepts"]), list(d["classes"]), w, b)


def fit_concept_bottleneck(x: np.ndarray, y: np.ndarray, *, concepts: Sequence[str],
                           classes: Sequence[str], l1: float = 1e-3, lr: float = 0.5,
                           steps: int = 2000, l2: float = 0.0) -> ConceptBottleneck:
    """Proximal-gradient (ISTA) fit of an L1-penalised softmax regression (plus an ``l2``
    penalty on the weights, none by default); deterministic."""
    x = np.asarray(x, float)
    y = np.asarray(y, int)
    n, d = x.shape
    k = len(classes)
    w = np.zeros((d, k))
    b = np.zeros(k)
    onehot = np.eye(k)[y]
    for _ in range(steps):
        z = x @ w + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(0)
        w = np.sign(w) * np.maximum(np.abs(w) - lr * l1, 0.0)  # soft threshold: exact zeros
    return ConceptBottleneck(list(concepts), list(classes), w, b)
