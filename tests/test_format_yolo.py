"""Ultralytics YOLO: round trip, data.yaml variants, label-line errors, folder scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hemascope.errors import AnnotationError, HemascopeError, UnknownLabelError
from hemascope.io.annotations import ImageAnnotation, Instance
from hemascope.io.image import write_image
from hemascope.io.yolo import label_path, parse_yolo_line, read_yolo, write_yolo

W, H = 64, 48
CLASSES = ["RBC", "WBC", "Platelets"]


def _pixels(path: Path) -> None:
    write_image(path, np.full((H, W, 3), 180, np.uint8))


def _images() -> list[ImageAnnotation]:
    tri = ((10.0, 4.0), (30.5, 8.25), (12.0, 40.0))
    return [
        ImageAnnotation("fields/a.png", W, H, (
            Instance("RBC", (1.5, 2.0, 20.25, 17.0)),
            Instance("Platelets", (40.0, 30.0, 44.0, 33.5)),
        ), split="train"),
        ImageAnnotation("fields/b.png", W, H, (
            Instance("WBC", (10.0, 4.0, 30.5, 40.0), polygons=(tri,)),), split="val"),
        ImageAnnotation("fields/c.png", W, H, (), split=None),
    ]


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for name in ("a", "b", "c"):
        _pixels(root / "fields" / f"{name}.png")
    return root


def test_round_trip(tmp_path: Path, source: Path) -> None:
    images = _images()
    yaml_path = write_yolo(images, CLASSES, tmp_path / "out", image_root=source)
    ds = read_yolo(yaml_path.parent, strict=True)
    assert ds.format == "yolo" and ds.problems == [] and ds.classes == CLASSES
    got = {im.file_name: im for im in ds.images}
    assert sorted(got) == ["images/train/a.png", "images/train/c.png", "images/val/b.png"]
    for want in images:
        im = got[f"images/{want.split or 'train'}/{Path(want.file_name).name}"]
        assert (im.width, im.height, im.split) == (W, H, want.split or "train")
        assert [i.label for i in im.instances] == [i.label for i in want.instances]
        for g, w in zip(im.instances, want.instances):
            assert g.box == pytest.approx(w.box, abs=1e-6)
            assert len(g.polygons) == len(w.polygons)
            for gp, wp in zip(g.polygons, w.polygons):
                assert np.allclose(gp, wp, atol=1e-6)
    assert (tmp_path / "out/labels/train/c.txt").read_text() == ""


def test_data_yaml_has_no_path_and_names_by_id(tmp_path: Path, source: Path) -> None:
    config = yaml.safe_load(write_yolo(_images(), CLASSES, tmp_path / "o", image_root=source,
                                       link="none").read_text())
    assert config == {"train": "images/train", "val": "images/val", "nc": 3,
                      "names": {0: "RBC", 1: "WBC", 2: "Platelets"}}
    assert not (tmp_path / "o/images").exists()


def test_boxes_become_rectangles_in_files_with_polygons(tmp_path: Path, source: Path) -> None:
    im = ImageAnnotation("fields/a.png", W, H, (
        Instance("RBC", (0.0, 0.0, 32.0, 24.0)),
        Instance("WBC", (0.0, 0.0, 6.4, 4.8), polygons=(((0.0, 0.0), (6.4, 0.0), (0.0, 4.8)),)),
    ))
    write_yolo([im], CLASSES, tmp_path / "o", image_root=source, link="symlink")
    first = (tmp_path / "o/labels/train/a.txt").read_text().splitlines()[0]
    assert first == "0 0 0 0.5 0 0.5 0.5 0 0.5"
    assert (tmp_path / "o/images/train/a.png").is_symlink()


def test_label_path_follows_the_ultralytics_rule() -> None:
    assert label_path("/d/images/train/images/x.jpg") == Path("/d/images/train/labels/x.txt")
    assert label_path("/d/flat/x.jpeg") == Path("/d/flat/x.txt")


def test_parse_line_converts_to_pixel_xyxy() -> None:
    cls, inst = parse_yolo_line("1 0.5 0.25 0.5 0.5", n_classes=2, width=100, height=40)
    assert cls == 1 and inst.box == (25.0, 0.0, 75.0, 20.0)
    cls, inst = parse_yolo_line("0 0.1 0.1 0.5 0.1 0.3 0.5", n_classes=2, width=10, height=10)
    assert inst.polygons == (((1.0, 1.0), (5.0, 1.0), (3.0, 5.0)),)
    assert inst.box == (1.0, 1.0, 5.0, 5.0)


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.1", r"expected 5 values \(class cx cy w h\).*got 4 values"),
    ("0 0.5 0.5 0.1 0.1 0.9", "got 6 values"),
    ("2 0.5 0.5 0.1 0.1", r"class id 2 is not one of 0\.\.1"),
    ("-1 0.5 0.5 0.1 0.1", r"class id -1 is not one of 0\.\.1"),
    ("0 0.5 zero 0.1 0.1", "non-numeric value"),
    ("0 320 240 20 20", r"normalised to \[0, 1\]"),
    ("0 0.5 0.5 -0.005 0.1", "negative box width"),
])
def test_bad_lines_are_rejected(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_yolo_line(line, n_classes=2, width=W, height=H)


def _dataset(root: Path, labels: dict[str, str], *, config: dict | None = None) -> Path:
    for name, text in labels.items():
        _pixels(root / "images" / "train" / f"{name}.png")
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{name}.txt").write_text(text)
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(config or {"train": "images/train", "names": ["a", "b"]}))
    return path


def test_strict_read_names_file_and_line(tmp_path: Path) -> None:
    _dataset(tmp_path, {"x": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n"})
    with pytest.raises(AnnotationError,
                       match=r"labels/train/x\.txt: line 2: expected 5 values"):
        read_yolo(tmp_path, strict=True)


def test_scan_reports_problems_and_keeps_the_rest(tmp_path: Path) -> None:
    _dataset(tmp_path, {"good": "0 0.5 0.5 0.2 0.2\n\n", "mixed": "1 0.5 0.5 0.2 0.2\n5 0 0 0 0\n",
                        "none": None, "empty": ""})
    (tmp_path / "images/train/broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "labels/train/ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no image
    ds = read_yolo(tmp_path / "data.yaml")
    counts = {im.file_name: [i.label for i in im.instances] for im in ds.images}
    assert counts == {"images/train/empty.png": [], "images/train/good.png": ["a"],
                      "images/train/mixed.png": ["b"], "images/train/none.png": []}
    assert [(p.kind, p.path) for p in ds.problems] == [
        ("unreadable_image", "images/train/broken.jpg"),
        ("malformed_annotation", "labels/train/mixed.txt"),
        ("missing_image", "labels/train/ghost.txt")]
    assert ds.problems[1].message.startswith("line 2: class id 5")


def test_txt_lists_names_dict_and_root_path(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _dataset(root, {"x": "1 0.5 0.5 0.5 0.5\n", "y": ""})
    (root / "val.txt").write_text("./images/train/y.png\n\n")
    config = {"path": "ds", "train": ["images/train/x.png"], "val": "val.txt",
              "names": {0: "cat", 1: "dog"}, "nc": 2}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(config))
    ds = read_yolo(tmp_path / "data.yaml", strict=True)
    assert ds.image_root == str(tmp_path / "ds")
    assert [(im.file_name, im.split, im.labels()) for im in ds.images] == [
        ("images/train/x.png", "train", ["dog"]), ("images/train/y.png", "val", [])]


@pytest.mark.parametrize("config, message", [
    (["train"], "expected a mapping"),
    ({"train": "images/train", "names": ["a"], "nc": 2}, "'nc' is 2 but 'names' has 1"),
    ({"train": "images/train", "names": {0: "a", 2: "b"}}, r"'names' keys must be 0\.\.1"),
    ({"names": ["a"]}, "names no 'train', 'val' or 'test'"),
    ({"train": "images/train", "names": ["a"], "kpt_shape": [17, 3]}, "pose"),
])
def test_bad_data_yaml(tmp_path: Path, config, message: str) -> None:
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(AnnotationError, match=message):
        read_yolo(tmp_path)


def test_exports_with_paths_of_another_machine(tmp_path: Path) -> None:
    """Roboflow's ``../train/images`` (Ultralytics reads it as ``train/images``), a ``path``
    and entries from the exporting machine, a list of absolute paths, and a folder holding
    ``dataset.yaml`` all load."""
    for split in ("train", "valid", "test"):
        _pixels(tmp_path / split / "images" / f"{split}.jpg")
        (tmp_path / split / "labels").mkdir()
        (tmp_path / split / "labels" / f"{split}.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    (tmp_path / "test.txt").write_text("/content/cells-3/test/images/test.jpg\n")
    (tmp_path / "dataset.yaml").write_text(
        "path: /content/datasets/cells-3\ntrain: ../train/images\n"
        "val: C:\\Users\\lab\\cells-3\\valid\\images\ntest: test.txt\n\nnc: 3\n"
        "names: ['Platelets', 'RBC', 'WBC']\n\nroboflow:\n  workspace: lab\n")
    ds = read_yolo(tmp_path, strict=True)
    assert ds.image_root == str(tmp_path)
    assert [(im.file_name, im.split, im.labels()) for im in ds.images] == [
        ("train/images/train.jpg", "train", ["WBC"]), ("valid/images/valid.jpg", "val", ["WBC"]),
        ("test/images/test.jpg", "test", ["WBC"])]
    (tmp_path / "dataset.yaml").write_text("train: ../elsewhere/images\nnames: ['a']\n")
    with pytest.raises(AnnotationError, match="'../elsewhere/images' is not a folder"):
        read_yolo(tmp_path, strict=True)


def test_missing_split_folder_is_a_problem(tmp_path: Path) -> None:
    _dataset(tmp_path, {"x": ""}, config={"train": "images/train", "val": "images/val",
                                          "names": ["a"]})
    ds = read_yolo(tmp_path)
    assert len(ds.images) == 1 and [p.kind for p in ds.problems] == ["missing_image"]


def test_writer_guards(tmp_path: Path, source: Path) -> None:
    with pytest.raises(UnknownLabelError, match="unknown label 'WBC'"):
        write_yolo(_images(), ["RBC", "Platelets"], tmp_path / "o", image_root=source)
    write_yolo(_images(), CLASSES, tmp_path / "o", image_root=source)
    with pytest.raises(HemascopeError, match="refusing to overwrite existing"):
        write_yolo(_images(), CLASSES, tmp_path / "o", image_root=source)
    with pytest.raises(HemascopeError, match="refusing to overwrite input"):
        write_yolo([ImageAnnotation("a.png", W, H, split="train")], CLASSES, tmp_path / "o",
                   image_root=tmp_path / "o" / "images" / "train", overwrite=True)
