"""``data info`` and ``data convert`` on synthetic smear sets in every detection layout."""

import json

import pytest

from hemascope.cli import main
from hemascope.data import detect_format
from hemascope.data.info import inspect_dataset
from hemascope.io.annotations import DetectionSet
from hemascope.io.coco import write_coco
from hemascope.io.image import write_image
from hemascope.io.voc import write_voc
from hemascope.io.yolo import write_yolo
from hemascope.synthetic import make_smear

CLASSES = ["WBC", "RBC", "Platelets"]


@pytest.fixture
def smear_set(tmp_path):
    """Six synthetic fields (4 train, 2 val) written as PNGs, with their annotations."""
    root = tmp_path / "fields"
    images = []
    for seed in range(6):
        field = make_smear(8, seed=seed, n_wbc=1, n_platelets=2)
        ann = field.annotation
        write_image(root / ann.file_name, field.image)
        images.append(type(ann)(ann.file_name, ann.width, ann.height, ann.instances,
                                split="train" if seed < 4 else "val"))
    return DetectionSet(images=images, classes=CLASSES, image_root=str(root))


def _expected(ds):
    return sum(len(im.instances) for im in ds.images), {"Platelets": 12, "RBC": 48, "WBC": 6}


def test_yolo_layout_counts(smear_set, tmp_path):
    write_yolo(smear_set.images, CLASSES, tmp_path / "yolo", image_root=smear_set.image_root)
    assert detect_format(tmp_path / "yolo") == "yolo"
    info = inspect_dataset(tmp_path / "yolo")
    n, per_class = _expected(smear_set)
    assert (info.n_images, info.n_boxes, info.box_counts) == (6, n, per_class)
    assert info.split_counts == {"train": 4, "val": 2}
    assert info.problems == []


def test_coco_file_counts(smear_set, tmp_path):
    path = write_coco(smear_set.images, CLASSES, tmp_path / "fields" / "instances.json")
    info = inspect_dataset(path)
    n, per_class = _expected(smear_set)
    assert (info.format, info.n_images, info.n_boxes, info.box_counts) == ("coco", 6, n, per_class)
    assert info.image_sizes == {"320x240": 6}


def test_voc_scan_reports_bad_files_and_keeps_going(smear_set, tmp_path):
    voc = tmp_path / "voc"
    write_voc(smear_set.images, voc)
    for im in smear_set.images:
        write_image(voc / "JPEGImages" / im.file_name, make_smear(seed=0).image)
    xmls = sorted((voc / "Annotations").glob("*.xml"))
    text = xmls[0].read_text()
    xmls[0].write_text(text.replace("<size>", "<sighs>").replace("</size>", "</sighs>"))
    text = xmls[1].read_text()
    start = text.index("<xmax>") + len("<xmax>")
    xmls[1].write_text(text[:start] + "9999" + text[text.index("</xmax>"):])
    info = inspect_dataset(voc)
    kinds = info.problem_counts()
    assert kinds["malformed_annotation"] == 1 and kinds["box_outside_image"] == 1
    assert info.n_images == 5  # the malformed XML is left out, the rest are read


def test_convert_round_trip_through_cli(smear_set, tmp_path, capsys):
    coco = write_coco(smear_set.images, CLASSES, tmp_path / "fields" / "src.json")
    for fmt, out in (("cvat", tmp_path / "a.xml"), ("voc", tmp_path / "voc"),
                     ("yolo", tmp_path / "yolo")):
        assert main(["data", "convert", str(coco), "--to", fmt, "--out", str(out)]) == 0
    assert main(["data", "info", str(tmp_path / "a.xml"), "--images", str(tmp_path / "fields"),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "yolo"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_boxes"] == _expected(smear_set)[0]
    # converting onto an existing file is refused, and never onto the input
    assert main(["data", "convert", str(coco), "--to", "coco", "--out", str(coco)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_json_that_is_not_coco_is_one_clear_error(tmp_path, capsys):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": "world"}))
    assert main(["data", "info", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "COCO" in err and err.count("\n") == 1


def test_info_reports_annotated_images_that_are_missing(smear_set, tmp_path):
    path = write_coco(smear_set.images, CLASSES, tmp_path / "fields" / "instances.json")
    (tmp_path / "fields" / smear_set.images[0].file_name).unlink()
    info = inspect_dataset(path)
    assert info.problem_counts() == {"missing_image": 1}
    assert info.n_images == 6 and info.image_sizes == {"320x240": 5}
