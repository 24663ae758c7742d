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
    with pytest.raises(HemascopeError, match="pass overwrite=True"):
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


def test_nan_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "n.json", {"x": float("nan")})
    assert not (tmp_path / "n.json").exists()
