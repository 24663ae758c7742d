"""Single-cell preprocessing shared by training, evaluation and inference.

A cell image is padded to a square with its own border colour (so non-square crops are
not distorted and nothing is cut off) and resized to ``size x size`` with an
anti-aliased bicubic filter. Square inputs such as PBC's are simply resized.
"""

from __future__ import annotations

import numpy as np


def letterbox_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pad ``(H, W, 3)`` uint8 to a square with the median border colour, resize to ``size``.

    Pure: returns a new ``(size, size, 3)`` uint8 array.
    """
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    if h != w:
        side = max(h, w)
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        fill = np.median(border, axis=0).astype(np.uint8)
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = fill
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top:top + h, left:left + w] = img
        img = canvas
    if img.shape[0] == size:
        return img.copy()
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC,
                                                  reducing_gap=None))
