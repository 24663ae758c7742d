"""Batch verbs: one output per input even when names repeat; no usable input is an error."""

from hemascope.cli import main
from hemascope.cli._common import output_stems
from hemascope.io.image import write_image
from hemascope.synthetic import make_cell


def test_output_stems_are_distinct(tmp_path):
    files = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "a" / "x.png",
             tmp_path / "a" / "y.jpg"]
    stems = output_stems(files)
    assert len(set(stems.values())) == 4
    assert stems[files[3]] == "y" and stems[files[0]] == "a__x_jpg"


def test_same_names_in_two_folders_give_two_outputs(tmp_path, capsys):
    for sub in ("day1", "day2"):
        write_image(tmp_path / "in" / sub / "x.png", make_cell("monocyte", seed=len(sub), size=48).image)
    ref = tmp_path / "ref.json"
    assert main(["stain", "fit", str(tmp_path / "in"), "--out", str(ref)]) == 0
    assert main(["stain", "apply", str(tmp_path / "in"), "--reference", str(ref),
                 "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["day1__x_png.png", "day2__x_png.png"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "zero.png").write_bytes(b"")
    (tmp_path / "bad" / "text.jpg").write_text("not an image")
    capsys.readouterr()
    assert main(["stain", "apply", str(tmp_path / "bad"), "--reference", str(ref),
                 "--out", str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "error: none of the 2 input file(s) could be used" in err
