"""Can the models read this image? Plain checks of a decoded image (pure functions).

Every shipped model reads stain colour on a bright-field background. A grayscale, blank,
very dark, washed-out or tiny image still decodes and still gets an answer, and the answer
can look sure: a classifier must pick one of its classes, whatever it is shown.
:func:`image_warnings` says so in words, so that ``classify`` and ``analyze`` can attach
the warning to the answer and flag its cells for review.

The limits sit far outside what the real sets here show: on PBC, CellaVision, BCCD and CBC
images the smallest side is at least 224 px, the luminance spread at least 11, the colour
spread at least 58 and the mean brightness between 157 and 220 (counted by
``benchmarks/image_quality.py``, which also checks that degraded copies are caught).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Pixels looked at per image: larger images are subsampled on a regular grid.
_SAMPLE_PIXELS = 100_000
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class QualityLimits:
    """Where an image stops looking like a stained smear photograph or cell crop.

    Attributes:
        min_side: shorter side in pixels below which detail is gone (BloodMNIST's 28 px
            cells are below it; the classifier sees 224 px).
        min_contrast: standard deviation of the luminance (0-255) below which the image is
            one colour.
        min_colour: 99th percentile of the per-pixel channel spread (max - min of R, G, B)
            below which the image has no stain colour (grayscale).
        min_brightness / max_brightness: mean luminance outside this range is an under- or
            over-exposed photograph (bright-field background is light, not white-out).
    """

    min_side: int = 32
    min_contrast: float = 3.0
    min_colour: float = 8.0
    min_brightness: float = 80.0
    max_brightness: float = 245.0


@dataclass(frozen=True)
class ImageStats:
    """The numbers :func:`image_warnings` judges."""

    min_side: int
    contrast: float
    colour: float
    brightness: float


def image_stats(image: np.ndarray) -> ImageStats:
    """Shorter side, luminance std, 99th percentile channel spread and mean luminance of an
    RGB ``uint8`` image (``(H, W, 3)``; large images are subsampled)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape[:2]:
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    step = max(1, int(np.ceil(np.sqrt(a.shape[0] * a.shape[1] / _SAMPLE_PIXELS))))
    s = a[::step, ::step].reshape(-1, 3).astype(np.float32)
    luma = s @ _LUMA
    spread = s.max(axis=1) - s.min(axis=1)
    return ImageStats(min_side=int(min(a.shape[:2])), contrast=float(luma.std()),
                      colour=float(np.percentile(spread, 99)), brightness=float(luma.mean()))


def image_warnings(image: np.ndarray, limits: QualityLimits = QualityLimits()) -> list[str]:
    """Why the models may not read ``image`` (RGB ``uint8``): an empty list when nothing
    looks wrong. Each warning is one short sentence naming the measured value."""
    st = image_stats(image)
    h, w = np.asarray(image).shape[:2]
    out = []
    if st.min_side < limits.min_side:
        out.append(f"only {w}x{h} px (shorter side below {limits.min_side}): too small to "
                   "show a cell's detail")
    if st.contrast < limits.min_contrast:
        out.append(f"blank: one colour (luminance spread {st.contrast:.1f}), nothing to see")
        return out
    if st.colour < limits.min_colour:
        out.append("grayscale: no stain colour (channel spread "
                   f"{st.colour:.1f}); the models read colour")
    if st.brightness < limits.min_brightness:
        out.append(f"very dark (mean brightness {st.brightness:.0f} of 255): under-exposed or "
                   "not a bright-field image")
    elif st.brightness > limits.max_brightness:
        out.append(f"washed out (mean brightness {st.brightness:.0f} of 255): over-exposed or "
                   "empty")
    return out
