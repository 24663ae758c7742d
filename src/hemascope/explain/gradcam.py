"""Grad-CAM heat maps (Selvaraju et al., ICCV 2017) for any CNN encoder in the registry.

The class score is differentiated with respect to the encoder's last feature map; the
channel-averaged gradients weight the channels, and the ReLU of the sum, upsampled to
the input, shows which cell regions drive the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hemascope.errors import HemascopeError


@dataclass(frozen=True)
class GradCam:
    """One explanation: heat map in ``[0, 1]`` at input size, for ``target`` with ``score``."""

    heatmap: np.ndarray
    target: int
    score: float


def _split_encoder(encoder: nn.Module):
    """(features, pool) callables: spatial feature map, then the pooling to a vector."""
    if hasattr(encoder, "forward_features") and hasattr(encoder, "forward_head"):
        return encoder.forward_features, lambda f: encoder.forward_head(f, pre_logits=True)
    if isinstance(encoder, nn.Sequential):
        cut = next((i for i, m in enumerate(encoder) if isinstance(m, nn.AdaptiveAvgPool2d)), None)
        if cut is not None:
            return encoder[:cut], encoder[cut:]
    raise HemascopeError(f"Grad-CAM needs a CNN encoder with a spatial feature map; "
                         f"{type(encoder).__name__} has none")


def gradcam(model: nn.Module, x: torch.Tensor, *, target: int | None = None,
            block: slice | None = None) -> list[GradCam]:
    """Grad-CAM for a batch ``x`` (normalised, as the model expects).

    Args:
        model: a :class:`~hemascope.models.classifier.CellClassifier` (any module with
            ``encoder``, ``embedding`` and ``head`` works).
        target: class index to explain; ``None`` explains each image's predicted class.
        block: explain only these outputs (an attribute head of an
            :class:`~hemascope.attributes.AttributeModel`: ``model.slices[name]``);
            ``target`` and the score are then relative to the block.
    """
    features, pool = _split_encoder(model.encoder)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            fmap = features(x.detach())
            if fmap.ndim != 4:
                raise HemascopeError("Grad-CAM needs a CNN: the encoder's features are not a "
                                     f"(B, C, H, W) map but {tuple(fmap.shape)}")
            fmap.retain_grad()
            logits = model.head(model.embedding(pool(fmap)))
            if block is not None:
                logits = logits[:, block]
            idx = logits.argmax(1) if target is None else torch.full((len(x),), int(target))
            chosen = logits.gather(1, idx.view(-1, 1)).sum()
            chosen.backward()
        weights = fmap.grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * fmap).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    finally:
        model.train(was_training)
    out = []
    for c, t, s in zip(cam, idx.tolist(), logits.softmax(1).detach()):
        c = c.numpy()
        top = c.max()
        out.append(GradCam(c / top if top > 0 else c, int(t), float(s[t])))
    return out


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a ``[0, 1]`` heat map (resized to the image) over an RGB uint8 image."""
    from PIL import Image

    h, w = image.shape[:2]
    hm = np.asarray(Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR)).astype(np.float32) / 255
    colour = _jet(hm)
    return np.clip(image.astype(np.float32) * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def _jet(v: np.ndarray) -> np.ndarray:
    """Blue-cyan-yellow-red colour map (float 0-1 in, RGB 0-255 out)."""
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.stack([r, g, b], -1) * 255
