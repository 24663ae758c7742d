"""Cell measurements from part maps (hemascope.segment.morphometry)."""

import numpy as np
import pytest

from hemascope.segment.morphometry import MEASUREMENTS, measure_cell, measure_cells

CLASSES = ["background", "nucleus", "cytoplasm", "vacuole", "platelet", "rbc"]


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2


def _cell(lobes: int, radius: int = 30) -> np.ndarray:
    m = np.zeros((100, 100), np.uint8)
    m[_disc(m.shape, 50, 50, radius)] = 2
    for i in range(lobes):
        a = 2 * np.pi * i / lobes
        m[_disc(m.shape, 50 + 15 * np.sin(a), 50 + 15 * np.cos(a), 7)] = 1
    return m


def test_measurements_follow_the_cell():
    one, three = (dict(zip(MEASUREMENTS, measure_cell(_cell(n), CLASSES))) for n in (1, 3))
    assert one["nucleus_pieces"] == 1 and three["nucleus_pieces"] == 3
    assert three["nucleus_solidity"] < 0.8 < one["nucleus_solidity"]  # lobes leave gaps in the hull
    assert one["cell_share"] == pytest.approx(np.pi * 30 ** 2 / 1e4, rel=0.03)
    assert one["nc_ratio"] == pytest.approx(7 ** 2 / 30 ** 2, rel=0.1)
    big = dict(zip(MEASUREMENTS, measure_cell(_cell(1, radius=40), CLASSES)))
    assert big["cell_share"] > one["cell_share"] and big["nc_ratio"] < one["nc_ratio"]
    oval = np.zeros((100, 100), np.uint8)
    yy, xx = np.mgrid[:100, :100]
    oval[((yy - 50) / 15) ** 2 + ((xx - 50) / 40) ** 2 < 1] = 2
    assert dict(zip(MEASUREMENTS, measure_cell(oval, CLASSES)))["cell_elongation"] == pytest.approx(40 / 15, rel=0.05)


def test_no_cell_gives_zeros_and_bad_maps_are_refused():
    empty = measure_cell(np.zeros((20, 20), np.uint8), CLASSES)
    assert np.isfinite(empty).all() and not empty.any()
    assert measure_cells([], CLASSES).shape == (0, len(MEASUREMENTS))
    with pytest.raises(ValueError, match="2-D"):
        measure_cell(np.zeros((2, 3, 4)), CLASSES)
    with pytest.raises(ValueError, match="nucleus and cytoplasm"):
        measure_cell(np.zeros((4, 4)), ["background", "cell"])
