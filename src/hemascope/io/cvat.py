"""CVAT for images 1.1 XML: boxes and polygons with their attributes.

Coordinates (``xtl ytl xbr ybr`` and ``points="x,y;x,y;..."``) are already in the
continuous pixel space of :mod:`hemascope.io.annotations`. Rotated boxes become
4-point polygons. Other shapes (polylines, points, masks, ellipses, cuboids,
skeletons, tags) are reported and skipped. The ``subset`` attribute of CVAT project
exports sets the split.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from hemascope.errors import AnnotationError, UnknownLabelError
from hemascope.io.annotations import (
    DetectionSet,
    ImageAnnotation,
    Instance,
    box_from_polygon,
    check_instance,
)
from hemascope.io._xml import parse_xml_root
from hemascope.io.atomic import refuse_existing, write_text
from hemascope.io.geojson import class_color
from hemascope.problems import Problem, record

#: Shape attributes kept in :attr:`Instance.attributes` (only when not the default).
SHAPE_ATTRIBUTES = {"occluded": "0", "z_order": "0", "group_id": "0"}
#: CVAT subset names (lower case) and the split they stand for.
SUBSETS = {"train": "train", "training": "train", "val": "val", "valid": "val",
           "validation": "val", "test": "test", "testing": "test"}
_SAMPLE = 20  # image files probed when guessing the image folder


def read_cvat(xml_path: str | Path, *, image_root: str | Path | None = None,
              strict: bool = False) -> DetectionSet:
    """Read a CVAT for images 1.1 ``annotations.xml``.

    Args:
        xml_path: the XML file.
        image_root: folder the image names are relative to. Default: the XML's folder,
            unless the first images are only found in a sibling ``images/`` folder (the
            layout of a CVAT export archive).
        strict: raise on the first problem instead of collecting it.

    Returns:
        A :class:`DetectionSet`; ``classes`` are the labels of ``<meta>`` in order, then
        any other label used by a shape (reported as ``unknown_label`` when ``<meta>``
        lists labels). Shapes with bad coordinates are reported and skipped.

    Raises:
        AnnotationError: malformed XML, not a CVAT for images file, an ``<image>`` without
            a name or with a bad size; with ``strict`` any problem.
    """
    path = Path(xml_path)
    where = str(path)
    root = _parse(path)
    meta_labels = [el.text.strip() for el in root.findall("meta/*/labels/label/name")
                   if el.text and el.text.strip()]
    classes = list(dict.fromkeys(meta_labels))
    problems: list[Problem] = []
    images = []
    for element in root.findall("image"):
        image = _read_image(element, where, problems, strict=strict)
        for inst in image.instances:
            if inst.label not in classes:
                if meta_labels:
                    record(problems, Problem(where, "unknown_label", f"label {inst.label!r} is "
                                            "used by a shape but not listed in <meta>"),
                          strict=strict)
                classes.append(inst.label)
        images.append(image)
    names = [im.file_name for im in images[:_SAMPLE]]
    base = Path(image_root) if image_root is not None else _guess_image_root(path, names)
    return DetectionSet(images=images, classes=classes, image_root=str(base),
                        problems=problems, format="cvat")


def parse_points(text: str) -> tuple[tuple[float, float], ...]:
    """``"x,y;x,y;..."`` as vertices.

    Raises:
        ValueError: not pairs of finite numbers.
    """
    points = []
    for pair in text.strip().split(";"):
        xy = pair.split(",")
        try:
            x, y = (float(v) for v in xy)
        except ValueError:
            raise ValueError(f"bad points {text!r}: {pair!r} is not 'x,y'") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"bad points {text!r}: {pair!r} is not finite")
        points.append((x, y))
    return tuple(points)


def cvat_xml(images: Sequence[ImageAnnotation], classes: Sequence[str]) -> str:
    """The CVAT for images 1.1 XML text of ``images``.

    Instances with polygons are written as one ``<polygon>`` per part, the others as
    ``<box>``. Scores have no place in the format and are dropped.

    Raises:
        UnknownLabelError: an instance label is not in ``classes``.
    """
    known = tuple(dict.fromkeys(classes))
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for tag, text in (("name", "hemascope"), ("size", str(len(images))), ("mode", "annotation")):
        ET.SubElement(task, tag).text = text
    labels = ET.SubElement(task, "labels")
    for name in known:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "color").text = "#%02x%02x%02x" % class_color(name)
        ET.SubElement(label, "type").text = "any"
        ET.SubElement(label, "attributes")
    for index, im in enumerate(images):
        attrs = {"id": str(index), "name": im.file_name, "width": str(im.width),
                 "height": str(im.height)}
        if im.split:
            attrs["subset"] = im.split
        element = ET.SubElement(root, "image", attrs)
        for inst in im.instances:
            if inst.label not in known:
                raise UnknownLabelError(inst.label, "classes", known)
            _write_shapes(element, inst)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_cvat(images: Sequence[ImageAnnotation], classes: Sequence[str], path: str | Path,
               *, overwrite: bool = False) -> Path:
    """Write :func:`cvat_xml` atomically; refuses to replace a file unless ``overwrite``."""
    target = Path(path)
    refuse_existing([target], overwrite=overwrite)
    return write_text(target, cvat_xml(images, classes))


def _parse(path: Path) -> ET.Element:
    root = parse_xml_root(path, where=path, expected="annotations", what="a CVAT XML file")
    version = (root.findtext("version") or "1.1").strip()
    if not version.startswith("1."):
        raise AnnotationError(path, f"CVAT XML version {version} is not supported (1.x only)")
    if root.find("track") is not None:
        raise AnnotationError(path, "CVAT for video (<track>) is not supported; export the "
                                    "task as 'CVAT for images 1.1'")
    return root


def _read_image(element: ET.Element, where: str, problems: list[Problem], *,
                strict: bool) -> ImageAnnotation:
    name = (element.get("name") or "").strip()
    if not name:
        raise AnnotationError(where, f"<image id={element.get('id')!r}> has no name")
    try:
        width, height = int(element.get("width", "0")), int(element.get("height", "0"))
    except ValueError:
        raise AnnotationError(where, f"image {name} has a non-integer width or height "
                                     f"({element.get('width')!r}, {element.get('height')!r})"
                              ) from None
    instances: list[Instance] = []
    skipped: dict[str, int] = {}
    for k, shape in enumerate(element, start=1):
        if shape.tag not in ("box", "polygon"):
            skipped[shape.tag] = skipped.get(shape.tag, 0) + 1
            continue
        try:
            inst = _shape(shape)
        except ValueError as e:
            record(problems, Problem(where, "malformed_annotation", f"image {name}: "
                                    f"<{shape.tag}> #{k} ({shape.get('label')}): {e}"),
                  strict=strict)
            continue
        for p in check_instance(inst, width=width, height=height, path=name):
            record(problems, p, strict=strict)
        instances.append(inst)
    for tag, n in skipped.items():
        record(problems, Problem(where, "malformed_annotation", f"image {name}: {n} <{tag}> "
                                "shape(s) skipped; only boxes and polygons are supported"),
              strict=strict)
    split = SUBSETS.get((element.get("subset") or "").strip().lower())
    return ImageAnnotation(name, width, height, tuple(instances), split=split)


def _shape(shape: ET.Element) -> Instance:
    label = (shape.get("label") or "").strip()
    if not label:
        raise ValueError("no label")
    attributes = {k: shape.get(k, "").strip() for k, default in SHAPE_ATTRIBUTES.items()
                  if shape.get(k, default).strip() not in (default, "")}
    attributes.update({a.get("name", ""): (a.text or "").strip()
                       for a in shape.findall("attribute") if a.get("name")})
    if shape.tag == "polygon":
        points = parse_points(shape.get("points", ""))
        if len(points) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
        return Instance(label, box_from_polygon(points), polygons=(points,),
                        attributes=attributes)
    try:
        box = tuple(float(shape.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
        angle = float(shape.get("rotation") or 0)
    except ValueError:
        raise ValueError("xtl, ytl, xbr, ybr and rotation must be numbers") from None
    if not all(math.isfinite(v) for v in (*box, angle)):
        raise ValueError("box coordinates must be finite")
    if angle % 360:
        corners = _rotated(box, angle)  # type: ignore[arg-type]
        return Instance(label, box_from_polygon(corners), polygons=(corners,),
                        attributes=attributes)
    return Instance(label, box, attributes=attributes)  # type: ignore[arg-type]


def _rotated(box: tuple[float, float, float, float],
             degrees: float) -> tuple[tuple[float, float], ...]:
    """Corners of a box turned clockwise (on screen, y down) about its centre, as CVAT does."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return tuple((cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c)
                 for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


