"""Measurements of a cell from its part map: size, shape and nucleus form as numbers.

A part map (:func:`hemascope.segment.predict.segment_arrays`: one class index per pixel)
says where the white cell's nucleus and cytoplasm are. From it, :func:`measure_cell` reads
what hematologists judge by eye: how much of the frame the cell takes, how much of the
cell is nucleus, how many pieces (lobes) the nucleus has, and how round or irregular the
cell and nucleus outlines are. Areas are shares of the image, so they compare cells
imaged at one magnification (one lab's scanner), not across labs.

Pure numpy + OpenCV; every value is finite (0 where a part is missing).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: The measurements, in the order :func:`measure_cell` returns them.
MEASUREMENTS = (
    "cell_share",          # cell pixels (nucleus + cytoplasm + vacuole) / image pixels
    "nucleus_share",       # nucleus pixels / image pixels
    "nc_ratio",            # nucleus pixels / cell pixels
    "nucleus_pieces",      # connected nucleus pieces holding >= 5 % of the nucleus
    "nucleus_solidity",    # nucleus pixels / area of their convex hull
    "nucleus_elongation",  # sqrt(major / minor second moment) of the nucleus pixels
    "cell_solidity",       # cell pixels / area of their convex hull
    "cell_elongation",     # sqrt(major / minor second moment) of the cell pixels
)
#: A nucleus piece must hold at least this share of the nucleus pixels to count.
MIN_PIECE = 0.05


def _solidity(mask: np.ndarray) -> float:
    import cv2

    pts = np.column_stack(np.nonzero(mask)[::-1]).astype(np.int32)
    if len(pts) < 3:
        return 0.0
    hull = cv2.convexHull(pts)
    area = float(cv2.contourArea(hull))
    return float(min(1.0, mask.sum() / area)) if area > 0 else 0.0


def _elongation(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return 0.0
    ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    return float(np.sqrt(ev[1] / ev[0])) if ev[0] > 1e-9 else 0.0


def _pieces(mask: np.ndarray) -> int:
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return 0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= MIN_PIECE * areas.sum()).sum())


def measure_cell(parts: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The :data:`MEASUREMENTS` of the cell in a part map ``(H, W)`` of indices into
    ``classes`` (which must name ``nucleus`` and ``cytoplasm``; ``vacuole`` counts as cell).

    Raises:
        ValueError: a map that is not 2-D, or classes without nucleus or cytoplasm.
    """
    parts = np.asarray(parts)
    if parts.ndim != 2 or parts.size == 0:
        raise ValueError(f"a part map must be a non-empty 2-D array, got shape {parts.shape}")
    if "nucleus" not in classes or "cytoplasm" not in classes:
        raise ValueError(f"the part classes must name nucleus and cytoplasm, got {list(classes)}")
    nucleus = parts == classes.index("nucleus")
    cell = nucleus | (parts == classes.index("cytoplasm"))
    if "vacuole" in classes:
        cell |= parts == classes.index("vacuole")
    n_px, c_px, total = float(nucleus.sum()), float(cell.sum()), float(parts.size)
    return np.array([c_px / total, n_px / total, n_px / c_px if c_px else 0.0,
                     _pieces(nucleus), _solidity(nucleus), _elongation(nucleus),
                     _solidity(cell), _elongation(cell)], dtype=np.float64)


def measure_cells(maps: Sequence[np.ndarray], classes: Sequence[str]) -> np.ndarray:
    """``(N, len(MEASUREMENTS))`` for a list of part maps."""
    return (np.stack([measure_cell(m, classes) for m in maps]) if len(maps)
            else np.zeros((0, len(MEASUREMENTS))))
