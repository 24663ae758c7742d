"""White balance against a smear's background.

The brightest tenth of a smear field is the bare glass between cells (on a crowded field,
the palest parts of the red cells). Its median colour shows the lamp, the camera's white
balance and, in part, the lab's stain tint; per-channel gains that map it onto the
background colour of a model's training fields undo all three before the model sees the
field. Cheap (one percentile and one multiply) and used before detection.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: Pixels at or above this percentile of R+G+B count as background.
BRIGHT_PERCENTILE = 90.0
#: Gains are kept within [1 / MAX_GAIN, MAX_GAIN]; gains within GAIN_TOLERANCE of 1 are
#: not applied (the field already matches).
MAX_GAIN, GAIN_TOLERANCE = 2.0, 0.01
#: The background is estimated on at most about this many pixels (a regular subsample).
SAMPLE_PIXELS = 1 << 20


def background_colour(image: np.ndarray) -> np.ndarray:
    """Median RGB (float, 0-255) of the brightest tenth of an RGB uint8 field."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / SAMPLE_PIXELS)))
    px = img[::step, ::step].reshape(-1, 3)
    lum = px.astype(np.int32).sum(1)
    return np.median(px[lum >= np.percentile(lum, BRIGHT_PERCENTILE)], axis=0).astype(float)


def background_reference(images: Iterable[np.ndarray]) -> list[float]:
    """The median background colour of a set of fields (a model's training fields).

    Raises:
        ValueError: no images.
    """
    colours = [background_colour(im) for im in images]
    if not colours:
        raise ValueError("background_reference needs at least one image")
    return [round(float(v), 1) for v in np.median(colours, axis=0)]


def balance_background(image: np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """``image`` with per-channel gains that bring its background to ``reference``.

    Returns the input itself when no gain is more than ``GAIN_TOLERANCE`` off 1 (or the
    field is black), else a new uint8 array.
    """
    seen = background_colour(image)
    if seen.max() < 1:
        return image
    gains = np.clip(np.asarray(reference, float) / np.maximum(seen, 1.0), 1 / MAX_GAIN, MAX_GAIN)
    if np.all(np.abs(gains - 1) <= GAIN_TOLERANCE):
        return image
    out = np.asarray(image, np.float32) * gains.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
