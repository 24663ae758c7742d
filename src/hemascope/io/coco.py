"""COCO object-detection / instance-segmentation JSON (ground truth and results).

COCO ``bbox = [x, y, w, h]`` and polygon vertices live in the same continuous pixel space
as hemascope (see :mod:`hemascope.io.annotations`), so only ``xywh <-> xyxy`` changes.
Masks may come as polygons (lists of flat ``[x, y, x, y, ...]`` lists) or run-length
encodings; RLEs are kept in compressed form (``counts`` a string) in
:attr:`Instance.rle`. ``pycocotools`` is imported only when an RLE needs it.

The writers number categories ``1..N`` in the order of ``classes`` and images ``1..M``
in the order given, so :func:`to_coco_dict` and :func:`to_coco_results` of the same
images agree. A non-standard ``split`` key on images keeps hemascope splits across a
round trip; COCO tools ignore it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from hemascope.errors import AnnotationError, UnknownLabelError
from hemascope.io.annotations import (
    Box,
    DetectionSet,
    ImageAnnotation,
    Instance,
    Polygon,
    box_from_polygon,
    check_instance,
)
from hemascope.io.atomic import refuse_existing, write_json
from hemascope.problems import Problem, record

_REQUIRED = ("images", "annotations", "categories")
_SAMPLE = 20  # image files probed when guessing the image folder


def read_coco(json_path: str | Path, *, image_root: str | Path | None = None,
              strict: bool = False) -> DetectionSet:
    """Read a COCO annotation file.

    Args:
        json_path: the ``.json`` file.
        image_root: folder the ``file_name`` values are relative to. Default: the JSON's
            folder, unless none of the first images is found there but some are in a
            sibling ``images/`` folder (the layout of CVAT and Roboflow exports).
        strict: raise on the first per-annotation problem instead of collecting it.

    Raises:
        AnnotationError: unreadable or invalid JSON, a file that is not COCO, or (with
            ``strict``) any bad annotation.
    """
    path = Path(json_path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AnnotationError(path, f"cannot read file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise AnnotationError(path, "not a UTF-8 text file") from None
    except json.JSONDecodeError as e:
        raise AnnotationError(path, f"not valid JSON (line {e.lineno}: {e.msg})") from None
    root = Path(image_root) if image_root is not None else _guess_image_root(path, obj)
    return coco_to_detection_set(obj, source=path, image_root=root, strict=strict)


def coco_to_detection_set(obj: Any, *, source: str | Path | None = None,
                          image_root: str | Path = ".", strict: bool = False) -> DetectionSet:
    """Convert a parsed COCO dict to a :class:`DetectionSet`.

    Malformed image or category entries make the whole file unusable and always raise;
    annotations with an unknown image or category id, a bad ``bbox`` or a bad
    ``segmentation`` are reported (or raised with ``strict``) and skipped.

    Args:
        obj: the parsed JSON.
        source: file name used in messages.
        image_root: stored as :attr:`DetectionSet.image_root`.
        strict: raise on the first problem.
    """
    where = str(source) if source is not None else "<coco>"
    _check_top_level(obj, source)
    categories = _categories(obj["categories"], source)
    entries = _images(obj["images"], source)
    found: dict[Any, list[Instance]] = {image_id: [] for image_id in entries}
    problems: list[Problem] = []
    for image_id, im in list(entries.items()):  # no size given: the image's header has it
        if not (im.width and im.height):
            entries[image_id] = _sized(im, Path(image_root), problems, where, strict=strict)
    for index, ann in enumerate(obj["annotations"]):
        try:
            image_id, inst = _annotation(ann, index, entries, categories)
        except ValueError as e:
            record(problems, Problem(where, "malformed_annotation", str(e)), strict=strict)
            continue
        im = entries[image_id]
        for p in check_instance(inst, width=im.width, height=im.height, path=im.file_name):
            record(problems, p, strict=strict)
        found[image_id].append(inst)
    images = [ImageAnnotation(im.file_name, im.width, im.height, tuple(found[i]), im.split)
              for i, im in entries.items()]
    classes = list(dict.fromkeys(categories[c] for c in sorted(categories, key=_sort_key)))
    return DetectionSet(images=images, classes=classes, image_root=str(image_root),
                        problems=problems, format="coco")


def to_coco_dict(images: Sequence[ImageAnnotation], classes: Sequence[str]) -> dict[str, Any]:
    """A COCO ground-truth dict; category ids are ``1..N`` in ``classes`` order.

    Raises:
        UnknownLabelError: an instance label is not in ``classes``.
    """
    cat_id = _category_ids(classes)
    out_images, annotations = [], []
    for image_id, im in enumerate(images, start=1):
        entry: dict[str, Any] = {"id": image_id, "file_name": im.file_name,
                                 "width": im.width, "height": im.height}
        if im.split:
            entry["split"] = im.split
        out_images.append(entry)
        for inst in im.instances:
            annotations.append(_coco_annotation(inst, len(annotations) + 1, image_id,
                                                _category_of(cat_id, inst.label)))
    return {
        "info": {"description": "written by hemascope"},
        "licenses": [],
        "images": out_images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": ""}
                       for name, i in cat_id.items()],
    }


def write_coco(images: Sequence[ImageAnnotation], classes: Sequence[str], path: str | Path,
               *, overwrite: bool = False) -> Path:
    """Write :func:`to_coco_dict` atomically; refuses to replace a file unless ``overwrite``."""
    target = Path(path)
    refuse_existing([target], overwrite=overwrite)
    return write_json(target, to_coco_dict(images, classes))


def to_coco_results(images: Sequence[ImageAnnotation],
                    classes: Sequence[str]) -> list[dict[str, Any]]:
    """Predictions as a COCO results list (for ``COCO.loadRes`` / ``COCOeval``).

    Image and category ids match :func:`to_coco_dict` of the same ``images`` and
    ``classes``. Instances without a score count as ``1.0``. ``file_name`` and
    ``category_name`` are added for people reading the file; COCO tools ignore them.
    """
    cat_id = _category_ids(classes)
    out = []
    for image_id, im in enumerate(images, start=1):
        for inst in im.instances:
            x0, y0, x1, y1 = inst.box
            entry: dict[str, Any] = {
                "image_id": image_id,
                "category_id": _category_of(cat_id, inst.label),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": 1.0 if inst.score is None else float(inst.score),
                "file_name": im.file_name,
                "category_name": inst.label,
            }
            segmentation = _segmentation(inst)
            if segmentation:
                entry["segmentation"] = segmentation
            out.append(entry)
    return out


def _check_top_level(obj: Any, source: str | Path | None) -> None:
    if isinstance(obj, list):
        raise AnnotationError(source, "not a COCO annotation file: the top level is a list "
                                      "(a COCO results file?), expected an object with "
                                      "'images', 'annotations' and 'categories'")
    if not isinstance(obj, dict):
        raise AnnotationError(source, f"not a COCO annotation file: the top level is a "
                                      f"{type(obj).__name__}, expected an object")
    missing = [key for key in _REQUIRED if key not in obj]
    if missing:
        raise AnnotationError(source, "not a COCO annotation file: missing "
                              + ", ".join(repr(k) for k in missing))
    for key in _REQUIRED:
        if not isinstance(obj[key], list):
            raise AnnotationError(source, f"not a COCO annotation file: {key!r} is a "
                                          f"{type(obj[key]).__name__}, expected a list")


def _categories(entries: list[Any], source: str | Path | None) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for i, cat in enumerate(entries):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) \
                or not isinstance(cat.get("name"), str):
            raise AnnotationError(source, f"category #{i + 1} needs an integer 'id' and a "
                                          f"string 'name', got {cat!r}")
        if cat["id"] in out:
            raise AnnotationError(source, f"category id {cat['id']} is used twice")
        out[cat["id"]] = cat["name"]
    return out


def _images(entries: list[Any], source: str | Path | None) -> dict[Any, ImageAnnotation]:
    out: dict[Any, ImageAnnotation] = {}
    for i, im in enumerate(entries):
        if not isinstance(im, dict) or not _is_id(im.get("id")) \
                or not isinstance(im.get("file_name"), str):
            raise AnnotationError(source, f"image #{i + 1} needs an 'id' and a string "
                                          f"'file_name', got {_short(im)}")
        size = [im.get("width", 0), im.get("height", 0)]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size):
            raise AnnotationError(source, f"image {im['id']} ({im['file_name']}) has a bad "
                                          f"width/height {size}")
        if im["id"] in out:
            raise AnnotationError(source, f"image id {im['id']} is used twice")
        split = im.get("split") if isinstance(im.get("split"), str) else None
        out[im["id"]] = ImageAnnotation(im["file_name"], size[0], size[1], split=split)
    return out


def _sized(im: ImageAnnotation, root: Path, problems: list[Problem], where: str, *,
           strict: bool) -> ImageAnnotation:
    """``im`` with the width and height read from its image file's header, if it has one."""
    from hemascope.errors import ImageReadError
    from hemascope.io.image import read_header

    try:
        h = read_header(root / im.file_name)
    except ImageReadError:
        record(problems, Problem(where, "malformed_annotation",
                                 f"image {im.file_name} has no width/height and its file cannot "
                                 "be read to find them"), strict=strict)
        return im
    return ImageAnnotation(im.file_name, h.width, h.height, im.instances, im.split)


