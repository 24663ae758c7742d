import numpy as np
import pytest

from hemascope.errors import HemascopeError
from hemascope.stain import (StainReference, fit_reference, load_reference, save_reference,
                             standardize)
from hemascope.stain.lab import lab_to_rgb, rgb_to_lab
from hemascope.synthetic import make_cell


def test_lab_round_trip_seeded():
    rgb = np.random.default_rng(0).random((50, 3))
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-6)
    assert rgb_to_lab(np.ones(3))[0] == pytest.approx(100, abs=1e-4)  # white is L* 100


@pytest.fixture
def cells():
    a = make_cell("neutrophil", seed=1, size=64).image
    # the same cell photographed "in another lab": darker and bluer
    b = np.clip(a.astype(float) * [0.8, 0.85, 1.05], 0, 255).astype(np.uint8)
    return a, b


def test_reinhard_matches_reference_statistics(cells):
    a, b = cells
    ref = fit_reference([a], method="reinhard", mask="none")
    out = standardize(b, reference=ref)
    lab = rgb_to_lab(out / 255.0).reshape(-1, 3)
    np.testing.assert_allclose(lab.mean(0), ref.mean, atol=1.5)
    np.testing.assert_allclose(lab.std(0), ref.std, rtol=0.1, atol=0.5)
    assert np.abs(out.astype(int) - a.astype(int)).mean() < np.abs(b.astype(int) - a.astype(int)).mean()


def test_identity_on_own_reference_and_no_mutation(cells):
    a, _ = cells
    before = a.copy()
    out = standardize(a, reference=fit_reference([a]))
    assert np.abs(out.astype(int) - a.astype(int)).max() <= 2
    assert np.array_equal(a, before)


def test_dtype_shape_and_batch(cells):
    a, b = cells
    ref = fit_reference([a, b])
    assert ref.n_images == 2
    batch = np.stack([a, b])
    out = standardize(batch, reference=ref)
    assert out.shape == batch.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], standardize(b, reference=ref))
    f = standardize(a / 255.0, reference=ref)
    assert f.dtype == np.float64 and 0 <= f.min() and f.max() <= 1


def test_degenerate_flat_image_is_finite():
    flat = np.full((16, 16, 3), 120, np.uint8)
    ref = fit_reference([make_cell("monocyte").image])
    out = standardize(flat, reference=ref)
    assert out.dtype == np.uint8 and len(np.unique(out.reshape(-1, 3), axis=0)) == 1


def test_macenko_own_reference_is_identity(cells):
    a, b = cells
    ref = fit_reference([a], method="macenko")
    assert np.abs(standardize(a, reference=ref).astype(int) - a.astype(int)).max() <= 1
    assert standardize(b, reference=ref).shape == b.shape
    with pytest.raises(HemascopeError, match="no stained pixels"):
        fit_reference([np.full((8, 8, 3), 255, np.uint8)], method="macenko")


def test_reference_json_round_trip(tmp_path, cells):
    for method in ("reinhard", "macenko"):
        ref = fit_reference([cells[0]], method=method)
        p = save_reference(tmp_path / f"{method}.json", ref)
        assert load_reference(p) == ref
    (tmp_path / "bad.json").write_text('{"format": "hemascope-stain/1", "method": "magic"}')
    with pytest.raises(HemascopeError, match="not a stain reference"):
        load_reference(tmp_path / "bad.json")
    with pytest.raises(HemascopeError, match="unknown stain method"):
        fit_reference([cells[0]], method="vahadane")
    assert StainReference.from_dict(ref.to_dict()) == ref
    good = fit_reference([cells[0]], method="reinhard").to_dict()
    for broken in ({"mean": None}, {"mean": [1, 2]}, {"mean": ["a", "b", "c"]},
                   {"std": [1, -1, 1]}, {"mean": [float("nan"), 0, 0]}, {"mask": "weird"}):
        with pytest.raises(HemascopeError, match="malformed stain reference"):
            StainReference.from_dict({**good, **broken})
    with pytest.raises(HemascopeError, match="malformed stain reference"):
        StainReference.from_dict({**ref.to_dict(), "vectors": [[1, 2], [3]]})


def test_flat_images_are_left_alone_and_make_no_reference(cells):
    ref = fit_reference([cells[0]], method="reinhard")
    for colour in ((255, 255, 255), (0, 0, 0), (120, 60, 150)):
        flat = np.full((32, 32, 3), colour, np.uint8)
        assert np.array_equal(standardize(flat, reference=ref), flat)
        with pytest.raises(HemascopeError, match="flat"):
            fit_reference([flat])


def test_large_images_are_standardised_in_blocks(cells, monkeypatch):
    import hemascope.stain as stain

    ref = fit_reference([cells[0]], method="reinhard")
    big = np.tile(cells[1], (4, 4, 1))
    whole = standardize(big, reference=ref)
    monkeypatch.setattr(stain, "BLOCK_PIXELS", big.shape[0] * big.shape[1] // 7)
    blocks = standardize(big, reference=ref)  # statistics from a strided sample, 7+ blocks
    assert blocks.shape == big.shape and blocks.dtype == big.dtype
    assert np.abs(blocks.astype(int) - whole.astype(int)).mean() < 2.0


def test_stain_cli(tmp_path, capsys):
    from hemascope.cli import main
    from hemascope.io.image import read_image, write_image

    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"c{i}.png", make_cell("eosinophil", seed=i).image)
    (src / "broken.png").write_bytes(b"nope")
    ref = tmp_path / "ref.json"
    assert main(["stain", "fit", str(src), "--out", str(ref)]) == 0
    capsys.readouterr()
    assert main(["stain", "apply", str(src), "--reference", str(ref), "--out",
                 str(tmp_path / "out"), "--json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    assert len(out["written"]) == 3 and list(out["errors"]) == [str(src / "broken.png")]
    assert read_image(tmp_path / "out" / "c0.png").shape == (64, 64, 3)


def test_background_balance_undoes_a_tint_and_leaves_a_matching_field():
    from hemascope.stain.background import (background_colour, background_reference,
                                            balance_background)
    from hemascope.synthetic import make_smear

    field = make_smear(20, seed=1, size=(240, 320)).image
    ref = background_colour(field)
    assert ref.shape == (3,) and ref.min() > 150  # the bright glass, not the cells
    assert balance_background(field, ref) is field  # already matches: untouched
    tinted = np.clip(field * np.array([1.15, 0.9, 0.75]), 0, 255).astype(np.uint8)
    back = balance_background(tinted, ref)
    assert back.dtype == np.uint8 and back.shape == field.shape
    assert np.abs(background_colour(back) - ref).max() <= 2
    assert np.abs(back.astype(int) - field).mean() < np.abs(tinted.astype(int) - field).mean() / 4
    assert np.array_equal(tinted, np.clip(field * np.array([1.15, 0.9, 0.75]), 0, 255).astype(np.uint8))
    black = np.zeros((20, 30, 3), np.uint8)
    assert balance_background(black, ref) is black
    huge_gain = balance_background(np.full((20, 30, 3), 20, np.uint8), ref)
    assert huge_gain.max() == 40  # gains capped at x2
    assert background_reference([field, field]) == [round(float(v), 1) for v in ref]
    with pytest.raises(ValueError, match="RGB"):
        background_colour(np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match="at least one"):
        background_reference([])
