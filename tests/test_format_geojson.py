"""QuPath GeoJSON: round trip, QuPath exports, colours, unsupported geometries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hemascope.errors import AnnotationError, HemascopeError
from hemascope.io.annotations import ImageAnnotation, Instance
from hemascope.io.geojson import class_color, read_geojson, to_geojson, write_geojson

TRI = ((10.5, 2.25), (20.0, 2.25), (15.0, 12.75))
SQUARE = ((30.0, 30.0), (34.0, 30.0), (33.0, 34.0), (30.0, 34.0))


def _image() -> ImageAnnotation:
    return ImageAnnotation("slide/field.png", 64, 48, (
        Instance("neutrophil", (1.5, 2.0, 11.25, 9.0), score=0.875),
        Instance("lymphocyte", (10.5, 2.25, 20.0, 12.75), polygons=(TRI,),
                 attributes={"nucleus": "round"}),
        Instance("RBC", (10.5, 2.25, 34.0, 34.0), polygons=(TRI, SQUARE)),
    ))


def test_round_trip(tmp_path: Path) -> None:
    ann = _image()
    path = write_geojson(ann, tmp_path / "field.geojson")
    got = read_geojson(path, file_name="slide/field.png", width=64, height=48)
    assert (got.file_name, got.width, got.height) == ("slide/field.png", 64, 48)
    for g, w in zip(got.instances, ann.instances, strict=True):
        assert g.label == w.label
        assert g.box == pytest.approx(w.box, abs=1e-6)
        assert g.polygons == w.polygons
        assert g.score == w.score
        assert dict(g.attributes) == dict(w.attributes)


def test_features_look_like_qupath_objects() -> None:
    fc = to_geojson(_image(), object_type="annotation")
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    box, tri, multi = fc["features"]
    ring = box["geometry"]["coordinates"][0]
    assert box["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
    assert ring[:4] == [[1.5, 2.0], [11.25, 2.0], [11.25, 9.0], [1.5, 9.0]]
    assert tri["geometry"]["coordinates"] == [[[10.5, 2.25], [20.0, 2.25], [15.0, 12.75],
                                              [10.5, 2.25]]]
    assert multi["geometry"]["type"] == "MultiPolygon"
    assert len(multi["geometry"]["coordinates"]) == 2
    props = box["properties"]
    assert props["objectType"] == "annotation" and props["isLocked"] is False
    assert props["classification"] == {"name": "neutrophil",
                                       "color": list(class_color("neutrophil"))}
    assert props["measurements"] == {"score": 0.875}
    assert "measurements" not in tri["properties"]
    assert to_geojson(_image()) == to_geojson(_image())  # ids and colours are stable


def test_class_colours_are_stable_and_distinct() -> None:
    colours = {name: class_color(name) for name in ("RBC", "WBC", "Platelets", "neutrophil")}
    assert len(set(colours.values())) == 4
    assert all(64 <= c <= 255 for rgb in colours.values() for c in rgb)
    assert class_color("RBC") == (72, 67, 166)  # fixed across runs and machines


def test_reads_qupath_exports(tmp_path: Path) -> None:
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[0, 0], [10, 0], [5, 8], [0, 0]], [[4, 2], [5, 2], [5, 3], [4, 2]]]},
         "properties": {"objectType": "cell", "classification": {"name": "Tumor",
                                                                  "colorRGB": -3670016},
                        "measurements": [{"name": "score", "value": 0.5}]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[1, 1], [3, 1], [3, 4], [1, 4], [1, 1]]]}, "properties": {"name": "Region 1"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[1, 1], [3, 1], [2, 4], [1, 1]]]}, "properties": {}},
    ]
    (tmp_path / "img7.geojson").write_text(json.dumps(features))
    got = read_geojson(tmp_path / "img7.geojson")
    assert got.file_name == "img7" and (got.width, got.height) == (0, 0)
    tumor, region, plain = got.instances
    assert (tumor.label, tumor.box, tumor.score) == ("Tumor", (0.0, 0.0, 10.0, 8.0), 0.5)
    assert tumor.polygons == (((0.0, 0.0), (10.0, 0.0), (5.0, 8.0)),)  # the hole is dropped
    assert (region.label, region.box, region.polygons) == ("Region 1", (1.0, 1.0, 3.0, 4.0), ())
    assert plain.label == "unclassified"


def test_reads_a_single_feature(tmp_path: Path) -> None:
    feature = to_geojson(_image())["features"][1]
    (tmp_path / "one.json").write_text(json.dumps(feature))
    assert read_geojson(tmp_path / "one.json").labels() == ["lymphocyte"]


@pytest.mark.parametrize("obj, message", [
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}},
     r"feature #1: geometry 'Point' is not supported"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}},
     "a polygon needs at least 3 vertices, got 2"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", 0]]]}},
     r"vertices must be \[x, y\] numbers"),
    ({"type": "FeatureCollection"}, "has no 'features' list"),
    ({"images": []}, "not GeoJSON features"),
])
def test_bad_geojson_raises(tmp_path: Path, obj, message: str) -> None:
    (tmp_path / "bad.geojson").write_text(json.dumps(obj))
    with pytest.raises(AnnotationError, match=message):
        read_geojson(tmp_path / "bad.geojson")


def test_writer_guards(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="object_type must be one of"):
        to_geojson(_image(), object_type="blob")
    write_geojson(_image(), tmp_path / "a.geojson")
    with pytest.raises(HemascopeError, match="refusing to overwrite"):
        write_geojson(_image(), tmp_path / "a.geojson")
