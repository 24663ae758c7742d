"""Pascal VOC XML: round trip, malformed files, folder scans, BCCD and CBC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemascope.errors import AnnotationError, DatasetError, HemascopeError
from hemascope.io.annotations import ImageAnnotation, Instance
from hemascope.io.image import write_image
from hemascope.io.voc import parse_voc_xml, read_voc, voc_xml, write_voc

W, H = 64, 48


def _images() -> list[ImageAnnotation]:
    return [
        ImageAnnotation("JPEGImages/a.jpg", W, H, (
            Instance("RBC", (0.0, 0.0, 10.0, 12.0)),
            Instance("WBC", (20.0, 5.0, 64.0, 48.0), attributes={"difficult": "1"}),
        ), split="train"),
        ImageAnnotation("JPEGImages/b.jpg", W, H, (Instance("Platelets", (3.0, 4.0, 9.0, 9.0)),),
                        split="val"),
        ImageAnnotation("JPEGImages/c.jpg", W, H, (), split="test"),
    ]


def _write_pixels(folder: Path, names: list[str]) -> None:
    for name in names:
        write_image(folder / name, np.full((H, W, 3), 200, np.uint8))


def _xml(body: str, *, size: str = "<size><width>64</width><height>48</height></size>") -> str:
    return f"<annotation><filename>a.jpg</filename>{size}{body}</annotation>"


OBJ = ("<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax>"
       "<ymax>10</ymax></bndbox></object>")


def test_round_trip_keeps_boxes_labels_splits_and_attributes(tmp_path: Path) -> None:
    images = _images()
    write_voc(images, tmp_path)
    _write_pixels(tmp_path / "JPEGImages", ["a.jpg", "b.jpg", "c.jpg"])
    ds = read_voc(tmp_path, strict=True)
    assert ds.format == "voc" and ds.problems == []
    assert [im.file_name for im in ds.images] == [im.file_name for im in images]
    for got, want in zip(ds.images, images):
        assert (got.width, got.height, got.split) == (want.width, want.height, want.split)
        assert [(i.label, i.box) for i in got.instances] == \
            [(i.label, i.box) for i in want.instances]
    assert ds.images[0].instances[1].attributes["difficult"] == "1"
    assert ds.classes == ["Platelets", "RBC", "WBC"]
    trainval = (tmp_path / "ImageSets/Main/trainval.txt").read_text().split()
    assert trainval == ["a", "b"]


def test_box_convention_is_one_based_inclusive() -> None:
    text = voc_xml(ImageAnnotation("x.jpg", W, H, (Instance("RBC", (0.0, 9.0, 10.0, 20.0)),)))
    assert "<xmin>1</xmin>" in text and "<ymin>10</ymin>" in text
    assert "<xmax>10</xmax>" in text and "<ymax>20</ymax>" in text


def test_labels_are_stripped_of_white_space(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_text(_xml(OBJ.replace("<name>RBC</name>", "<name>\n   RBC  </name>")))
    assert parse_voc_xml(path).instances[0].label == "RBC"


@pytest.mark.parametrize("text, message", [
    (_xml(OBJ, size=""), "lacks <size>"),
    (_xml(OBJ, size="<size><width>64</width></size>"), r"<size> lacks <height>"),
    (_xml(OBJ).replace("<filename>a.jpg</filename>", ""), "lacks <filename>"),
    (_xml("<object><name>RBC</name></object>"), r"<object> #1 \(RBC\) lacks <bndbox>"),
    (_xml(OBJ.replace("<xmax>10</xmax>", "")), r"<bndbox> lacks <xmax>"),
    (_xml(OBJ.replace("<ymin>1</ymin>", "<ymin>1O</ymin>")), r"<ymin> is not a number: '1O'"),
    (_xml(OBJ)[:60], "malformed XML"),
    ("<root/>", "root element is <root>"),
])
def test_malformed_xml_gives_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        parse_voc_xml(path, path_hint="Annotations/bad.xml")


def test_error_names_the_hinted_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(_xml(OBJ, size=""))
    with pytest.raises(AnnotationError, match=r"^Annotations/bad\.xml: "):
        parse_voc_xml(path, path_hint="Annotations/bad.xml")


def _messy_folder(root: Path) -> None:
    write_voc(_images()[:2], root)
    _write_pixels(root / "JPEGImages", ["a.jpg", "lonely.jpg"])  # b.jpg is missing
    (root / "Annotations" / "broken.xml").write_text(_xml(OBJ)[:50])
    _write_pixels(root / "JPEGImages", ["broken.jpg"])  # annotated, by a broken XML: one problem
    (root / "Annotations" / "tiny.xml").write_text(
        _xml(OBJ.replace("<xmax>10</xmax>", "<xmax>1</xmax>")).replace("a.jpg", "tiny.jpg"))
    _write_pixels(root / "JPEGImages", ["tiny.jpg"])


def test_folder_scan_reports_problems_and_keeps_good_files(tmp_path: Path) -> None:
    _messy_folder(tmp_path)
    ds = read_voc(tmp_path)
    assert [im.file_name for im in ds.images] == ["JPEGImages/a.jpg", "JPEGImages/tiny.jpg"]
    kinds = {(p.kind, p.path) for p in ds.problems}
    assert kinds == {
        ("malformed_annotation", "Annotations/broken.xml"),
        ("missing_image", "Annotations/b.xml"),
        ("unannotated_image", "JPEGImages/lonely.jpg"),
        ("degenerate_box", "Annotations/tiny.xml"),
    }


def test_strict_scan_raises_on_the_first_problem(tmp_path: Path) -> None:
    _messy_folder(tmp_path)
    with pytest.raises(AnnotationError, match="Annotations/b.xml: image b.jpg is not in"):
        read_voc(tmp_path, strict=True)


def test_size_mismatch_is_reported_and_the_header_size_kept(tmp_path: Path) -> None:
    write_voc([ImageAnnotation("a.jpg", 100, 100, (Instance("RBC", (1.0, 1.0, 9.0, 9.0)),))],
              tmp_path)
    _write_pixels(tmp_path / "JPEGImages", ["a.jpg"])
    ds = read_voc(tmp_path)
    assert (ds.images[0].width, ds.images[0].height) == (W, H)
    assert [p.kind for p in ds.problems] == ["size_mismatch"]


def test_cbc_layout_maps_split_folders_case_insensitively(tmp_path: Path) -> None:
    for folder, name in (("Training", "a"), ("validation", "b"), ("TESTING", "c")):
        im = ImageAnnotation(f"{name}.jpg", W, H, (Instance("RBC", (1.0, 1.0, 9.0, 9.0)),))
        write_voc([im], tmp_path / folder, image_dir_name="Images")
        (tmp_path / folder / "Annotations").rename(tmp_path / folder / "annotations")
        _write_pixels(tmp_path / folder / "Images", [f"{name}.jpg"])
    ds = read_voc(tmp_path, strict=True)
    assert [(im.file_name, im.split) for im in ds.images] == [
        ("Training/Images/a.jpg", "train"), ("validation/Images/b.jpg", "val"),
        ("TESTING/Images/c.jpg", "test")]


def test_unknown_layout_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="neither Annotations/"):
        read_voc(tmp_path)


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    write_voc(_images(), tmp_path)
    with pytest.raises(HemascopeError, match="refusing to overwrite existing"):
        write_voc(_images(), tmp_path)
    write_voc(_images(), tmp_path, overwrite=True)


def test_writer_refuses_clashing_stems(tmp_path: Path) -> None:
    images = [ImageAnnotation("x/a.jpg", W, H), ImageAnnotation("y/a.png", W, H)]
    with pytest.raises(AnnotationError, match="would both be Annotations/a.xml"):
        write_voc(images, tmp_path)


@pytest.mark.realdata
def test_bccd(shared_data: Path) -> None:
    ds = read_voc(shared_data / "bccd")
    assert len(ds.images) == 364
    assert ds.box_counts() == {"Platelets": 361, "RBC": 4155, "WBC": 372}
    assert {k: len(v) for k, v in ds.splits().items()} == {"train": 205, "val": 87, "test": 72}
    assert sorted((p.kind, p.path) for p in ds.problems) == [
        ("degenerate_box", "Annotations/BloodImage_00338.xml"),
        ("degenerate_box", "Annotations/BloodImage_00343.xml")]
    assert all(im.file_name.startswith("JPEGImages/") for im in ds.images)


@pytest.mark.realdata
def test_cbc(shared_data: Path) -> None:
    ds = read_voc(shared_data / "cbc")
    assert {k: len(v) for k, v in ds.splits().items()} == {"train": 300, "val": 60, "test": 60}
    assert set(ds.classes) == {"Platelets", "RBC", "WBC"}
