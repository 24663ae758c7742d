"""Classical white-cell extraction without any trained model (Pal et al., RV-PBS study).

HSV saturation threshold (Otsu) finds the strongly stained cell, dilation joins nucleus
lobes and cytoplasm, the distance transform and its peaks give watershed markers, the
watershed splits touching cells, and the region nearest the centre (largest on ties) is
the cell. Used to crop cells from single-cell images and to turn WBC boxes on smear
fields into masks (pseudo-labels for instance segmentation).

Limit: saturation finds the nucleus and the darker cytoplasm; pale cytoplasm (neutrophils)
is only covered by the dilation margin, so masks are nucleus-centred, not exact outlines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellMask:
    """The extracted cell: boolean mask (image size), its box (xyxy, pixel edges) and outline."""

    mask: np.ndarray
    box: tuple[float, float, float, float]
    polygon: tuple[tuple[float, float], ...]
    area: int


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - a core dependency
        from hemascope.errors import HemascopeError

        raise HemascopeError("classical extraction needs opencv-python-headless") from None
    return cv2


def stained_mask(image: np.ndarray, *, threshold: float | None = None,
                 dilate: int | None = None) -> np.ndarray:
    """Boolean mask of strongly stained pixels: saturation above Otsu's (or ``threshold``),
    closed and dilated by ``dilate`` pixels (default: 3 % of the shorter side)."""
    cv2 = _cv2()
    img = np.ascontiguousarray(image, np.uint8)
    if dilate is None:
        dilate = max(2, round(0.03 * min(img.shape[:2])))
    s = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1]
    s = cv2.GaussianBlur(s, (5, 5), 0)
    if threshold is None:
        _, m = cv2.threshold(s, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        m = np.where(s > threshold, 255, 0).astype(np.uint8)
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
        m = cv2.dilate(m, kernel)
    return m > 0


#: Larger images are outlined on a copy shrunk to this longer side (bounded time and memory).
MAX_SIDE = 1024


def extract_cell(image: np.ndarray, *, threshold: float | None = None, dilate: int | None = None,
                 peak_fraction: float = 0.5, min_area_fraction: float = 0.005,
                 max_side: int | None = MAX_SIDE) -> CellMask | None:
    """The stained cell nearest the image centre, or ``None`` if nothing is stained.

    Args:
        image: RGB uint8 ``(H, W, 3)``; not modified.
        threshold: saturation threshold (0-255); ``None`` uses Otsu's.
        dilate: radius of the closing/dilation that joins lobes and cytoplasm
            (default: 3 % of the shorter side).
        peak_fraction: distance-transform peaks above this fraction of the maximum seed
            the watershed (one seed per touching cell).
        min_area_fraction: regions smaller than this share of the image are ignored.
        max_side: an image whose longer side exceeds this is outlined on a shrunk copy and
            the result scaled back (``None``: always at full size).
    """
    cv2 = _cv2()
    img = np.ascontiguousarray(image, np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {img.shape}")
    if max_side is not None and max(img.shape[:2]) > max_side:
        return _extract_shrunk(img, max_side, threshold=threshold, dilate=dilate,
                               peak_fraction=peak_fraction, min_area_fraction=min_area_fraction)
    fg = stained_mask(img, threshold=threshold, dilate=dilate)
    h, w = fg.shape
    if fg.sum() < max(4, min_area_fraction * h * w) or fg.all():
        return None
    fg8 = fg.astype(np.uint8)
    dist = cv2.distanceTransform(fg8, cv2.DIST_L2, 5)
    peaks = (dist >= peak_fraction * dist.max()).astype(np.uint8)
    n, markers = cv2.connectedComponents(peaks)
    markers = markers + 1  # background seed = 1, cell seeds 2..n
    unknown = (fg8 > 0) & (peaks == 0)
    markers[unknown] = 0
    markers[fg8 == 0] = 1
    labels = cv2.watershed(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), markers.astype(np.int32))
    best, best_key = None, None
    cy, cx = h / 2, w / 2
    for lab in range(2, n + 1):
        region = labels == lab
        area = int(region.sum())
        if area < min_area_fraction * h * w:
            continue
        ys, xs = np.nonzero(region)
        d = np.hypot(ys.mean() - cy, xs.mean() - cx)
        key = (d // (0.1 * max(h, w)), -area)  # nearest the centre; the larger on a near tie
        if best_key is None or key < best_key:
            best, best_key = region, key
    if best is None:
        return None
    ys, xs = np.nonzero(best)
    contours, _ = cv2.findContours(best.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2)
    polygon = tuple((float(x) + 0.5, float(y) + 0.5) for x, y in outline)
    return CellMask(best, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                    polygon, int(best.sum()))


def _extract_shrunk(img: np.ndarray, max_side: int, *, dilate: int | None, **kw) -> CellMask | None:
    cv2 = _cv2()
    h, w = img.shape[:2]
    f = max_side / max(h, w)
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    cell = extract_cell(small, dilate=None if dilate is None else max(1, round(dilate * f)),
                        max_side=None, **kw)
    if cell is None:
        return None
    sx, sy = w / small.shape[1], h / small.shape[0]
    mask = cv2.resize(cell.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    x0, y0, x1, y1 = cell.box
    return CellMask(mask, (x0 * sx, y0 * sy, x1 * sx, y1 * sy),
                    tuple((x * sx, y * sy) for x, y in cell.polygon), int(mask.sum()))


def mask_in_box(image: np.ndarray, box, *, margin: float = 0.1, **kw) -> CellMask | None:
    """Extract the cell inside a detection box of a larger field (mask in field coordinates)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    cx0, cy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    cx1, cy1 = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
    if cx1 - cx0 < 4 or cy1 - cy0 < 4:
        return None
    cell = extract_cell(image[cy0:cy1, cx0:cx1], **kw)
    if cell is None:
        return None
    full = np.zeros((h, w), bool)
    full[cy0:cy1, cx0:cx1] = cell.mask
    bx = cell.box
    return CellMask(full, (bx[0] + cx0, bx[1] + cy0, bx[2] + cx0, bx[3] + cy0),
                    tuple((x + cx0, y + cy0) for x, y in cell.polygon), cell.area)
