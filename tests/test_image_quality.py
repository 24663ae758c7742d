"""Image checks: a stained cell passes; grayscale, blank, dark, washed-out and tiny images
are named, and classify / analyze carry the warning with the answer."""

import json

import numpy as np
import pytest

from hemascope.cli import main
from hemascope.io.image import write_image
from hemascope.io.quality import QualityLimits, image_stats, image_warnings
from hemascope.synthetic import make_cell, make_smear


@pytest.fixture
def cell():
    return make_cell("neutrophil", seed=3, size=96).image


def test_stained_cell_and_field_pass(cell):
    assert image_warnings(cell) == []
    assert image_warnings(make_smear(10, seed=0, size=(240, 320)).image) == []


def test_grayscale_is_named(cell):
    gray = np.repeat(cell.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    [w] = image_warnings(gray)
    assert w.startswith("grayscale")


def test_dark_and_washed_out(cell):
    dark = (cell * 0.3).astype(np.uint8)
    assert any(w.startswith("very dark") for w in image_warnings(dark))
    washed = (cell * 0.1 + 0.9 * 255).astype(np.uint8)  # blended with white
    assert any(w.startswith("washed out") for w in image_warnings(washed))


def test_blank_stops_the_other_checks():
    blank = np.full((64, 64, 3), 30, np.uint8)
    [w] = image_warnings(blank)
    assert w.startswith("blank")


def test_tiny_image_is_named_with_its_size(cell):
    small = cell[:20, :28]
    ws = image_warnings(small)
    assert ws and ws[0].startswith("only 28x20 px")
    assert image_warnings(small, QualityLimits(min_side=16)) == [w for w in ws[1:]]


def test_large_image_is_subsampled_to_the_same_answer():
    field = make_smear(10, seed=1, size=(240, 320)).image
    big = np.tile(field, (8, 8, 1))  # 1920 x 2560: subsampled
    a, b = image_stats(field), image_stats(big)
    assert b.min_side == 1920 and abs(a.brightness - b.brightness) < 3 and image_warnings(big) == []


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="expected an"):
        image_stats(np.zeros((8, 8), np.uint8))


def test_classify_carries_warnings(tmp_path, tiny_model, cell, capsys):
    write_image(tmp_path / "ok.png", cell)
    write_image(tmp_path / "gray.png", cell.mean(axis=2).astype(np.uint8))
    out = tmp_path / "p.json"
    assert main(["classify", str(tmp_path / "ok.png"), str(tmp_path / "gray.png"),
                 "--model", str(tiny_model), "--json", str(out)]) == 0
    preds = {p["path"].rsplit("/", 1)[-1]: p for p in json.loads(out.read_text())["predictions"]}
    assert preds["ok.png"]["warnings"] == []
    assert preds["gray.png"]["warnings"][0].startswith("grayscale")
    assert "1 image(s) classified with a warning" in capsys.readouterr().err


def test_analyze_flags_the_cells_of_a_warned_image(tmp_path, tiny_model, cell, capsys):
    src = tmp_path / "in"
    write_image(src / "ok.png", cell)
    write_image(src / "dark.png", (cell * 0.25).astype(np.uint8))
    assert main(["analyze", str(src), "--out", str(tmp_path / "a"), "--classifier",
                 str(tiny_model), "--mode", "cells", "--review-below", "0"]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) the models may not read" in err and "dark.png: very dark" in err
    by_file = {}
    for f in (tmp_path / "a" / "images").glob("*.json"):
        d = json.loads(f.read_text())
        by_file[d["file"].rsplit("/", 1)[-1]] = d
    assert by_file["ok.png"]["warnings"] == [] and not by_file["ok.png"]["cells"][0]["review"]
    assert by_file["dark.png"]["warnings"] and by_file["dark.png"]["cells"][0]["review"]
    assert "very dark" in (tmp_path / "a" / "report.html").read_text()
