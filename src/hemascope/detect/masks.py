"""Instance masks for training Mask R-CNN: from polygons, else classical pseudo-labels.

Smear sets such as BCCD/CBC have boxes only. Each box then gets a **pseudo-label** mask
from the smear-segmentation study's classical extraction (HSV threshold, dilation,
distance transform, watershed; :func:`hemascope.segment.classical.mask_in_box`), and
the inscribed ellipse where that finds nothing. Masks are kept box-local (a few kB each)
and rendered to full size only for the batch being trained.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Polygon = Sequence[tuple[float, float]]


def _grid(box, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (int(max(0, np.floor(x0))), int(max(0, np.floor(y0))),
            int(min(width, np.ceil(x1))), int(min(height, np.ceil(y1))))


def mask_crops(image: np.ndarray, boxes: np.ndarray, polygons: Sequence[Sequence[Polygon]] | None = None,
               ) -> tuple[list[np.ndarray], list[str]]:
    """One box-local bool mask per box and where it came from (polygon, classical, ellipse)."""
    import cv2

    from hemascope.segment.classical import mask_in_box

    h, w = image.shape[:2]
    crops, sources = [], []
    for k, box in enumerate(np.asarray(boxes, float).reshape(-1, 4)):
        gx0, gy0, gx1, gy1 = _grid(box, h, w)
        polys = polygons[k] if polygons is not None and k < len(polygons) else ()
        if polys:
            m = np.zeros((gy1 - gy0, gx1 - gx0), np.uint8)
            for poly in polys:
                pts = np.round(np.asarray(poly, float) - [gx0, gy0]).astype(np.int32)
                cv2.fillPoly(m, [pts.reshape(-1, 1, 2)], 1)
            crops.append(m.astype(bool))
            sources.append("polygon")
            continue
        cell = mask_in_box(image, box, margin=0.0)
        if cell is not None:
            m = cell.mask[gy0:gy1, gx0:gx1]
            if m.sum() >= 0.2 * m.size:
                crops.append(m.copy())
                sources.append("classical")
                continue
        crops.append(ellipse(gy1 - gy0, gx1 - gx0))
        sources.append("ellipse")
    return crops, sources


def ellipse(height: int, width: int) -> np.ndarray:
    """The ellipse inscribed in a ``height x width`` box (cells are round)."""
    yy, xx = np.mgrid[0:max(height, 1), 0:max(width, 1)]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    return ((yy - cy) / max(height / 2, 0.5)) ** 2 + ((xx - cx) / max(width / 2, 0.5)) ** 2 <= 1


def render_masks(crops: Sequence[np.ndarray], boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Full-size masks ``(H, W, N)`` uint8 from box-local crops."""
    out = np.zeros((height, width, len(crops)), np.uint8)
    for k, (m, box) in enumerate(zip(crops, np.asarray(boxes, float).reshape(-1, 4))):
        gx0, gy0, gx1, gy1 = _grid(box, height, width)
        hh, ww = min(m.shape[0], gy1 - gy0), min(m.shape[1], gx1 - gx0)
        out[gy0:gy0 + hh, gx0:gx0 + ww, k] = m[:hh, :ww]
    return out