def _annotation(ann: Any, index: int, images: Mapping[Any, ImageAnnotation],
                categories: Mapping[Any, str]) -> tuple[Any, Instance]:
    """``(image id, instance)`` of one annotation; ValueError with the reason if bad."""
    if not isinstance(ann, dict):
        raise ValueError(f"annotation #{index + 1} is a {type(ann).__name__}, not an object")
    name = f"annotation {ann['id']}" if "id" in ann else f"annotation #{index + 1}"
    image_id, cat = ann.get("image_id"), ann.get("category_id")
    if not _is_id(image_id) or image_id not in images:
        raise ValueError(f"{name} refers to unknown image id {image_id!r}")
    if not _is_id(cat) or cat not in categories:
        raise ValueError(f"{name} refers to unknown category id {cat!r}")
    im = images[image_id]
    try:
        polygons, rle = _parse_segmentation(ann.get("segmentation"), im.height, im.width)
        box = _parse_box(ann.get("bbox"), polygons, rle)
        score = _parse_score(ann.get("score"))
    except ValueError as e:
        raise ValueError(f"{name} (image {im.file_name}): {e}") from None
    attributes = {str(k): _attr_text(v) for k, v in (ann.get("attributes") or {}).items()} \
        if isinstance(ann.get("attributes"), dict) else {}
    if ann.get("iscrowd") in (1, True):
        attributes["iscrowd"] = "1"
    return image_id, Instance(label=categories[cat], box=box, polygons=polygons, rle=rle,
                              score=score, attributes=attributes)


