"""Load an attribute model and read the 11 morphology attributes off single-cell images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hemascope.models.artifact import LoadedModel, ModelError, load_weights, read_config, resolve_model_dir


@dataclass(frozen=True)
class AttributePrediction:
    """One cell's attributes: the most likely value and its probability per attribute."""

    values: dict[str, str]
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {k: {"value": v, "probability": round(self.probabilities[k], 6)}
                for k, v in self.values.items()}


def load_attribute_model(spec: str | Path | None = "default") -> LoadedModel:
    """An attribute-model folder (``hemascope train attributes``) in eval mode on the CPU.

    Raises:
        ModelError: missing files, a folder that holds another kind of model, or weights
            that do not fit the architecture.
    """
    from hemascope.attributes.model import AttributeModel

    path = resolve_model_dir(spec, "attributes")
    cfg = read_config(path)
    if cfg.get("task") != "attributes" or "attributes" not in cfg:
        raise ModelError(f"{path} holds a {cfg.get('task', 'classification')} model, not an "
                         "attribute model (train one with `hemascope train attributes`)")
    missing = [k for k in ("arch", "image_size", "mean", "std") if k not in cfg]
    if missing:
        raise ModelError(f"{path / 'config.json'} lacks {', '.join(missing)}")
    model = AttributeModel(cfg["arch"], cfg["attributes"], dropout=cfg.get("dropout", 0.2),
                           image_size=cfg["image_size"])
    load_weights(model, path, cfg)
    model.eval()
    return LoadedModel(model.to(memory_format=torch.channels_last), cfg, path)


@torch.inference_mode()
def attribute_probabilities(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                            batch_size: int = 64) -> dict[str, np.ndarray]:
    """``{attribute: (N, n values)}`` softmax probabilities for RGB uint8 arrays."""
    from hemascope.classify import preprocess

    model = loaded.model
    parts: dict[str, list[np.ndarray]] = {k: [] for k in model.attributes}
    for i in range(0, len(images), batch_size):
        for k, b in model.split(model(preprocess(images[i:i + batch_size], loaded.config))).items():
            parts[k].append(torch.softmax(b, 1).numpy())
    return {k: np.concatenate(v) if v else np.zeros((0, len(model.attributes[k])), np.float32)
            for k, v in parts.items()}


def predict_attributes(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                       batch_size: int = 64) -> list[AttributePrediction]:
    """The most likely value of every attribute for each image."""
    probs = attribute_probabilities(loaded, images, batch_size=batch_size)
    attrs = loaded.model.attributes
    out = []
    for i in range(len(images)):
        values, p = {}, {}
        for k, values_k in attrs.items():
            j = int(probs[k][i].argmax())
            values[k], p[k] = values_k[j], float(probs[k][i, j])
        out.append(AttributePrediction(values, p))
    return out
