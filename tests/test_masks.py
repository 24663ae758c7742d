import numpy as np
import pytest
from PIL import Image

from hemascope.errors import ImageReadError
from hemascope.io.masks import decode_part_mask, read_part_mask, write_part_mask
from hemascope.synthetic import make_cell


def test_cellavision_convention(tmp_path):
    raw = np.array([[0, 128], [255, 255]], np.uint8)
    Image.fromarray(raw, "L").save(tmp_path / "m.png")
    out = read_part_mask(tmp_path / "m.png")
    assert out.tolist() == [[0, 2], [1, 1]]  # 255 nucleus = 1, 128 cytoplasm = 2


def test_indexed_round_trip(tmp_path):
    mask = make_cell("neutrophil", seed=1, size=32).mask
    assert set(np.unique(mask)) >= {0, 1, 2}
    p = write_part_mask(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_part_mask(p, convention="indexed"), mask)
    np.testing.assert_array_equal(read_part_mask(p), mask)


def test_values_fitting_no_convention_raise():
    with pytest.raises(ImageReadError, match="neither"):
        decode_part_mask(np.array([[0, 77]], np.uint8))
    with pytest.raises(ImageReadError, match="outside 0/128/255"):
        decode_part_mask(np.array([[0, 3]], np.uint8), convention="cellavision")


def test_write_rejects_out_of_range(tmp_path):
    with pytest.raises(ValueError):
        write_part_mask(tmp_path / "m.png", np.full((2, 2), 9, np.uint8))


def test_stray_grey_values_of_lossy_masks_are_snapped():
    raw = np.zeros((50, 50), np.uint8)
    raw[10:30, 10:30], raw[15:25, 15:25] = 128, 255
    raw[0, :5] = 7  # a few stray pixels, as in some published CellaVision masks
    raw[40, 40] = 120
    out = decode_part_mask(raw)
    assert out[0, :5].tolist() == [0] * 5 and out[40, 40] == 2 and out[20, 20] == 1
    noisy = raw.copy()
    noisy[:, :10] = 60  # 20 % of the pixels: not a CellaVision mask
    with pytest.raises(ImageReadError):
        decode_part_mask(noisy, convention="cellavision")


@pytest.mark.parametrize("grey", [100, 150, 191])
def test_black_grey_white_masks_with_another_grey(grey):
    """Other releases of the convention (white nucleus, grey cytoplasm, black other) may
    use another grey; one grey with black and white is read the same way."""
    raw = np.zeros((50, 50), np.uint8)
    raw[10:30, 10:30], raw[15:25, 15:25] = grey, 255
    raw[0, 0] = 30  # a stray pixel
    out = decode_part_mask(raw)
    assert out[12, 12] == 2 and out[20, 20] == 1 and out[45, 45] == 0 and out[0, 0] == 0
    two_greys = raw.copy()
    two_greys[10:14, 10:30] = 60  # a second grey on 3 % of the pixels: ambiguous
    with pytest.raises(ImageReadError, match="neither"):
        decode_part_mask(two_greys)
