"""Classical cell-part pseudo-labels: nucleus and cytoplasm of the centred white cell.

No trained model: colour rules that hold for Romanowsky stains (May-Grünwald-Giemsa,
Wright). The nucleus absorbs green most and is blue-purple, so ``B - G`` separates it
(Otsu threshold over the stained pixels). The cell body is every pixel that is neither
bright background nor a red cell (red cells have ``R`` well above ``B``), in the connected
region that holds the nucleus, holes filled; cytoplasm = cell body minus nucleus. Used to
make pseudo-labels on sets without masks (PBC), documented as such; its own accuracy is
measured against the CellaVision expert masks in ``benchmarks/segmentation_cellavision.py``.
"""

from __future__ import annotations

import numpy as np


def classical_parts(image: np.ndarray, *, min_nucleus_fraction: float = 0.002) -> np.ndarray:
    """Part indices ``(H, W)`` uint8 (0 background, 1 nucleus, 2 cytoplasm) for one
    single-cell RGB uint8 image; all zeros when no nucleus is found. Pure."""
    import cv2
    from scipy import ndimage as ndi

    img = np.ascontiguousarray(image, np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {img.shape}")
    h, w = img.shape[:2]
    f = cv2.GaussianBlur(img, (5, 5), 0).astype(np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    hsv = cv2.cvtColor(cv2.GaussianBlur(img, (5, 5), 0), cv2.COLOR_RGB2HSV)
    sat, val = hsv[..., 1].astype(np.int16), hsv[..., 2].astype(np.int16)
    _, s_thr = cv2.threshold(hsv[..., 1], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    background = (sat < max(15, 0.5 * _otsu(hsv[..., 1]))) & (val > 150)
    blue = np.clip(b - g, 0, 255).astype(np.uint8)
    stained = ~background
    if stained.sum() < 16:
        return np.zeros((h, w), np.uint8)
    thr = _otsu(blue[stained])
    nucleus = (blue > thr) & stained & (b >= r - 10)
    nucleus = ndi.binary_opening(nucleus, iterations=2)
    lab, n = ndi.label(nucleus)
    if n == 0:
        return np.zeros((h, w), np.uint8)
    sizes = ndi.sum(nucleus, lab, range(1, n + 1))
    ys, xs = np.mgrid[0:h, 0:w]
    # keep nucleus pieces near the centre (lobes of one cell), the largest first
    centre = np.array([h / 2, w / 2])
    keep = np.zeros_like(nucleus)
    order = np.argsort(-sizes)
    main = order[0] + 1
    for i in order:
        piece = lab == i + 1
        if sizes[i] < min_nucleus_fraction * h * w:
            continue
        cy, cx = ys[piece].mean(), xs[piece].mean()
        if i + 1 == main or np.hypot(cy - centre[0], cx - centre[1]) < 0.3 * max(h, w):
            keep |= piece
    if not keep.any():
        return np.zeros((h, w), np.uint8)
    nucleus = ndi.binary_fill_holes(keep)
    red = (r - b) > 25
    body = stained & ~red | nucleus
    body = ndi.binary_closing(body, iterations=2)
    lab, _ = ndi.label(body)
    ids = np.unique(lab[nucleus])
    cell = np.isin(lab, ids[ids > 0])
    cell = ndi.binary_fill_holes(ndi.binary_opening(cell, iterations=2) | nucleus)
    out = np.zeros((h, w), np.uint8)
    out[cell] = 2
    out[nucleus] = 1
    return out


def _otsu(values: np.ndarray) -> float:
    import cv2

    v = np.asarray(values, np.uint8).reshape(-1, 1)
    t, _ = cv2.threshold(v, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)
