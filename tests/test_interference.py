import numpy as np
import pytest

from hemascope.interference import (SMEAR_STUDY_SWITCHES, apply_interference,
                                    interference_names, smear_study_augment)
from hemascope.synthetic import make_smear


@pytest.fixture
def field():
    f = make_smear(12, seed=1, n_wbc=2, n_platelets=2)
    return f.image, np.array([i.box for i in f.annotation.instances])


def test_nine_factors_registered():
    assert interference_names() == ["colour_cast", "low_illumination", "defocus", "stain_debris",
                                    "giant_platelets", "overlapping_cells", "degenerated_cells",
                                    "ph_high", "ph_low"]


@pytest.mark.parametrize("name", interference_names())
def test_each_factor_changes_the_image_and_keeps_the_input(field, name):
    img, boxes = field
    before = img.copy()
    out, out_boxes = apply_interference(img, name, boxes=boxes, severity=0.8, seed=3)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before)
    assert np.abs(out.astype(int) - img.astype(int)).mean() > 0.5
    assert len(out_boxes) >= len(boxes)
    again, _ = apply_interference(img, name, boxes=boxes, severity=0.8, seed=3)
    assert np.array_equal(out, again)  # seeded


def test_severity_orders_the_effect(field):
    img, _ = field
    weak, _ = apply_interference(img, "low_illumination", severity=0.2)
    strong, _ = apply_interference(img, "low_illumination", severity=1.0)
    assert strong.mean() < weak.mean() < img.mean()
    blue, _ = apply_interference(img, "ph_high", severity=1.0)
    red, _ = apply_interference(img, "ph_low", severity=1.0)
    assert (blue[..., 2].astype(int) - blue[..., 0]).mean() > (red[..., 2].astype(int) - red[..., 0]).mean()
    with pytest.raises(ValueError):
        apply_interference(img, "defocus", severity=0)
    with pytest.raises(KeyError, match="unknown interference"):
        apply_interference(img, "rain")


def test_overlapping_cells_adds_boxes(field):
    img, boxes = field
    _, out_boxes = apply_interference(img, "overlapping_cells", boxes=boxes, severity=1.0)
    assert len(out_boxes) > len(boxes)


def test_smear_study_vector(field):
    img, _ = field
    rng = np.random.default_rng(0)
    out, v = smear_study_augment(img, rng=rng)
    assert len(v) == len(SMEAR_STUDY_SWITCHES) == 11 and out.shape == img.shape
    same, _ = smear_study_augment(img, rng=rng, vector=np.zeros(11))
    assert np.array_equal(same, img)
    flipped, _ = smear_study_augment(img, rng=rng, vector=np.eye(11)[2])
    assert np.array_equal(flipped, img[:, ::-1])
