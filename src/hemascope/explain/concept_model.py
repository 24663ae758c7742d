"""A concept-bottleneck cell-type model on top of an attribute model, saved as JSON.

Sequential bottleneck (Koh et al. 2020): the attribute model's predicted value
probabilities are the only input of a sparse linear classifier of the cell type, fitted on
the WBCAtt train split and scored on its test split. The folder holds ``concepts.json``
(weights, the attribute model it reads, that model's weight hash, test scores); nothing is
pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hemascope.errors import HemascopeError
from hemascope.explain.concepts import ConceptBottleneck, concept_names, fit_concept_bottleneck

FORMAT = "hemascope-concepts/1"
FILE = "concepts.json"


@dataclass
class ConceptModel:
    """The bottleneck and the attribute model that feeds it."""

    bottleneck: ConceptBottleneck
    attributes: object  # LoadedModel of the attribute model
    config: dict

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return attribute_features(self.attributes, images)


def attribute_features(loaded, images: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
    """``(N, n concepts)``: every attribute's value probabilities side by side (the heads' own
    softmax, without decision offsets: the bottleneck learns its own boundaries)."""
    from hemascope.attributes import attribute_probabilities

    probs = attribute_probabilities(loaded, images, batch_size=batch_size, adjusted=False)
    return np.concatenate([probs[k] for k in loaded.model.attributes], axis=1)


def features_of_samples(loaded, ds, samples, *, batch_size: int = 64, progress=None,
                        features=None):
    """Features of dataset samples read from disk; unreadable files are skipped and named.

    ``features(loaded, images, batch_size=...)`` computes them (default: the attribute
    probabilities, :func:`attribute_features`). Returns ``(features, kept samples, errors)``.
    """
    features = features or attribute_features
    from hemascope.errors import ImageReadError
    from hemascope.io.image import read_image

    feats, kept, errors = [], [], {}
    wrap = progress or (lambda it: it)
    for start in wrap(range(0, len(samples), batch_size)):
        imgs = []
        for s in samples[start:start + batch_size]:
            try:
                imgs.append(read_image(ds.root / s.path))
                kept.append(s)
            except ImageReadError as e:
                errors[s.path] = e.reason
        if imgs:
            feats.append(features(loaded, imgs, batch_size=batch_size))
    return (np.concatenate(feats) if feats else np.zeros((0, 0))), kept, errors


def fit_concept_model(attributes_model, ds, out_dir: str | Path, *, l1: float = 1e-3,
                      progress=None) -> dict:
    """Fit on the ``train`` rows of a WBCAtt set, score on its ``test`` rows, save JSON.

    Returns the written config (with ``metrics.test`` in the ``evaluate classifier`` shape).
    """
    from hemascope.attributes import load_attribute_model
    from hemascope.evaluate.classification import classification_report
    from hemascope.io.atomic import write_json

    loaded = (attributes_model if hasattr(attributes_model, "model")
              else load_attribute_model(attributes_model))
    classes = list(ds.classes)
    parts = {p: [s for s in ds.samples if s.split == p] for p in ("train", "test")}
    if not parts["train"]:
        raise HemascopeError("the WBCAtt set has no train rows to fit the bottleneck on")
    x, kept, _ = features_of_samples(loaded, ds, parts["train"], progress=progress)
    y = np.array([classes.index(s.label) for s in kept])
    concepts = concept_names(loaded.model.attributes)
    cbm = fit_concept_bottleneck(x, y, concepts=concepts, classes=classes, l1=l1)
    test = boosted = None
    if parts["test"]:
        xt, kept_t, _ = features_of_samples(loaded, ds, parts["test"], progress=progress)
        yt = np.array([classes.index(s.label) for s in kept_t])
        test = classification_report(yt, cbm.predict_proba(xt).argmax(1), classes).to_dict()
        boosted = gradient_boosting_scores(x, y, xt, yt, classes)
    shipped = isinstance(attributes_model, str) and attributes_model == "default"
    config = {"format": FORMAT,
              "attributes_model": "default" if shipped else str(Path(loaded.path).resolve()),
              "attributes_sha256": loaded.config.get("weights_sha256"), "l1": l1,
              "sparsity": cbm.sparsity(), "n_train": int(len(y)), **cbm.to_dict(),
              "metrics": {"test": test, "test_gradient_boosting": boosted}}
    write_json(Path(out_dir) / FILE, config)
    return config


def gradient_boosting_scores(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray,
                             classes: Sequence[str], *, seed: int = 0) -> dict | None:
    """Test scores of a gradient-boosted-trees bottleneck on the same concepts, for comparison.

    Uses scikit-learn's histogram gradient boosting when it is installed (``hemascope[plots]``);
    returns None otherwise. Only its scores are kept: trees are not saved (nothing pickled),
    the sparse linear model is the one that explains and takes interventions.
    """
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:
        return None
    from hemascope.evaluate.classification import classification_report

    gb = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    gb.fit(x, y)
    return classification_report(yt, gb.predict(xt), list(classes)).to_dict()


def load_concept_model(folder: str | Path | None = "default", *,
                       attributes: str | Path | None = None) -> ConceptModel:
    """Read ``concepts.json`` and load the attribute model it names (or ``attributes``).

    ``"default"`` is the bottleneck shipped with the package, fitted on the shipped
    attribute model.

    Raises:
        HemascopeError: missing or malformed file, or an attribute model whose weights are
            not the ones the bottleneck was fitted on.
    """
    from hemascope.attributes import load_attribute_model

    if folder in (None, "default"):
        from hemascope.models.artifact import default_model_dir

        folder = default_model_dir("concepts")
    p = Path(folder) / FILE
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HemascopeError(f"cannot read {p}: {e}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise HemascopeError(f"{p} is not a hemascope concept-bottleneck file ({FORMAT!r} expected)")
    try:
        cbm = ConceptBottleneck.from_dict(cfg)
    except (KeyError, ValueError) as e:
        raise HemascopeError(f"{p}: {e}") from None
    loaded = load_attribute_model(attributes or cfg["attributes_model"])
    if cfg.get("attributes_sha256") and loaded.config.get("weights_sha256") != cfg["attributes_sha256"]:
        raise HemascopeError(f"the attribute model {loaded.path} is not the one {p} was fitted on "
                             "(weight hashes differ)")
    if concept_names(loaded.model.attributes) != cbm.concepts:
        raise HemascopeError(f"the attribute model {loaded.path} has other attribute values than {p}")
    return ConceptModel(cbm, loaded, cfg)
