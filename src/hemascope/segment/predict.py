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
    return LoadedModel(model.eval().to(memory_format=torch.channels_last), cfg, path)


@torch.inference_mode()
def segment_arrays(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                   return_probs: bool = False, batch_size: int = 32,
                   at_input_size: bool = False) -> list[np.ndarray]:
    """Part indices ``(H, W)`` uint8 for each RGB uint8 image, at its own size.

    The image is resized to the model's square input, the logits are resized back
    (bilinear) and the arg-max taken, so thin borders are not blocky. Consecutive images of
    one size go through the network together, on the model's device. ``at_input_size``
    skips the resizing back: maps come at the model's square input size (faster, for
    outlines that are scaled back as polygons).
    """
    from hemascope.segment.data import resize_pair
    from hemascope.train.device import module_device

    cfg = loaded.config
    size = int(cfg["image_size"])
    dev = module_device(loaded.model)
    mean = torch.tensor(cfg["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=dev).view(1, 3, 1, 1)
    out: list[np.ndarray] = []
    i = 0
    while i < len(images):
        shape = np.asarray(images[i]).shape[:2]
        j = i + 1
        while j < len(images) and j - i < batch_size and np.asarray(images[j]).shape[:2] == shape:
            j += 1
        small = np.stack([resize_pair(np.asarray(im), None, size)[0] for im in images[i:j]])
        x = torch.from_numpy(small).to(dev).permute(0, 3, 1, 2).float().div_(255)
        logits = loaded.model(((x - mean) / std).contiguous(memory_format=torch.channels_last))
        if not at_input_size:
            logits = F.interpolate(logits, size=shape, mode="bilinear", align_corners=False)
        res = logits.softmax(1) if return_probs else logits.argmax(1).to(torch.uint8)
        out.extend(r.cpu().numpy() for r in res)
        i = j
    return out


def overlay_parts(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The image with each part tinted in its palette colour (background untouched)."""
    from hemascope.io.masks import PALETTE

    img = np.asarray(image, np.float32).copy()
    colours = np.array(PALETTE, np.float32)
    fg = mask > 0
    img[fg] = (1 - alpha) * img[fg] + alpha * colours[mask[fg]]
    return img.clip(0, 255).astype(np.uint8)
