"""Synthetic cells and smear fields for tests, demos and smoke-training.

The images are cartoons, not data: they are cheap, deterministic for a seed, and differ
by class the way real cells do (nucleus shape and size, cytoplasm and granule colour), so
a tiny model can learn them in a few steps and a test can tell if it did not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hemascope.io.annotations import ImageAnnotation, Instance

#: Cell kinds :func:`make_cell` can draw (concept names of :mod:`hemascope.taxonomy`).
CELL_KINDS = ("basophil", "eosinophil", "erythroblast", "immature_granulocyte",
              "lymphocyte", "monocyte", "neutrophil", "platelet")

_BACKGROUND = np.array([236, 226, 222], np.float32)
_RBC = np.array([222, 160, 160], np.float32)
_NUCLEUS = np.array([92, 52, 128], np.float32)
# (cytoplasm rgb, granule rgb or None, cell radius frac, nucleus lobes, nucleus radius frac)
_STYLE = {
    "neutrophil": ((226, 196, 210), (190, 140, 180), 0.36, 3, 0.11),
    "eosinophil": ((232, 170, 140), (215, 95, 70), 0.38, 2, 0.13),
    "basophil": ((170, 130, 190), (70, 30, 110), 0.33, 1, 0.17),
    "lymphocyte": ((160, 180, 225), None, 0.27, 1, 0.22),
    "monocyte": ((185, 180, 205), None, 0.42, 1, 0.22),
    "erythroblast": ((150, 120, 170), None, 0.25, 1, 0.16),
    "immature_granulocyte": ((200, 170, 215), (150, 90, 160), 0.40, 1, 0.20),
    "platelet": ((170, 120, 190), (120, 70, 150), 0.12, 0, 0.0),
}


@dataclass(frozen=True)
class SyntheticCell:
    """A drawn single-cell image.

    Attributes:
        image: RGB ``uint8`` ``(size, size, 3)``.
        mask: ``uint8`` part labels in :data:`hemascope.taxonomy.CELL_PARTS` order
            (0 background, 1 nucleus, 2 cytoplasm, 5 red cell).
        label: the concept drawn.
    """

    image: np.ndarray
    mask: np.ndarray
    label: str


@dataclass(frozen=True)
class SyntheticField:
    """A drawn smear field with its ground truth (labels ``WBC``, ``RBC``, ``Platelets``)."""

    image: np.ndarray
    annotation: ImageAnnotation


def make_cell(kind: str, *, seed: int = 0, size: int = 64) -> SyntheticCell:
    """Draw one centred cell of ``kind`` (see :data:`CELL_KINDS`) with a few red cells around."""
    if kind not in _STYLE:
        raise ValueError(f"unknown synthetic cell kind {kind!r}; choose from {CELL_KINDS}")
    rng = np.random.default_rng(seed)
    img = np.broadcast_to(_BACKGROUND, (size, size, 3)).copy()
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(2, 5)):  # red cells in the corners, partly under the cell
        cx, cy = rng.choice([0.1, 0.9], 2) * size + rng.normal(0, size * 0.05, 2)
        _paint(img, mask, (xx - cx) ** 2 + (yy - cy) ** 2 <= (size * 0.2) ** 2, _RBC, 5)
    cyto, gran, r_cell, lobes, r_nuc = _STYLE[kind]
    c = size / 2 + rng.normal(0, size * 0.02, 2)
    r = size * r_cell * rng.uniform(0.9, 1.1)
    cell = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= r**2
    _paint(img, mask, cell, np.array(cyto, np.float32), 2)
    if gran is not None:
        dots = (rng.random((size, size)) < 0.18) & cell
        img[dots] = np.array(gran, np.float32)
    if lobes:
        nuc = np.zeros_like(cell)
        angle0 = rng.uniform(0, 2 * np.pi)
        spread = 0.0 if lobes == 1 else r * 0.45
        for i in range(lobes):
            a = angle0 + 2 * np.pi * i / lobes
            nx, ny = c[0] + spread * np.cos(a), c[1] + spread * np.sin(a)
            rn = size * r_nuc * rng.uniform(0.9, 1.1)
            if kind == "monocyte":  # kidney shape: a disc with a bite taken out
                lobe = ((xx - nx) ** 2 + (yy - ny) ** 2 <= rn**2) & ~(
                    (xx - nx - rn * np.cos(a)) ** 2 + (yy - ny - rn * np.sin(a)) ** 2 <= (0.6 * rn) ** 2)
            else:
                lobe = (xx - nx) ** 2 + (yy - ny) ** 2 <= rn**2
            nuc |= lobe
        nuc &= cell
        _paint(img, mask, nuc, _NUCLEUS * rng.uniform(0.85, 1.1), 1)
    img += rng.normal(0, 4, img.shape)
    return SyntheticCell(np.clip(img, 0, 255).astype(np.uint8), mask, kind)


def make_smear(n_cells: int = 12, *, seed: int = 0, size: tuple[int, int] = (240, 320),
               n_wbc: int | None = None, n_platelets: int | None = None) -> SyntheticField:
    """Draw a smear field: ``n_cells`` red cells, a few white cells and platelets.

    Args:
        n_cells: number of red cells.
        seed: random seed (same seed, same field).
        size: ``(height, width)``.
        n_wbc: white cells (default 1-2); n_platelets: platelets (default 0-3).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.broadcast_to(_BACKGROUND, (h, w, 3)).copy()
    scratch = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    unit = min(h, w) / 12.0
    instances: list[Instance] = []

    def disc(label: str, radius: float, colour, nucleus: bool) -> None:
        cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
        _paint(img, scratch, (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2,
               np.asarray(colour, np.float32), 0)
        if nucleus:
            rn = radius * 0.55
            lobe = (xx - cx) ** 2 + (yy - cy) ** 2 <= rn**2
            _paint(img, scratch, lobe, _NUCLEUS, 0)
        ring = tuple((float(cx + radius * np.cos(t)), float(cy + radius * np.sin(t)))
                     for t in np.linspace(0, 2 * np.pi, 16, endpoint=False))
        box = (float(max(cx - radius, 0)), float(max(cy - radius, 0)),
               float(min(cx + radius, w)), float(min(cy + radius, h)))
        instances.append(Instance(label=label, box=box, polygons=(ring,)))

    for _ in range(n_cells):
        disc("RBC", unit * rng.uniform(0.8, 1.0), _RBC, False)
    for _ in range(rng.integers(1, 3) if n_wbc is None else n_wbc):
        disc("WBC", unit * rng.uniform(1.3, 1.6), (200, 180, 215), True)
    for _ in range(rng.integers(0, 4) if n_platelets is None else n_platelets):
        disc("Platelets", unit * rng.uniform(0.2, 0.3), (140, 90, 170), False)
    img += rng.normal(0, 3, img.shape)
    ann = ImageAnnotation(file_name=f"smear_{seed:04d}.png", width=w, height=h,
                          instances=tuple(instances))
    return SyntheticField(np.clip(img, 0, 255).astype(np.uint8), ann)


def _paint(img: np.ndarray, mask: np.ndarray, where: np.ndarray, colour: np.ndarray,
           value: int) -> None:
    img[where] = colour
    mask[where] = value
