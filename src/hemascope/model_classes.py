"""A model's classes: naming them in any spelling, and restricting predictions to some.

Labels from other sources reach a model's classes through the taxonomy (``SNE`` ->
``neutrophil``; a fine concept maps to its nearest ancestor the model knows). A lab whose
cells hold only some of the model's classes (the five leukocyte types of normal blood, or
the classes a labelled set shares with the model, the cross-lab protocol) names them, and
the probabilities of the other classes are set to zero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hemascope import taxonomy
from hemascope.errors import HemascopeError, UnknownLabelError


def map_to_classes(label: str, classes: Sequence[str]) -> str | None:
    """The model class that is ``label`` or its nearest ancestor; ``None`` if none is."""
    try:
        chain = taxonomy.ancestors(label)
    except UnknownLabelError:
        return None
    return next((c for c in chain if c in classes), None)


def allowed_classes(names: Sequence[str] | None, classes: Sequence[str]) -> list[int] | None:
    """Indices of ``classes`` that ``names`` (any spelling the taxonomy knows) stand for;
    ``None`` when no names are given (every class is allowed).

    Raises:
        HemascopeError: a name that is none of ``classes``.
    """
    if names is None:
        return None
    if isinstance(names, str):  # one name, not its letters
        names = [names]
    keep, bad = set(), []
    for name in names:
        c = name if name in classes else map_to_classes(name, classes)
        if c is None:
            bad.append(name)
        else:
            keep.add(list(classes).index(c))
    if bad or not keep:
        raise HemascopeError(f"classes {bad or list(names)} are not among the classifier's "
                             f"classes ({', '.join(classes)})")
    return sorted(keep)


def restrict(probs: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Zero the other classes and renormalise each row."""
    out = np.zeros_like(probs)
    out[:, keep] = probs[:, keep]
    return out / np.clip(out.sum(1, keepdims=True), 1e-12, None)