def _write_shapes(parent: ET.Element, inst: Instance) -> None:
    # CVAT writes occluded and z_order on every shape, group_id only when grouped
    common = {"label": inst.label, "source": "manual",
              **{k: str(inst.attributes.get(k, d)) for k, d in SHAPE_ATTRIBUTES.items()
                 if k != "group_id" or k in inst.attributes}}
    extra = {k: v for k, v in inst.attributes.items() if k not in SHAPE_ATTRIBUTES}
    if inst.polygons:
        shapes = [ET.SubElement(parent, "polygon", {**common, "points": ";".join(
            f"{_fmt(x)},{_fmt(y)}" for x, y in poly)}) for poly in inst.polygons]
    else:
        x0, y0, x1, y1 = inst.box
        shapes = [ET.SubElement(parent, "box", {**common, "xtl": _fmt(x0), "ytl": _fmt(y0),
                                                "xbr": _fmt(x1), "ybr": _fmt(y1)})]
    for shape in shapes:
        for key, value in extra.items():
            ET.SubElement(shape, "attribute", {"name": key}).text = str(value)


def _guess_image_root(path: Path, names: Sequence[str]) -> Path:
    for folder in (path.parent, path.parent / "images"):
        if any((folder / name).is_file() for name in names):
            return folder
    return path.parent


def _fmt(v: float) -> str:
    return repr(float(v))  # shortest text that reads back to the same float

