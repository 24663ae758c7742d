"""Counterfactual retrieval for one cell image against an attribute-labelled gallery.

The attribute model reads the query's 11 attributes and embeds it; the gallery (a WBCAtt
table, annotated attributes) is embedded by the same model; :func:`counterfactuals` then
returns the nearest gallery cells whose chosen attribute differs while the others agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hemascope.errors import DatasetError, HemascopeError
from hemascope.explain.counterfactual import counterfactuals


@torch.inference_mode()
def embed_images(loaded, images: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
    """``(N, F)`` pooled encoder features of an attribute model for RGB uint8 arrays."""
    from hemascope.attributes.predict import model_inputs

    out = [loaded.model.embed(model_inputs(loaded, images[i:i + batch_size])).float().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def counterfactual_search(image: np.ndarray, *, attributes_model, gallery, attribute: str,
                          value: str | None = None, images=None, k: int = 5,
                          max_gallery: int | None = None, seed: int = 0, batch_size: int = 64,
                          progress=None) -> dict:
    """Nearest gallery cells to ``image`` that differ in ``attribute``.

    Args:
        image: the query cell (RGB uint8).
        attributes_model: attribute-model folder or a loaded one.
        gallery: a WBCAtt CSV or a folder of the official tables; its annotated attribute
            values define what "differs" means for the gallery cells.
        value: only retrieve cells with this value of ``attribute``.
        max_gallery: embed at most this many gallery cells (a seeded random subset).

    Returns:
        ``{"query": {"attributes": {...}}, "attribute", "results": [{"path", "label",
        "value", "distance", "other_differences", "attributes"}], "n_gallery", "errors"}``

    Raises:
        HemascopeError: unknown attribute or value.
        DatasetError: a gallery without any readable image.
    """
    from hemascope.attributes.predict import load_attribute_model, predict_attributes
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.explain.concept_model import features_of_samples

    loaded = (attributes_model if hasattr(attributes_model, "model")
              else load_attribute_model(attributes_model))
    attrs = loaded.model.attributes
    if attribute not in attrs:
        raise HemascopeError(f"unknown attribute {attribute!r}; the model reads {', '.join(attrs)}")
    if value is not None and value not in attrs[attribute]:
        raise HemascopeError(f"{value!r} is not a value of {attribute} ({', '.join(attrs[attribute])})")
    path = Path(gallery)
    ds = read_wbcatt_any(path, image_root=images)
    samples = [s for s in ds.samples if s.attributes and all(a in s.attributes for a in attrs)]
    if max_gallery is not None and len(samples) > max_gallery:
        pick = np.random.default_rng(seed).choice(len(samples), max_gallery, replace=False)
        samples = [samples[i] for i in sorted(pick)]
    feats, kept, errors = features_of_samples(loaded, ds, samples, batch_size=batch_size,
                                              progress=progress, features=embed_images)
    if not kept:
        raise DatasetError(f"no readable gallery image in {path}")
    errors = {**{p.path: p.message for p in ds.problems}, **errors}  # rows left out, too
    [pred] = predict_attributes(loaded, [image])
    query = embed_images(loaded, [image])
    emb = np.concatenate([feats, query])
    table = {a: [s.attributes[a] for s in kept] + [pred.values[a]] for a in attrs}
    found = counterfactuals(len(kept), emb, table, attribute, k=k, value=value)
    return {"query": {"attributes": pred.values,
                      "probabilities": {a: round(p, 6) for a, p in pred.probabilities.items()}},
            "attribute": attribute, "n_gallery": len(kept),
            "results": [{"path": str(ds.root / kept[c.index].path), "label": kept[c.index].label,
                         "value": c.value, "distance": round(c.distance, 4),
                         "other_differences": c.other_differences,
                         "attributes": dict(kept[c.index].attributes)} for c in found],
            "errors": errors}
