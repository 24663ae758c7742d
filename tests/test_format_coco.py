"""COCO JSON: round trip with boxes, polygons and RLE, non-COCO input, results files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from hemascope.errors import AnnotationError, HemascopeError, UnknownLabelError
from hemascope.io.annotations import ImageAnnotation, Instance
from hemascope.io.coco import (
    coco_to_detection_set,
    read_coco,
    to_coco_dict,
    to_coco_results,
    write_coco,
)

CLASSES = ["neutrophil", "lymphocyte", "platelet"]


def _mask() -> np.ndarray:
    mask = np.zeros((20, 30), np.uint8)
    mask[4:10, 5:17] = 1
    return mask


def _mask_rle() -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(_mask()))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _images() -> list[ImageAnnotation]:
    tri = ((10.5, 2.25), (20.0, 2.25), (15.0, 12.75))
    square = ((1.0, 1.0), (4.0, 1.0), (4.0, 4.0), (1.0, 4.0))
    return [
        ImageAnnotation("smear/a.png", 30, 20, (
            Instance("neutrophil", (1.5, 2.0, 11.25, 9.0)),
            Instance("lymphocyte", (10.5, 2.25, 20.0, 12.75), polygons=(tri, square),
                     attributes={"occluded": "true"}),
            Instance("platelet", (5.0, 4.0, 17.0, 10.0), rle=_mask_rle(), score=0.75),
        ), split="train"),
        ImageAnnotation("smear/b.png", 30, 20, (), split="val"),
    ]


def test_round_trip(tmp_path: Path) -> None:
    images = _images()
    path = write_coco(images, CLASSES, tmp_path / "ann.json")
    ds = read_coco(path, strict=True)
    assert ds.format == "coco" and ds.problems == [] and ds.classes == CLASSES
    assert ds.image_root == str(tmp_path)
    assert [(im.file_name, im.width, im.height, im.split) for im in ds.images] == \
        [(im.file_name, im.width, im.height, im.split) for im in images]
    for got, want in zip(ds.images[0].instances, images[0].instances):
        assert got.label == want.label
        assert got.box == pytest.approx(want.box, abs=1e-6)
        assert got.polygons == want.polygons
        assert got.rle == want.rle
        assert got.score == want.score
        assert dict(got.attributes) == dict(want.attributes)


def test_category_ids_follow_classes_order() -> None:
    obj = to_coco_dict(_images(), CLASSES)
    assert [(c["id"], c["name"]) for c in obj["categories"]] == \
        [(1, "neutrophil"), (2, "lymphocyte"), (3, "platelet")]
    assert [a["category_id"] for a in obj["annotations"]] == [1, 2, 3]
    assert obj["annotations"][0]["bbox"] == [1.5, 2.0, 9.75, 7.0]
    assert obj["annotations"][2]["area"] == 72.0  # the 6x12 mask, not the box


def _coco(**changes) -> dict:
    obj = {
        "images": [{"id": 7, "file_name": "a.png", "width": 30, "height": 20}],
        "categories": [{"id": 3, "name": "WBC"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 3, 4]}],
    }
    obj.update(changes)
    return obj


def test_uncompressed_rle_is_stored_compressed() -> None:
    want = _mask_rle()
    flat = _mask().flatten(order="F")
    runs, value, n = [], 0, 0
    for v in flat:  # column-major run lengths starting with zeros, as COCO writes them
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    runs.append(n)
    ann = {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 1,
           "segmentation": {"size": [20, 30], "counts": runs}}
    inst = coco_to_detection_set(_coco(annotations=[ann])).images[0].instances[0]
    assert inst.rle == want
    assert inst.box == (5.0, 4.0, 17.0, 10.0)  # from the mask: no bbox given
    assert inst.attributes == {"iscrowd": "1"}


@pytest.mark.parametrize("obj, message", [
    ([{"image_id": 1, "bbox": [0, 0, 1, 1]}], "top level is a list"),
    ("hello", "top level is a str"),
    ({"images": [], "annotations": []}, "missing 'categories'"),
    (_coco(images={}), "'images' is a dict, expected a list"),
    (_coco(categories=[{"id": 3}]), "category #1 needs an integer 'id' and a string 'name'"),
    (_coco(images=[{"file_name": "a.png"}]), "image #1 needs an 'id'"),
])
def test_not_coco_always_raises(obj, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        coco_to_detection_set(obj, source="x.json")


def test_invalid_json_is_an_annotation_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"images": [')
    with pytest.raises(AnnotationError, match=r"x\.json: not valid JSON \(line 1"):
        read_coco(path)


@pytest.mark.parametrize("change, message", [
    ({"image_id": 99}, "annotation 1 refers to unknown image id 99"),
    ({"category_id": 4}, "annotation 1 refers to unknown category id 4"),
    ({"bbox": [1, 2, 3]}, r"bbox must be 4 numbers \[x, y, w, h\], got \[1, 2, 3\]"),
    ({"bbox": [1, 2, -3, 4]}, "negative width or height"),
    ({"segmentation": [[1, 2, 3, 4]]}, r"even number \(>= 6\) of coordinates, got 4"),
])
def test_bad_annotation_strict_raises_one_clear_error(change: dict, message: str) -> None:
    obj = _coco()
    obj["annotations"][0].update(change)
    with pytest.raises(AnnotationError, match=message):
        coco_to_detection_set(obj, source="x.json", strict=True)


def test_bad_annotations_are_problems_when_not_strict() -> None:
    obj = _coco()
    good = obj["annotations"][0]
    obj["annotations"] += [dict(good, id=2, image_id=99), dict(good, id=3, bbox=[0, 0, 1, 1])]
    ds = coco_to_detection_set(obj, source="x.json")
    assert [len(im.instances) for im in ds.images] == [2]  # the good one and the tiny one
    assert [(p.kind, p.path) for p in ds.problems] == [
        ("malformed_annotation", "x.json"), ("degenerate_box", "a.png")]
    assert "unknown image id 99" in ds.problems[0].message


def test_image_root_falls_back_to_a_sibling_images_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")
    (tmp_path / "ann.json").write_text(json.dumps(_coco()))
    assert read_coco(tmp_path / "ann.json").image_root == str(tmp_path / "images")
    assert read_coco(tmp_path / "ann.json", image_root="/data").image_root == "/data"


def test_writer_refuses_unknown_labels_and_existing_files(tmp_path: Path) -> None:
    with pytest.raises(UnknownLabelError, match="unknown label 'neutrophil'"):
        to_coco_dict(_images(), ["lymphocyte", "platelet"])
    write_coco(_images(), CLASSES, tmp_path / "a.json")
    with pytest.raises(HemascopeError, match="refusing to overwrite"):
        write_coco(_images(), CLASSES, tmp_path / "a.json")


def test_results_score_perfectly_against_their_own_ground_truth() -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [ImageAnnotation(f"{i}.png", 100, 100, (
        Instance("neutrophil", (10.0 + i, 10.0, 60.0, 70.0)),
        Instance("platelet", (70.0, 70.0, 90.0, 85.0)))) for i in range(3)]
    gt = COCO()
    gt.dataset = to_coco_dict(images, CLASSES)
    gt.createIndex()
    preds = [ImageAnnotation(im.file_name, im.width, im.height,
                             tuple(Instance(i.label, i.box, score=0.9) for i in im.instances))
             for im in images]
    results = to_coco_results(preds, CLASSES)
    assert results[0]["file_name"] == "0.png" and results[0]["category_name"] == "neutrophil"
    assert results[1]["category_id"] == 3 and results[1]["score"] == 0.9
    evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


@pytest.mark.realdata
def test_bccd_survives_a_coco_round_trip(shared_data: Path, tmp_path: Path) -> None:
    from hemascope.io.voc import read_voc

    voc = read_voc(shared_data / "bccd")
    coco = read_coco(write_coco(voc.images, voc.classes, tmp_path / "bccd.json"),
                     image_root=voc.image_root, strict=False)
    assert coco.classes == voc.classes == ["Platelets", "RBC", "WBC"]
    assert coco.box_counts() == voc.box_counts()
    assert [(im.file_name, im.split, [i.box for i in im.instances]) for im in coco.images] == \
        [(im.file_name, im.split, [i.box for i in im.instances]) for im in voc.images]
    assert [p.kind for p in coco.problems] == ["degenerate_box", "degenerate_box"]


def test_an_image_without_size_gets_it_from_its_file(tmp_path: Path) -> None:
    from hemascope.io.coco import read_coco
    from hemascope.io.image import write_image

    write_image(tmp_path / "a.png", np.zeros((30, 40, 3), np.uint8))
    obj = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}],
           "categories": [{"id": 1, "name": "WBC"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    (tmp_path / "ann.json").write_text(json.dumps(obj))
    ds = read_coco(tmp_path / "ann.json", image_root=tmp_path)
    assert (ds.images[0].width, ds.images[0].height) == (40, 30)
    assert [p.kind for p in ds.problems] == ["malformed_annotation"] and "gone.png" in ds.problems[0].message
