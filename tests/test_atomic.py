import json
import os

import pytest

from hemascope.errors import HemascopeError
from hemascope.io.atomic import atomic_write, guard_inputs, refuse_existing, write_json


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("new, half written")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_written_files_get_normal_permissions(tmp_path):
    p = write_json(tmp_path / "a.json", {"x": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_inputs_are_never_overwritten(tmp_path):
    src = tmp_path / "input.json"
    src.write_text("{}")
    with pytest.raises(HemascopeError, match="refusing to overwrite input"):
        guard_inputs(tmp_path / "." / "input.json", [src])
    with pytest.raises(HemascopeError, match="refusing to overwrite input"):
        with atomic_write(src, protect=[src]):
            pass
    with pytest.raises(HemascopeError, match="overwrite=True in Python"):
        refuse_existing([src], overwrite=False)
    refuse_existing([src], overwrite=True)


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HemascopeError, match="is a file, not a folder"):
        write_json(blocker / "sub" / "a.json", {})
    (tmp_path / "taken.json").mkdir()  # a folder where the file should go
    with pytest.raises(HemascopeError, match="folder of that name is in the way"):
        write_json(tmp_path / "taken.json", {})
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_undefined_numbers_are_written_as_null(tmp_path):
    write_json(tmp_path / "n.json", {"ap": {"WBC": float("nan"), "RBC": 0.5}, "x": [float("inf")]})
    assert json.loads((tmp_path / "n.json").read_text()) == {"ap": {"WBC": None, "RBC": 0.5},
                                                             "x": [None]}


def test_no_command_writes_over_a_file_it_read(tmp_path, tiny_model):
    """Outputs named like an input (an image, a table, a model's weights) are refused and
    the input is left as it was."""
    from hemascope.cli import main
    from hemascope.io.image import write_image
    from hemascope.synthetic import make_cell

    img = tmp_path / "cell.png"
    write_image(img, make_cell("monocyte", seed=1, size=64).image)
    before = img.read_bytes()
    assert main(["classify", str(img), "--model", str(tiny_model), "--json", str(img)]) == 1
    assert main(["stain", "fit", str(img), "--out", str(img)]) == 1
    assert img.read_bytes() == before
    table = tmp_path / "t.csv"
    table.write_text("path,label\ncell.png,monocyte\n")
    assert main(["evaluate", "classifier", "--data", str(table), "--model", str(tiny_model),
                 "--json", str(table)]) == 1
    assert table.read_text() == "path,label\ncell.png,monocyte\n"
    for n in range(3):  # images that adapt reads through the decoded-image cache
        write_image(tmp_path / "lab" / f"c{n}.png", make_cell("monocyte", seed=n, size=64).image)
    target = tmp_path / "lab" / "c0.png"
    kept = target.read_bytes()
    assert main(["adapt", "bn", "--target", str(tmp_path / "lab"), "--base", str(tiny_model),
                 "--out", str(tmp_path / "bn0")]) == 0  # fills the cache: the next run decodes nothing
    assert main(["adapt", "bn", "--target", str(tmp_path / "lab"), "--base", str(tiny_model),
                 "--out", str(tmp_path / "bn"), "--json", str(target)]) == 1
    assert target.read_bytes() == kept


def test_diverged_weights_are_not_saved(tmp_path):
    import torch

    from hemascope.models.artifact import save_artifact

    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(HemascopeError, match="diverged"):
        save_artifact(tmp_path / "m", model, {"task": "classification"})
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_output_folders_are_checked_before_any_work(tmp_path):
    from hemascope.io.atomic import check_output_folder

    data = tmp_path / "data"
    (data / "neutrophil").mkdir(parents=True)
    with pytest.raises(HemascopeError, match="inside the input folder"):
        check_output_folder(data / "run", not_inside=[data])
    with pytest.raises(HemascopeError, match="inside the input folder"):
        check_output_folder(data, not_inside=[data])
    (tmp_path / "file").write_text("x")
    with pytest.raises(HemascopeError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file" / "run")
    with pytest.raises(HemascopeError, match="is a file"):
        check_output_folder(tmp_path / "file")
    assert check_output_folder(tmp_path / "new" / "run", not_inside=[data]) == (tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # nothing made
