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

    img = np.ascontiguousarray(image, np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {img.shape}")
    h, w = img.shape[:2]
    blur = cv2.GaussianBlur(img, (5, 5), 0)
    f = blur.astype(np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    hsv = cv2.cvtColor(blur, cv2.COLOR_RGB2HSV)
    sat, val = hsv[..., 1].astype(np.int16), hsv[..., 2].astype(np.int16)
    background = (sat < max(15, 0.5 * _otsu(hsv[..., 1]))) & (val > 150)
    stained = ~background
    if stained.sum() < 16:
        return np.zeros((h, w), np.uint8)
    blue = np.clip(b - g, 0, 255).astype(np.uint8)
    nucleus = (blue > _otsu(blue[stained])) & stained & (b >= r - 10)
    nucleus = _morph(nucleus, cv2.MORPH_OPEN, 2)
    n, lab, stats, cents = cv2.connectedComponentsWithStats(nucleus.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros((h, w), np.uint8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    main = int(np.argmax(sizes)) + 1
    keep = np.zeros((h, w), bool)
    for i in range(1, n):  # pieces near the centre are lobes of the one cell
        if sizes[i - 1] < min_nucleus_fraction * h * w:
            continue
        cx, cy = cents[i]
        if i == main or np.hypot(cy - h / 2, cx - w / 2) < 0.3 * max(h, w):
            keep |= lab == i
    if not keep.any():
        return np.zeros((h, w), np.uint8)
    nucleus = _fill_holes(keep)
    red = (r - b) > 25
    body = _morph((stained & ~red) | nucleus, cv2.MORPH_CLOSE, 2)
    n, lab = cv2.connectedComponents(body.astype(np.uint8), connectivity=8)
    ids = np.unique(lab[nucleus])
    cell = np.isin(lab, ids[ids > 0])
    cell = _fill_holes(_morph(cell, cv2.MORPH_OPEN, 2) | nucleus)
    out = np.zeros((h, w), np.uint8)
    out[cell] = 2
    out[nucleus] = 1
    return out


def _morph(mask: np.ndarray, op: int, radius: int) -> np.ndarray:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(mask.astype(np.uint8), op, k) > 0


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Pixels not reachable from the border through background are filled."""
    import cv2

    h, w = mask.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = mask
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return (pad[1:-1, 1:-1] > 0) | (flood[1:-1, 1:-1] == 0)


def _otsu(values: np.ndarray) -> float:
    import cv2

    v = np.asarray(values, np.uint8).reshape(-1, 1)
    t, _ = cv2.threshold(v, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)
