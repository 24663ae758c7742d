"""QuPath-compatible GeoJSON for the objects of one image.

QuPath pixel coordinates have the origin at the top-left corner of the image, the same
continuous space as :mod:`hemascope.io.annotations`. Each instance is a ``Feature`` whose
geometry is a closed ``Polygon`` (the instance polygon, else its box) or a
``MultiPolygon`` for several parts; ``properties`` carry QuPath's ``objectType``,
``classification`` ``{name, color}``, ``isLocked``, the score as
``measurements.score`` and other attributes as ``metadata``. Holes are not kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from pathlib import Path
from typing import Any

from hemascope.errors import AnnotationError
from hemascope.io.annotations import ImageAnnotation, Instance, Polygon, box_from_polygon
from hemascope.io.atomic import refuse_existing, write_json

#: QuPath object types a feature may declare.
OBJECT_TYPES = ("annotation", "detection", "cell", "tile")
#: Label of features that carry no classification.
UNCLASSIFIED = "unclassified"


def class_color(name: str) -> tuple[int, int, int]:
    """A stable, not too dark RGB colour for a class name (the same in every run)."""
    digest = hashlib.md5(name.encode("utf-8")).digest()
    return (64 + digest[0] * 191 // 255, 64 + digest[1] * 191 // 255,
            64 + digest[2] * 191 // 255)


def to_geojson(ann: ImageAnnotation, *, object_type: str = "detection") -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of the instances of one image, as QuPath imports it.

    Feature ids are UUIDs derived from the file name and the instance index, so the same
    input always gives the same file.
    """
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {', '.join(OBJECT_TYPES)}, "
                         f"got {object_type!r}")
    features = []
    for index, inst in enumerate(ann.instances):
        properties: dict[str, Any] = {
            "objectType": object_type,
            "classification": {"name": inst.label, "color": list(class_color(inst.label))},
            "isLocked": False,
        }
        if inst.score is not None:
            properties["measurements"] = {"score": float(inst.score)}
        if inst.attributes:
            properties["metadata"] = {str(k): str(v) for k, v in inst.attributes.items()}
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hemascope:{ann.file_name}#{index}")),
            "geometry": _geometry(inst),
            "properties": properties,
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(ann: ImageAnnotation, path: str | Path, *, object_type: str = "detection",
                  overwrite: bool = False) -> Path:
    """Write :func:`to_geojson` atomically; refuses to replace a file unless ``overwrite``."""
    target = Path(path)
    refuse_existing([target], overwrite=overwrite)
    return write_json(target, to_geojson(ann, object_type=object_type))


def read_geojson(path: str | Path, *, file_name: str | None = None, width: int = 0,
                 height: int = 0) -> ImageAnnotation:
    """Read a GeoJSON file of one image (a Feature, a FeatureCollection or a list of them).

    Args:
        path: the ``.geojson`` / ``.json`` file.
        file_name: the image it belongs to (default: the file's name without suffix).
        width, height: the image size, which GeoJSON does not store (0: unknown).

    Returns:
        One instance per ``Polygon`` / ``MultiPolygon`` feature, labelled by
        ``classification.name``, else ``name``, else ``"unclassified"``. An axis-aligned
        4-corner rectangle is read as a plain box.

    Raises:
        AnnotationError: invalid JSON, not GeoJSON features, or a geometry other than
            Polygon / MultiPolygon (QuPath points and lines cannot become boxes).
    """
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise AnnotationError(p, f"cannot read file ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(p, f"not valid JSON ({e})") from None
    name = file_name if file_name is not None else p.name.rsplit(".", 1)[0]
    instances = []
    for index, feature in enumerate(_features(obj, p)):
        try:
            instances.append(_instance(feature))
        except ValueError as e:
            raise AnnotationError(p, f"feature #{index + 1}: {e}") from None
    return ImageAnnotation(name, width, height, tuple(instances))


def _geometry(inst: Instance) -> dict[str, Any]:
    rings = [_closed(poly) for poly in inst.polygons if len(poly) >= 3]
    if not rings:
        x0, y0, x1, y1 = inst.box
        rings = [_closed(((x0, y0), (x1, y0), (x1, y1), (x0, y1)))]
    if len(rings) == 1:
        return {"type": "Polygon", "coordinates": [rings[0]]}
    return {"type": "MultiPolygon", "coordinates": [[ring] for ring in rings]}


def _closed(poly: Polygon) -> list[list[float]]:
    ring = [[float(x), float(y)] for x, y in poly]
    if ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    return ring


def _features(obj: Any, path: Path) -> list[Any]:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        if not isinstance(obj.get("features"), list):
            raise AnnotationError(path, "FeatureCollection has no 'features' list")
        return obj["features"]
    if isinstance(obj, dict) and obj.get("type") == "Feature":
        return [obj]
    raise AnnotationError(path, "not GeoJSON features: expected a Feature, a "
                                "FeatureCollection or a list of features")


def _instance(feature: Any) -> Instance:
    if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
        raise ValueError("not a Feature with a geometry")
    geometry = feature["geometry"]
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        parts = (_ring(coords),)
    elif kind == "MultiPolygon" and isinstance(coords, list):
        parts = tuple(_ring(polygon) for polygon in coords)
    else:
        raise ValueError(f"geometry {kind!r} is not supported (only Polygon and MultiPolygon)")
    if not parts:
        raise ValueError("MultiPolygon has no polygons")
    properties = feature.get("properties") or {}
    box = box_from_polygon(p for part in parts for p in part)
    polygons = () if len(parts) == 1 and _is_box(parts[0], box) else parts
    metadata = properties.get("metadata")
    attributes = {str(k): str(v) for k, v in metadata.items()} \
        if isinstance(metadata, dict) else {}
    return Instance(label=_label(properties), box=box, polygons=polygons,
                    score=_score(properties), attributes=attributes)


def _ring(polygon: Any) -> Polygon:
    """Outer ring of a GeoJSON polygon without its closing vertex."""
    if not isinstance(polygon, list) or not polygon or not isinstance(polygon[0], list):
        raise ValueError("polygon coordinates must be a list of rings")
    try:
        ring = [(float(pt[0]), float(pt[1])) for pt in polygon[0]]
    except (TypeError, ValueError, IndexError):
        raise ValueError("polygon vertices must be [x, y] numbers") from None
    if not all(math.isfinite(v) for pt in ring for v in pt):
        raise ValueError("polygon vertices must be finite")
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()
    if len(ring) < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, got {len(ring)}")
    return tuple(ring)


def _is_box(ring: Polygon, box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = box
    return len(ring) == 4 and set(ring) == {(x0, y0), (x1, y0), (x1, y1), (x0, y1)}


def _label(properties: dict[str, Any]) -> str:
    cls = properties.get("classification")
    name = cls.get("name") if isinstance(cls, dict) else cls
    if not isinstance(name, str) or not name.strip():
        name = properties.get("name")
    return name.strip() if isinstance(name, str) and name.strip() else UNCLASSIFIED


def _score(properties: dict[str, Any]) -> float | None:
    measurements = properties.get("measurements")
    if isinstance(measurements, list):  # QuPath before 0.4: [{"name": ..., "value": ...}]
        measurements = {m.get("name"): m.get("value") for m in measurements
                        if isinstance(m, dict)}
    value = measurements.get("score") if isinstance(measurements, dict) else None
    if value is None:
        value = properties.get("score")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None
