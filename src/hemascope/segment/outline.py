"""A white cell's outline and nucleus from a part-segmentation map (pure numpy + OpenCV).

The part model (:mod:`hemascope.segment.predict`) labels every pixel of a cell crop as
background, nucleus, cytoplasm, vacuole, platelet or red cell. The cell is the connected
region of nucleus, cytoplasm and vacuole pixels at (or nearest) the crop's centre, where
the detector or the single-cell image put it, with its holes filled; its nucleus is the
nucleus pixels inside it, lobes kept apart. Unlike the classical extraction
(:mod:`hemascope.segment.classical`), which finds the stained nucleus and stops there,
this covers pale cytoplasm, and the nucleus-to-cell area ratio can be read off it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Part names that belong to the white cell itself.
CELL_PARTS = ("nucleus", "cytoplasm", "vacuole")


@dataclass(frozen=True)
class PartOutline:
    """The cell found in a part map, in the map's pixels.

    Attributes:
        polygon: outer outline of the cell ``[(x, y), ...]``.
        nucleus: one outline per nucleus piece (lobe) inside the cell, largest first.
        box: ``(x0, y0, x1, y1)`` of the cell, pixel edges.
        cell_area: pixels of the cell (holes filled).
        nucleus_area: nucleus pixels inside it.
    """

    polygon: list[tuple[float, float]]
    nucleus: list[list[tuple[float, float]]]
    box: tuple[float, float, float, float]
    cell_area: int
    nucleus_area: int

    @property
    def nc_ratio(self) -> float:
        """Nucleus area / cell area (the nuclear-cytoplasmic ratio by area)."""
        return self.nucleus_area / self.cell_area if self.cell_area else 0.0

    def placed(self, sx: float, sy: float, dx: float, dy: float, width: int,
               height: int) -> "PartOutline":
        """The outline scaled by ``(sx, sy)``, moved by ``(dx, dy)`` and clipped to a
        ``width`` x ``height`` image: from a part map's pixels to the image's (a crop's
        padding can reach past the image edge). Areas scale with ``sx * sy``."""
        def move(poly):
            return [(float(np.clip(x * sx + dx, 0, width)), float(np.clip(y * sy + dy, 0, height)))
                    for x, y in poly]

        x0, y0, x1, y1 = self.box
        box = (float(np.clip(x0 * sx + dx, 0, width)), float(np.clip(y0 * sy + dy, 0, height)),
               float(np.clip(x1 * sx + dx, 0, width)), float(np.clip(y1 * sy + dy, 0, height)))
        return PartOutline(move(self.polygon), [move(p) for p in self.nucleus], box,
                           int(round(self.cell_area * sx * sy)),
                           int(round(self.nucleus_area * sx * sy)))


def part_indices(classes: Sequence[str]) -> tuple[list[int], int | None]:
    """Indices of the cell's own parts and of the nucleus among a part model's classes."""
    cell = [i for i, c in enumerate(classes) if c in CELL_PARTS]
    return cell, (list(classes).index("nucleus") if "nucleus" in classes else None)


def centre_region(labels: np.ndarray, classes: Sequence[str], *,
                  min_area_fraction: float = 0.01) -> np.ndarray | None:
    """The cell at the centre of a part map ``(H, W)`` of class indices into ``classes``:
    a boolean mask of the connected region of cell parts (8-connected) that covers the
    centre, or else lies nearest to it (within 5 % of the map's side, the largest), holes
    not filled; ``None`` when no region covers at least ``min_area_fraction`` of the map."""
    import cv2

    lab = np.asarray(labels)
    if lab.ndim != 2 or not lab.size:
        raise ValueError(f"expected an (H, W) label map, got {lab.shape}")
    cell_ids, _ = part_indices(classes)
    if not cell_ids:
        raise ValueError(f"the part classes {list(classes)} name none of {CELL_PARTS}")
    h, w = lab.shape
    fg = np.isin(lab, cell_ids).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    best, best_key = None, None
    for k in range(1, n):
        area = int(stats[k, cv2.CC_STAT_AREA])
        if area < min_area_fraction * h * w:
            continue
        covers = comp[int(round(cy)), int(round(cx))] == k
        ys, xs = np.nonzero(comp == k)
        d = float(np.min(np.hypot(ys - cy, xs - cx)))  # 0 when it covers the centre
        key = (not covers, d // (0.05 * max(h, w)), -area)
        if best_key is None or key < best_key:
            best, best_key = k, key
    return None if best is None else comp == best


def outline_from_parts(labels: np.ndarray, classes: Sequence[str], *,
                       min_area_fraction: float = 0.01) -> PartOutline | None:
    """The cell at the centre of a part map ``(H, W)`` of class indices into ``classes``
    (:func:`centre_region`, holes filled), or ``None`` when no region of cell parts covers
    at least ``min_area_fraction`` of it."""
    import cv2

    found = centre_region(labels, classes, min_area_fraction=min_area_fraction)
    if found is None:
        return None
    lab = np.asarray(labels)
    _, nucleus_id = part_indices(classes)
    region = found.astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outer = max(contours, key=cv2.contourArea)
    filled = np.zeros_like(region)
    cv2.drawContours(filled, [outer], -1, 1, thickness=-1)  # holes filled
    nucleus_polys: list[list[tuple[float, float]]] = []
    nucleus_area = 0
    if nucleus_id is not None:
        nuc = ((lab == nucleus_id) & (filled > 0)).astype(np.uint8)
        nucleus_area = int(nuc.sum())
        pieces, _ = cv2.findContours(nuc, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        keep = [c for c in pieces if cv2.contourArea(c) >= 0.01 * nucleus_area and len(c) >= 3]
        nucleus_polys = [_poly(c) for c in sorted(keep, key=cv2.contourArea, reverse=True)]
    ys, xs = np.nonzero(filled)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return PartOutline(_poly(outer), nucleus_polys, box, int(filled.sum()), nucleus_area)


def keep_centre_cell(parts: np.ndarray, classes: Sequence[str], *,
                     min_area_fraction: float = 0.002) -> np.ndarray:
    """A part map with every cell-part pixel outside the centre cell (:func:`centre_region`)
    turned into background: one white cell per single-cell image, so that red cells or a
    neighbour's edge taken for cytoplasm or nucleus drop out. ``parts`` is ``(H, W)`` class
    indices, or ``(C, H, W)`` class probabilities, whose cell-part mass outside the cell
    moves to the background class (``"background"``, else index 0). Maps with no cell come
    back unchanged. Pure."""
    arr = np.asarray(parts)
    labels = arr.argmax(0) if arr.ndim == 3 else arr
    region = centre_region(labels, classes, min_area_fraction=min_area_fraction)
    if region is None:
        return arr
    cell_ids, _ = part_indices(classes)
    bg = list(classes).index("background") if "background" in classes else 0
    out = arr.copy()
    if arr.ndim == 3:
        outside = ~region
        moved = out[cell_ids][:, outside].sum(0)
        for i in cell_ids:
            out[i][outside] = 0
        out[bg][outside] += moved
    else:
        out[np.isin(labels, cell_ids) & ~region] = bg
    return out


def _poly(contour: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x) + 0.5, float(y) + 0.5) for x, y in contour.reshape(-1, 2)]
