"""Classical cell-part pseudo-labels: nucleus and cytoplasm of the centred white cell.

No trained model: colour rules that hold for Romanowsky stains (May-Grünwald-Giemsa,
Wright). The nucleus absorbs green most and is blue-purple, so ``B - G`` separates it
(Otsu threshold over the stained pixels). The cell body is every pixel that is neither
bright background nor a red cell (red cells have ``R`` well above ``B``), in the connected
region that holds the nucleus, holes filled; cytoplasm = cell body minus nucleus. Used to
make pseudo-labels on sets without masks (PBC), documented as such; its own accuracy is
measured against the CellaVision expert masks in ``benchmarks/segmentation_cellavision.py``.

With ``all_parts`` the other parts of :data:`hemascope.taxonomy.CELL_PARTS` are labelled
too, by rules of the same kind: red cells and platelets away from the white cell (and a
margin around it), vacuoles inside it:

- **red cells**: redder than the background in CIELAB a* (Otsu threshold over the pixels
  outside the white cell, only when the two sides differ by at least 6 levels), pale centres
  filled, regions of at least 0.3 % of the image; regions hugging the nucleus are left out
  (an eosinophil's granules are as red);
- **platelets**: blue-purple regions of 0.05-1 % of the image that touch neither the white
  cell nor a red cell, farther than 2.2 nucleus radii from the nucleus centre (the rules
  often miss a pale cytoplasm, whose granules would pass for platelets);
- **vacuoles**: holes enclosed by the cytoplasm that are as bright and grey as the image's
  background.

Their vacuole calls are scored against WBCAtt's per-cell ``cytoplasm_vacuole`` labels in
``benchmarks/pseudo_parts.py``; red cells and platelets have no ground truth here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def classical_parts(image: np.ndarray, *, min_nucleus_fraction: float = 0.002,
                    all_parts: bool = False) -> np.ndarray:
    """Part indices ``(H, W)`` uint8 (0 background, 1 nucleus, 2 cytoplasm; with
    ``all_parts`` also 3 vacuole, 4 platelet, 5 red cell) for one single-cell RGB uint8
    image; all zeros when no nucleus is found. Pure."""
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
    t_blue = _otsu(blue[stained])
    nucleus = (blue > t_blue) & stained & (b >= r - 10)
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
    if all_parts:
        redness = cv2.cvtColor(blur, cv2.COLOR_RGB2LAB)[..., 1].astype(np.int16)
        _other_parts(out, cell=cell, nucleus=nucleus, redness=redness, background=background,
                     purple=stained & (blue > 0.6 * t_blue) & (b >= r - 10), sat=sat, val=val)
    return out


def add_pseudo_parts(image: np.ndarray, mask: np.ndarray, parts: Sequence[str]) -> np.ndarray:
    """An expert part mask (indices) with the classical rules' ``parts`` (names among
    :data:`hemascope.io.masks.COARSE_PARTS`: ``vacuole``, ``platelet``, ``rbc``) written in,
    each only on pixels the expert gave the label that stands for it in a coarser convention
    (red cells and platelets on "other", vacuoles on cytoplasm), so the expert's white cell
    is never relabelled as a red cell or platelet. A mask that already holds any of
    ``parts`` is an annotation of them and comes back unchanged, as it does when the rules
    find nothing. Pure."""
    from hemascope.io.masks import COARSE_PARTS
    from hemascope.taxonomy import CELL_PARTS

    names = list(CELL_PARTS.classes)
    unknown = [p for p in parts if p not in COARSE_PARTS]
    if unknown:
        raise ValueError(f"parts must be among {list(COARSE_PARTS)}, not {unknown}")
    mask = np.asarray(mask)
    ids = [names.index(p) for p in parts]
    if not ids or np.isin(mask, ids).any():
        return mask
    rules = classical_parts(image, all_parts=True)
    out = mask.copy()
    for p, i in zip(parts, ids):
        out[(rules == i) & (mask == names.index(COARSE_PARTS[p]))] = i
    return out


def _other_parts(out: np.ndarray, *, cell, nucleus, redness, background, purple, sat,
                 val) -> None:
    """Label red cells (5), platelets (4) and vacuoles (3) in ``out`` in place."""
    import cv2

    h, w = out.shape
    area = h * w
    near_cell = _morph(cell, cv2.MORPH_DILATE, 3)
    outside = ~near_cell
    rbc = np.zeros((h, w), bool)
    if outside.sum() > 0.05 * area:
        a = redness[outside]
        t = _otsu(np.clip(a, 0, 255))
        hi, lo = a[a > t], a[a <= t]
        if len(hi) and len(lo) and hi.mean() - lo.mean() >= 6:
            rbc = _fill_holes(_morph((redness > t) & outside, cv2.MORPH_OPEN, 2)) & outside
            rbc = _components(rbc, 0.003 * area, area)
            hug = _morph(nucleus, cv2.MORPH_DILATE, max(3, int(0.04 * max(h, w))))
            n, lab = cv2.connectedComponents(rbc.astype(np.uint8), connectivity=8)
            for i in range(1, n):
                if (lab == i)[hug].any():  # wrapped round the nucleus: eosinophil granules
                    rbc[lab == i] = False
    out[rbc] = 5
    # the rules often miss a pale cytoplasm, so the cell may reach further than ``cell``:
    # no platelet within 2.2 nucleus radii (of equal area) of the nucleus centre
    ys, xs = np.nonzero(nucleus)
    reach = _disc_mask((h, w), ys.mean(), xs.mean(), 2.2 * np.sqrt(len(ys) / np.pi))
    plt = _morph(purple & outside & ~reach & ~_morph(rbc, cv2.MORPH_DILATE, 2), cv2.MORPH_OPEN, 1)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(plt.astype(np.uint8), connectivity=8)
    for i in range(1, n):
        if 0.0005 * area <= stats[i, cv2.CC_STAT_AREA] <= 0.01 * area:
            out[lab == i] = 4
    bg = background & outside
    if bg.sum() < 16:
        return  # no background to compare the holes with
    bright = (val >= np.median(val[bg]) - 12) & (sat <= np.median(sat[bg]) + 12)
    holes = _morph(bright & cell & ~_morph(nucleus, cv2.MORPH_DILATE, 1), cv2.MORPH_OPEN, 1)
    inner = _morph(cell, cv2.MORPH_ERODE, 2)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=8)
    limit = 0.25 * cell.sum()
    for i in range(1, n):
        blob = lab == i
        if max(4, 0.0002 * area) <= stats[i, cv2.CC_STAT_AREA] <= limit and not (blob & ~inner).any():
            out[blob] = 3  # enclosed by the cell, not a bay of its outline


def _disc_mask(shape: tuple[int, int], cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius


def _components(mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """The connected regions of ``mask`` whose area lies in ``[low, high]``."""
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if low <= stats[i, cv2.CC_STAT_AREA] <= high]
    return np.isin(lab, keep) if keep else np.zeros(mask.shape, bool)


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
