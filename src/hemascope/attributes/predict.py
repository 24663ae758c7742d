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
    from hemascope.attributes.model import AttributeModel, PartAwareAttributeModel

    path = resolve_model_dir(spec, "attributes")
    cfg = read_config(path)
    if cfg.get("task") != "attributes" or "attributes" not in cfg:
        raise ModelError(f"{path} holds a {cfg.get('task', 'classification')} model, not an "
                         "attribute model (train one with `hemascope train attributes`)")
    missing = [k for k in ("arch", "image_size", "mean", "std") if k not in cfg]
    if missing:
        raise ModelError(f"{path / 'config.json'} lacks {', '.join(missing)}")
    if cfg.get("segmenter"):
        from hemascope.segment.predict import load_segmenter

        model = PartAwareAttributeModel(cfg["arch"], cfg["attributes"],
                                        aggregate=cfg.get("aggregate", "attention"),
                                        dropout=cfg.get("dropout", 0.2), image_size=cfg["image_size"])
        load_weights(model, path, cfg)
        model.segmenter = load_segmenter(path / cfg["segmenter"])
    else:
        model = AttributeModel(cfg["arch"], cfg["attributes"], dropout=cfg.get("dropout", 0.2),
                               image_size=cfg["image_size"])
        load_weights(model, path, cfg)
    bias = cfg.get("value_bias") or {}
    wrong = [k for k, v in bias.items() if k not in model.attributes
             or not isinstance(v, list) or len(v) != len(model.attributes[k])]
    if not isinstance(bias, dict) or wrong:
        raise ModelError(f"{path / 'config.json'}: value_bias must give one offset per value of "
                         f"each attribute (wrong for {wrong or 'the whole entry'})")
    model.eval()
    return LoadedModel(model.to(memory_format=torch.channels_last), cfg, path)


def add_part_channels(segmenter: LoadedModel, images: np.ndarray) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 -> ``(N, S, S, 5)``: nucleus and cytoplasm probabilities (x255)
    from the part-segmentation model appended, the input of a structure-aware model."""
    from hemascope.segment.predict import segment_arrays

    probs = segment_arrays(segmenter, list(images), return_probs=True, zoom=False,
                           centre=False, mirror=False)  # as trained
    parts = np.stack([np.stack([p[1], p[2]], -1) for p in probs]) if probs else \
        np.zeros(images.shape[:3] + (2,))
    return np.concatenate([images, np.round(parts * 255).astype(np.uint8)], -1)


def model_inputs(loaded: LoadedModel, images: Sequence[np.ndarray]) -> torch.Tensor:
    """The batch an attribute model expects: RGB (+ part channels when structure-aware)."""
    from hemascope.classify import preprocess

    segmenter = getattr(loaded.model, "segmenter", None)
    if segmenter is None:
        return preprocess(images, loaded.config)
    from hemascope.data.preprocess import letterbox_resize
    from hemascope.train.classifier import to_batch

    size = int(loaded.config["image_size"])
    arr = add_part_channels(segmenter, np.stack([letterbox_resize(im, size) for im in images]))
    return to_batch(arr, torch.tensor(loaded.config["mean"]), torch.tensor(loaded.config["std"]))


@torch.inference_mode()
def attribute_probabilities(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                            batch_size: int = 64, tta: int = 1,
                            adjusted: bool = True) -> dict[str, np.ndarray]:
    """``{attribute: (N, n values)}`` softmax probabilities for RGB uint8 arrays.

    ``tta`` > 1 averages each head's softmax over that many dihedral views (1, 2, 4 or 8):
    the attributes do not depend on orientation, so the views only add evidence.
    ``adjusted``: apply the model's per-value decision offsets (config ``value_bias``,
    ``hemascope.attributes.bias``) when it has them; ``False`` gives the heads' own softmax.
    """
    from hemascope.attributes.bias import apply_value_bias
    from hemascope.classify import TTA_VIEWS, dihedral_views

    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {TTA_VIEWS}")
    model = loaded.model
    parts: dict[str, list[np.ndarray]] = {k: [] for k in model.attributes}
    for i in range(0, len(images), batch_size):
        x = model_inputs(loaded, images[i:i + batch_size])
        acc: dict[str, torch.Tensor] = {}
        for v in dihedral_views(x, tta):
            for k, b in model.split(model(v.contiguous(memory_format=torch.channels_last))).items():
                acc[k] = acc.get(k, 0) + torch.softmax(b, 1) / tta
        for k, b in acc.items():
            parts[k].append(b.numpy())
    offsets = (loaded.config.get("value_bias") or {}) if adjusted else {}
    return {k: apply_value_bias(np.concatenate(v), offsets.get(k)) if v else
            np.zeros((0, len(model.attributes[k])), np.float32) for k, v in parts.items()}


@torch.inference_mode()
def attribute_embeddings(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                         batch_size: int = 64, views: int = 1) -> np.ndarray:
    """``(N, F)`` pooled encoder features of an attribute model, averaged over ``views``
    dihedral views (1, 2, 4 or 8): a description of each cell's morphology."""
    from hemascope.classify import TTA_VIEWS, dihedral_views

    if views not in TTA_VIEWS:
        raise ValueError(f"views must be one of {TTA_VIEWS}")
    model, out = loaded.model, []
    for i in range(0, len(images), batch_size):
        x = model_inputs(loaded, images[i:i + batch_size])
        out.append(torch.stack([model.embed(v.contiguous(memory_format=torch.channels_last))
                                for v in dihedral_views(x, views)]).mean(0).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


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