def _parse_box(bbox: Any, polygons: tuple[Polygon, ...], rle: dict[str, Any] | None) -> Box:
    if bbox is None:
        if polygons:
            return box_from_polygon(p for poly in polygons for p in poly)
        if rle is not None:
            from pycocotools import mask as mask_utils

            x, y, w, h = (float(v) for v in mask_utils.toBbox(_rle_for_tools(rle)))
            return (x, y, x + w, y + h)
        raise ValueError("has neither 'bbox' nor 'segmentation'")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ValueError(f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise ValueError(f"bbox has a negative width or height: {bbox!r}")
    return (x, y, x + w, y + h)


def _parse_segmentation(seg: Any, height: int, width: int
                        ) -> tuple[tuple[Polygon, ...], dict[str, Any] | None]:
    if seg is None or seg == []:
        return (), None
    if isinstance(seg, list):
        polygons = []
        for part in seg:
            if not isinstance(part, list) or not all(_is_number(v) for v in part):
                raise ValueError("polygon segmentation must be lists of numbers")
            if part and (len(part) % 2 or len(part) < 6):
                raise ValueError(f"polygon needs an even number (>= 6) of coordinates, "
                                 f"got {len(part)}")
            if part:
                polygons.append(tuple((float(part[i]), float(part[i + 1]))
                                      for i in range(0, len(part), 2)))
        return tuple(polygons), None
    if isinstance(seg, dict):
        return (), _compressed_rle(seg, height, width)
    raise ValueError(f"segmentation must be a list of polygons or an RLE object, got "
                     f"{type(seg).__name__}")


def _compressed_rle(seg: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise ValueError(f"RLE needs 'size': [height, width], got {size!r}")
    if height and width and size != [height, width]:
        raise ValueError(f"RLE size {size} differs from the image size [{height}, {width}]")
    if isinstance(counts, str):
        return {"size": list(size), "counts": counts}
    if not (isinstance(counts, list) and all(isinstance(v, int) and v >= 0 for v in counts)):
        raise ValueError("RLE 'counts' must be a string or a list of non-negative integers")
    if sum(counts) != size[0] * size[1]:
        raise ValueError(f"RLE counts cover {sum(counts)} pixels, not {size[0]}x{size[1]}")
    from pycocotools import mask as mask_utils

    rle = mask_utils.frPyObjects({"size": list(size), "counts": counts}, size[0], size[1])
    return {"size": list(size), "counts": rle["counts"].decode("ascii")}


def _parse_score(score: Any) -> float | None:
    if score is None:
        return None
    if not _is_number(score):
        raise ValueError(f"score must be a number, got {score!r}")
    return float(score)


def _coco_annotation(inst: Instance, ann_id: int, image_id: int, cat: int) -> dict[str, Any]:
    x0, y0, x1, y1 = inst.box
    out: dict[str, Any] = {
        "id": ann_id, "image_id": image_id, "category_id": cat,
        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": _area(inst),
        "iscrowd": 1 if str(inst.attributes.get("iscrowd", "0")).lower() in ("1", "true") else 0,
        "segmentation": _segmentation(inst) or [],
    }
    if inst.score is not None:
        out["score"] = float(inst.score)
    extra = {k: v for k, v in inst.attributes.items() if k != "iscrowd"}
    if extra:
        out["attributes"] = dict(extra)
    return out


def _segmentation(inst: Instance) -> Any:
    if inst.rle is not None:
        counts = inst.rle["counts"]
        return {"size": list(inst.rle["size"]),
                "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    return [[c for xy in poly for c in xy] for poly in inst.polygons]


def _area(inst: Instance) -> float:
    if inst.rle is not None:
        from pycocotools import mask as mask_utils

        return float(mask_utils.area(_rle_for_tools(inst.rle)))
    if inst.polygons:
        return float(sum(_shoelace(poly) for poly in inst.polygons))
    return inst.area


def _shoelace(poly: Sequence[tuple[float, float]]) -> float:
    n = len(poly)
    return abs(sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]
                   for i in range(n))) / 2.0


def _rle_for_tools(rle: Mapping[str, Any]) -> dict[str, Any]:
    """pycocotools wants ``counts`` as bytes for compressed RLEs."""
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _category_ids(classes: Sequence[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(dict.fromkeys(classes), start=1)}


def _category_of(cat_id: Mapping[str, int], label: str) -> int:
    if label not in cat_id:
        raise UnknownLabelError(label, "classes", tuple(cat_id))
    return cat_id[label]


def _guess_image_root(path: Path, obj: Any) -> Path:
    names = [im.get("file_name") for im in (obj.get("images") or [])[:_SAMPLE]
             if isinstance(im, dict) and isinstance(im.get("file_name"), str)] \
        if isinstance(obj, dict) and isinstance(obj.get("images"), list) else []
    for folder in (path.parent, path.parent / "images"):
        if any((folder / name).is_file() for name in names):
            return folder
    return path.parent


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int) else (1, str(v))


def _attr_text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."

