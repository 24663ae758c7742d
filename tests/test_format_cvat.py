"""CVAT for images 1.1 XML: round trip, bad points, unsupported shapes, rotated boxes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hemascope.errors import AnnotationError, HemascopeError, UnknownLabelError
from hemascope.io.annotations import ImageAnnotation, Instance
from hemascope.io.cvat import cvat_xml, parse_points, read_cvat, write_cvat

CLASSES = ["neutrophil", "RBC"]


def _images() -> list[ImageAnnotation]:
    poly = ((10.25, 5.5), (40.0, 6.0), (30.125, 33.0), (12.0, 30.0))
    return [
        ImageAnnotation("batch1/a.jpg", 100, 80, (
            Instance("RBC", (1.5, 2.0, 20.25, 17.0), attributes={"occluded": "1"}),
            Instance("neutrophil", (10.25, 5.5, 40.0, 33.0), polygons=(poly,),
                     attributes={"lobes": "3", "z_order": "2"}),
        ), split="train"),
        ImageAnnotation("batch1/b.jpg", 100, 80, (), split="test"),
        ImageAnnotation("batch2/c.jpg", 50, 40, (Instance("RBC", (0.0, 0.0, 50.0, 40.0)),)),
    ]


def _cvat(image_body: str, *, labels: str = "<label><name>RBC</name></label>") -> str:
    return (f"<annotations><version>1.1</version><meta><task><labels>{labels}</labels></task>"
            f'</meta><image id="0" name="a.jpg" width="100" height="80">{image_body}</image>'
            "</annotations>")


def _read(tmp_path: Path, text: str, **kw):
    path = tmp_path / "annotations.xml"
    path.write_text(text)
    return read_cvat(path, **kw)


def test_round_trip(tmp_path: Path) -> None:
    images = _images()
    path = write_cvat(images, CLASSES, tmp_path / "annotations.xml")
    ds = read_cvat(path, strict=True)
    assert ds.format == "cvat" and ds.problems == [] and ds.classes == CLASSES
    assert [(im.file_name, im.width, im.height, im.split) for im in ds.images] == \
        [(im.file_name, im.width, im.height, im.split) for im in images]
    for got_im, want_im in zip(ds.images, images):
        for got, want in zip(got_im.instances, want_im.instances, strict=True):
            assert got.label == want.label
            assert got.box == pytest.approx(want.box, abs=1e-6)
            assert got.polygons == want.polygons
            assert dict(got.attributes) == dict(want.attributes)


def test_written_file_is_cvat_1_1(tmp_path: Path) -> None:
    root = ET.fromstring(cvat_xml(_images(), CLASSES))
    assert root.findtext("version") == "1.1"
    assert [n.text for n in root.findall("meta/task/labels/label/name")] == CLASSES
    first = root.find("image")
    assert first.attrib == {"id": "0", "name": "batch1/a.jpg", "width": "100",
                            "height": "80", "subset": "train"}
    box, polygon = list(first)
    assert (box.tag, box.get("xtl"), box.get("ybr"), box.get("occluded")) == \
        ("box", "1.5", "17.0", "1")
    assert polygon.get("points").startswith("10.25,5.5;40.0,6.0;")
    assert polygon.find("attribute").attrib == {"name": "lobes"}


def test_attributes_and_subsets_are_read(tmp_path: Path) -> None:
    body = ('<box label="RBC" occluded="0" xtl="1" ytl="2" xbr="11" ybr="12" z_order="0">'
            '<attribute name="shape"> round </attribute></box>')
    text = _cvat(body).replace('height="80"', 'height="80" subset="Validation"')
    im = _read(tmp_path, text, strict=True).images[0]
    assert im.split == "val"
    assert im.instances[0].box == (1.0, 2.0, 11.0, 12.0)
    assert im.instances[0].attributes == {"shape": "round"}


def test_parse_points() -> None:
    assert parse_points("1,2;3.5,4") == ((1.0, 2.0), (3.5, 4.0))
    with pytest.raises(ValueError, match=r"bad points '1,2;3': '3' is not 'x,y'"):
        parse_points("1,2;3")


def test_bad_points_strict_raises(tmp_path: Path) -> None:
    text = _cvat('<polygon label="RBC" points="1,2;3,4;x,6" />')
    with pytest.raises(AnnotationError, match=r"image a\.jpg: <polygon> #1 \(RBC\): bad points"):
        _read(tmp_path, text, strict=True)


def test_bad_shapes_are_problems_and_good_ones_kept(tmp_path: Path) -> None:
    body = ('<polygon label="RBC" points="1,2;3,4" />'
            '<box label="RBC" xtl="1" ytl="2" xbr="ten" ybr="12" />'
            '<polyline label="RBC" points="1,2;3,4" /><points label="RBC" points="1,2" />'
            '<points label="RBC" points="5,5" />'
            '<box label="WBC" xtl="1" ytl="2" xbr="11" ybr="12" />')
    ds = _read(tmp_path, _cvat(body))
    assert [i.label for i in ds.images[0].instances] == ["WBC"]
    assert ds.classes == ["RBC", "WBC"]
    assert [(p.kind, p.message) for p in ds.problems] == [
        ("malformed_annotation", "image a.jpg: <polygon> #1 (RBC): a polygon needs at least "
                                 "3 points, got 2"),
        ("malformed_annotation", "image a.jpg: <box> #2 (RBC): xtl, ytl, xbr, ybr and "
                                 "rotation must be numbers"),
        ("malformed_annotation", "image a.jpg: 1 <polyline> shape(s) skipped; only boxes and "
                                 "polygons are supported"),
        ("malformed_annotation", "image a.jpg: 2 <points> shape(s) skipped; only boxes and "
                                 "polygons are supported"),
        ("unknown_label", "label 'WBC' is used by a shape but not listed in <meta>"),
    ]


def test_rotated_box_becomes_a_polygon(tmp_path: Path) -> None:
    body = '<box label="RBC" xtl="0" ytl="0" xbr="4" ybr="2" rotation="90" />'
    inst = _read(tmp_path, _cvat(body), strict=True).images[0].instances[0]
    assert inst.box == pytest.approx((1.0, -1.0, 3.0, 3.0))
    assert inst.polygons[0][0] == pytest.approx((3.0, -1.0))  # top-left turned clockwise


@pytest.mark.parametrize("text, message", [
    ("<annotation><filename>a</filename></annotation>", "root element is <annotation>"),
    (_cvat("")[:70], "malformed XML"),
    (_cvat("").replace("1.1", "2.0"), "version 2.0 is not supported"),
    ("<annotations><track id='0' label='RBC'/></annotations>", "CVAT for video"),
    (_cvat("").replace('name="a.jpg"', ""), r"<image id='0'> has no name"),
    (_cvat("").replace('width="100"', 'width="wide"'), "non-integer width or height"),
])
def test_not_cvat_raises(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        _read(tmp_path, text)


def test_writer_guards(tmp_path: Path) -> None:
    with pytest.raises(UnknownLabelError, match="unknown label 'neutrophil'"):
        cvat_xml(_images(), ["RBC"])
    write_cvat(_images(), CLASSES, tmp_path / "a.xml")
    with pytest.raises(HemascopeError, match="refusing to overwrite"):
        write_cvat(_images(), CLASSES, tmp_path / "a.xml")


def test_image_root_prefers_a_sibling_images_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    assert _read(tmp_path, _cvat("")).image_root == str(tmp_path / "images")
