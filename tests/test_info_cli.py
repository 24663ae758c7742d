import json
import subprocess
import sys

import pytest

from hemascope.cli import main
from hemascope.data.info import inspect_dataset, render_text
from hemascope.io.image import write_image
from hemascope.synthetic import make_cell


@pytest.fixture
def messy_folder(cell_folder):
    """The cell folder plus a truncated JPEG, an empty file and an unknown class."""
    good = write_image(cell_folder / "Neutrophil" / "SNE_trunc.jpg", make_cell("neutrophil").image)
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * 0.6)])  # header intact, pixels cut
    (cell_folder / "LYMPHOCYTE" / "LY_empty.png").write_bytes(b"")
    write_image(cell_folder / "unicorns" / "u.png", make_cell("basophil", size=16).image)
    return cell_folder


def test_info_counts_and_reports_without_stopping(messy_folder):
    info = inspect_dataset(messy_folder)
    assert info.n_images == 14  # the two broken files are still listed as images
    assert info.class_counts == {"eosinophil": 4, "lymphocyte": 5, "neutrophil": 5}
    assert info.problem_counts() == {"unknown_label": 1, "unreadable_image": 2}
    assert info.image_sizes == {"32x32": 12}
    text = render_text(info)
    assert "unicorns" in text and "truncated" in text and "empty" in text


def test_info_header_check_misses_truncation_but_decode_catches_it(messy_folder):
    assert inspect_dataset(messy_folder, check="header").problem_counts()["unreadable_image"] == 1
    assert inspect_dataset(messy_folder, check="decode").problem_counts()["unreadable_image"] == 2


def test_cli_info_json_and_exit_codes(messy_folder, capsys):
    assert main(["data", "info", str(messy_folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_images"] == 14 and out["problem_counts"]["unreadable_image"] == 2
    assert main(["data", "info", str(messy_folder), "--strict"]) == 3
    capsys.readouterr()
    assert main(["data", "info", str(messy_folder / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_info_on_single_image_and_bad_file(tmp_path, capsys):
    p = write_image(tmp_path / "x.png", make_cell("monocyte").image)
    assert main(["data", "info", str(p)]) == 0
    assert "64x64" in capsys.readouterr().out
    (tmp_path / "notes.docx").write_text("x")
    assert main(["data", "info", str(tmp_path / "notes.docx")]) == 1
    assert "cannot tell the format" in capsys.readouterr().err


def test_cli_split_is_deterministic(cell_folder, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["data", "split", str(cell_folder), "--out", str(a), "--seed", "1"]) == 0
    assert main(["data", "split", str(cell_folder), "--out", str(b), "--seed", "1"]) == 0
    assert a.read_text() == b.read_text()
    assert main(["data", "split", str(cell_folder), "--out", str(a), "--kfold", "3"]) == 0
    assert set(json.loads(a.read_text())["counts"]) == {"fold0", "fold1", "fold2"}


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "info", "--help"])
    assert e.value.code == 0
    assert "(default: decode)" in capsys.readouterr().out


def test_help_shows_no_default_under_an_on_off_flag(capsys):
    """'--no-mirror ... (default: True)' reads as if the flag were on by default."""
    with pytest.raises(SystemExit):
        main(["segment", "predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--no-mirror" in out and "(default: True)" not in out and "(default: False)" not in out
    assert "(default: border)" in out


def test_usage_error_exit_code():
    with pytest.raises(SystemExit) as e:
        main(["data", "info"])
    assert e.value.code == 2


def test_import_is_light():
    code = ("import sys, hemascope, hemascope.taxonomy; "
            "bad = [m for m in ('torch', 'torchvision', 'timm', 'PIL', 'numpy') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
