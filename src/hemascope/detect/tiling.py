"""Tiled inference geometry (pure numpy): overlapping tiles and fusion of their boxes.

A field too large for one pass is cut into tiles that overlap by more than the largest
cell, so every cell lies whole inside at least one tile. Boxes cut by an inner tile edge
are dropped (the neighbouring tile sees the whole cell) and duplicates from the overlap
are removed by class-wise NMS. Memory stays bounded by the tile size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hemascope.detect.ensemble import Detections, nms

Tile = tuple[int, int, int, int]  # x0, y0, x1, y1


def tile_grid(height: int, width: int, *, tile: int, overlap: int) -> list[Tile]:
    """Tiles of at most ``tile`` px covering the image, neighbours overlapping by ``overlap``."""
    if tile <= overlap:
        raise ValueError("tile must be larger than overlap")

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = tile - overlap
        k = int(np.ceil((n - tile) / step))
        return sorted({min(i * step, n - tile) for i in range(k + 1)})

    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in starts(height) for x in starts(width)]


def merge_tiles(parts: Sequence[Detections], tiles: Sequence[Tile], *, height: int, width: int,
                iou: float = 0.5, edge: float = 2.0) -> Detections:
    """Fuse per-tile detections (boxes in tile coordinates) into one field.

    A box within ``edge`` px of a tile side that is not also an image side is dropped:
    that cell is cut, and the overlapping tile holds it whole.
    """
    boxes, scores, labels = [], [], []
    for det, (x0, y0, x1, y1) in zip(parts, tiles):
        if not len(det):
            continue
        b = np.asarray(det.boxes, float).reshape(-1, 4) + [x0, y0, x0, y0]
        cut = np.zeros(len(b), bool)
        if x0 > 0:
            cut |= b[:, 0] <= x0 + edge
        if y0 > 0:
            cut |= b[:, 1] <= y0 + edge
        if x1 < width:
            cut |= b[:, 2] >= x1 - edge
        if y1 < height:
            cut |= b[:, 3] >= y1 - edge
        keep = ~cut
        boxes.append(b[keep])
        scores.append(np.asarray(det.scores, float)[keep])
        labels.append(np.asarray(det.labels, np.int64)[keep])
    if not boxes:
        return Detections.empty()
    b, s, lab = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
    keep = np.concatenate([np.flatnonzero(lab == c)[nms(b[lab == c], s[lab == c], iou=iou)]
                           for c in np.unique(lab)]) if len(lab) else np.zeros(0, int)
    keep = keep[np.argsort(-s[keep], kind="stable")]
    return Detections(b[keep], s[keep], lab[keep])
