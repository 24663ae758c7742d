"""Cell-part segmentation with a trained U-Net folder: part indices at the image's own size."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hemascope.models.artifact import LoadedModel, ModelError, load_weights, read_config, resolve_model_dir


def load_segmenter(spec: str | Path | None = "default") -> LoadedModel:
    """A part-segmentation folder (``hemascope train segmentation``) in eval mode.

    Raises:
        ModelError: missing files, another kind of model, or weights that do not fit.
    """
    from hemascope.segment.unet import UNet

    path = resolve_model_dir(spec, "segmentation")
    cfg = read_config(path)
    if cfg.get("task") != "segmentation":
        raise ModelError(f"{path} holds a {cfg.get('task', 'classification')} model, not a "
                         "part-segmentation model (train one with `hemascope train segmentation`)")
    model = UNet(len(cfg["classes"]), width=int(cfg["width"]), depth=int(cfg.get("depth", 4)))
    load_weights(model, path, cfg)
    return LoadedModel(model.eval(), cfg, path)


@torch.inference_mode()
def segment_arrays(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                   return_probs: bool = False) -> list[np.ndarray]:
    """Part indices ``(H, W)`` uint8 for each RGB uint8 image, at its own size.

    The image is resized to the model's square input, the logits are resized back
    (bilinear) and the arg-max taken, so thin borders are not blocky.
    """
    from hemascope.segment.data import resize_pair

    cfg = loaded.config
    size = int(cfg["image_size"])
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    out = []
    for img in images:
        small = np.array(resize_pair(np.asarray(img), None, size)[0])
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float().div_(255)
        logits = loaded.model((x - mean) / std)
        logits = F.interpolate(logits, size=img.shape[:2], mode="bilinear", align_corners=False)
        out.append(logits.softmax(1)[0].numpy() if return_probs
                   else logits.argmax(1)[0].numpy().astype(np.uint8))
    return out


def overlay_parts(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The image with each part tinted in its palette colour (background untouched)."""
    from hemascope.io.masks import PALETTE

    img = np.asarray(image, np.float32).copy()
    colours = np.array(PALETTE, np.float32)
    fg = mask > 0
    img[fg] = (1 - alpha) * img[fg] + alpha * colours[mask[fg]]
    return img.clip(0, 255).astype(np.uint8)
