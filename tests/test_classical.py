import numpy as np

from hemascope.segment.classical import extract_cell, mask_in_box
from hemascope.synthetic import make_cell, make_smear


def test_extracts_the_centred_cell():
    cell = make_cell("lymphocyte", seed=4, size=96)
    before = cell.image.copy()
    out = extract_cell(cell.image)
    assert out is not None and np.array_equal(cell.image, before)
    truth = cell.mask == 1  # nucleus of the drawn cell
    assert (out.mask & truth).sum() / truth.sum() > 0.9  # covers the nucleus
    assert (out.mask & (cell.mask == 5)).sum() < 0.1 * out.area  # hardly any red cell
    x0, y0, x1, y1 = out.box
    assert x0 < 48 < x1 and y0 < 48 < y1
    assert len(out.polygon) >= 4


def test_large_images_are_outlined_on_a_shrunk_copy():
    import cv2

    cell = make_cell("lymphocyte", seed=4, size=96)
    big = cv2.resize(cell.image, (96 * 30, 96 * 30), interpolation=cv2.INTER_NEAREST)
    small = extract_cell(cell.image)
    out = extract_cell(big)  # 2880 px: shrunk to 1024 px for the outline, mask full size
    assert out is not None and out.mask.shape == big.shape[:2]
    np.testing.assert_allclose(np.array(out.box) / 30, small.box, atol=1.5)
    assert abs(out.area / 900 - small.area) < 0.1 * small.area


def test_blank_image_gives_none():
    assert extract_cell(np.full((64, 64, 3), 230, np.uint8)) is None


def test_mask_in_box_on_a_smear_field():
    field = make_smear(10, seed=3, n_wbc=1, n_platelets=0)
    wbc = next(i for i in field.annotation.instances if i.label == "WBC")
    out = mask_in_box(field.image, wbc.box)
    assert out is not None and out.mask.shape == field.image.shape[:2]
    bx = np.array(out.box)
    gt = np.array(wbc.box)
    assert np.all(bx[:2] >= gt[:2] - 0.15 * (gt[2:] - gt[:2]))
    assert np.all(bx[2:] <= gt[2:] + 0.15 * (gt[2:] - gt[:2]))
    assert mask_in_box(field.image, (0, 0, 2, 2)) is None


def test_segment_extract_cli(tmp_path, capsys):
    import json

    from hemascope.cli import main
    from hemascope.io.image import write_image

    write_image(tmp_path / "in" / "a.png", make_cell("monocyte", seed=1, size=80).image)
    write_image(tmp_path / "in" / "blank.png", np.full((40, 40, 3), 230, np.uint8))
    assert main(["segment", "extract", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["cells"]) == 1 and "no stained cell" in out["errors"][str(tmp_path / "in" / "blank.png")]
    assert (tmp_path / "out" / "a_crop.png").is_file() and (tmp_path / "out" / "a_mask.png").is_file()
