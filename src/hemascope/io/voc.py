"""Pascal VOC XML (labelImg) annotations: BCCD and CBC layouts.

Two folder layouts are read:

* **VOC / BCCD**: ``root/Annotations/*.xml``, ``root/JPEGImages/``, and optionally
  ``root/ImageSets/Main/{train,val,test,trainval}.txt`` naming the split of each image id.
* **CBC**: ``root/{Training,Validation,Testing}/{Images,Annotations}`` (any letter case).

Boxes are 1-based inclusive integer pixel indices in the files and are converted once
(``x0 = xmin - 1``, ``x1 = xmax``), see :mod:`hemascope.io.annotations`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Sequence

from hemascope.errors import AnnotationError, DatasetError, ImageReadError
from hemascope.io.annotations import DetectionSet, ImageAnnotation, Instance, check_instance
from hemascope.io._xml import parse_xml_root
from hemascope.io.atomic import refuse_existing, write_text
from hemascope.io.image import is_image_file, read_header
from hemascope.problems import Problem, record

#: Object fields kept as :attr:`Instance.attributes` when present.
VOC_ATTRIBUTES = ("difficult", "truncated", "occluded")
#: Split folder names of the CBC layout (lower case) and the split they stand for.
SPLIT_FOLDERS = {"training": "train", "train": "train", "validation": "val", "val": "val",
                 "valid": "val", "testing": "test", "test": "test"}
_IMAGE_DIRS = ("jpegimages", "images")
_SPLITS = ("train", "val", "test")


def parse_voc_xml(source: str | Path, *, path_hint: str | None = None) -> ImageAnnotation:
    """Parse one VOC / labelImg XML file.

    Args:
        source: the XML file.
        path_hint: how to name the file in error messages (default: ``source``).

    Returns:
        The annotation with ``file_name`` as written in ``<filename>``, the size from
        ``<size>``, labels stripped of surrounding white space, no split.

    Raises:
        AnnotationError: unreadable or malformed XML, a missing ``<filename>``, ``<size>``,
            ``<name>`` or ``<bndbox>`` field, or a non-numeric coordinate.
    """
    where = path_hint if path_hint is not None else str(source)
    root = parse_xml_root(source, where=where, expected="annotation", what="a VOC annotation")
    file_name = _required_text(root, "filename", where, "<annotation>")
    size = root.find("size")
    if size is None:
        raise AnnotationError(where, "<annotation> lacks <size>")
    width = _integer(_required_text(size, "width", where, "<size>"), "<size><width>", where)
    height = _integer(_required_text(size, "height", where, "<size>"), "<size><height>", where)
    instances = tuple(_parse_object(obj, i, where) for i, obj in enumerate(root.findall("object")))
    return ImageAnnotation(file_name=file_name, width=width, height=height, instances=instances)


def read_voc(root: str | Path, *, strict: bool = False) -> DetectionSet:
    """Read a VOC / BCCD or CBC folder of XML annotations.

    Args:
        root: the data set folder (see the module docstring for the layouts).
        strict: raise on the first problem instead of collecting it.

    Returns:
        A :class:`DetectionSet` whose ``file_name`` values are relative to ``root``.
        Files with malformed XML, annotations whose image is missing or unreadable and
        images without XML are left out and reported; geometry problems are reported
        and the boxes kept. When the header size differs from ``<size>`` the header wins.

    Raises:
        DatasetError: ``root`` is not a folder of a known layout.
        AnnotationError: ``strict`` and any problem.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base} is not a folder")
    problems: list[Problem] = []
    images: list[ImageAnnotation] = []
    parts = _layout(base)
    is_voc = parts[0][2] is None  # CBC folders carry their split, VOC uses ImageSets/
    split_of = _read_image_sets(base, problems, strict=strict) if is_voc else {}
    for ann_dir, img_dir, split in parts:
        images += _read_part(base, ann_dir, img_dir, split, split_of, problems, strict=strict)
    classes = sorted({inst.label for im in images for inst in im.instances})
    return DetectionSet(images=images, classes=classes, image_root=str(base),
                        problems=problems, format="voc")


def write_voc(images: Sequence[ImageAnnotation], out_dir: str | Path, *,
              image_dir_name: str = "JPEGImages", overwrite: bool = False) -> Path:
    """Write ``out_dir/Annotations/<stem>.xml`` per image and split lists.

    Boxes are rounded to whole pixels (VOC stores integers); polygons, masks and scores
    have no place in VOC and are dropped. ``ImageSets/Main/<split>.txt`` (and
    ``trainval.txt``) are written when images carry splits. Images are not copied.

    Args:
        images: the annotations to write.
        out_dir: output folder.
        image_dir_name: value of ``<folder>`` (where the images are expected).
        overwrite: allow replacing existing files (never on by default, so inputs are safe).

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    by_stem: dict[str, ImageAnnotation] = {}
    for im in images:
        stem = PurePosixPath(im.file_name).stem
        if stem in by_stem:
            raise AnnotationError(None, f"images {by_stem[stem].file_name!r} and "
                                        f"{im.file_name!r} would both be Annotations/{stem}.xml")
        by_stem[stem] = im
    lists = _split_lists(by_stem)
    targets = {out / "Annotations" / f"{stem}.xml": voc_xml(im, folder=image_dir_name)
               for stem, im in by_stem.items()}
    targets.update({out / "ImageSets" / "Main" / f"{split}.txt": "".join(f"{s}\n" for s in ids)
                    for split, ids in lists.items()})
    refuse_existing(targets, overwrite=overwrite)
    for path, text in targets.items():
        write_text(path, text)
    return out


def voc_xml(im: ImageAnnotation, *, folder: str = "JPEGImages") -> str:
    """The labelImg-style XML text of one image (integer 1-based inclusive boxes)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = PurePosixPath(im.file_name).name
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "Unknown"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", im.width), ("height", im.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for inst in im.instances:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = inst.label
        ET.SubElement(obj, "pose").text = "Unspecified"
        for key in VOC_ATTRIBUTES:
            if key in inst.attributes or key != "occluded":
                ET.SubElement(obj, key).text = str(inst.attributes.get(key, "0"))
        bnd = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = inst.box
        for tag, value in (("xmin", _round(x0) + 1), ("ymin", _round(y0) + 1),
                           ("xmax", _round(x1)), ("ymax", _round(y1))):
            ET.SubElement(bnd, tag).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _parse_object(obj: ET.Element, index: int, where: str) -> Instance:
    what = f"<object> #{index + 1}"
    label = _required_text(obj, "name", where, what)
    bnd = obj.find("bndbox")
    if bnd is None:
        raise AnnotationError(where, f"{what} ({label}) lacks <bndbox>")
    xmin, ymin, xmax, ymax = (
        _number(_required_text(bnd, tag, where, f"{what} <bndbox>"), f"{what} <{tag}>", where)
        for tag in ("xmin", "ymin", "xmax", "ymax"))
    attributes = {key: text for key in VOC_ATTRIBUTES
                  if (text := (obj.findtext(key) or "").strip())}
    return Instance(label=label, box=(xmin - 1.0, ymin - 1.0, xmax, ymax), attributes=attributes)


def _required_text(parent: ET.Element, tag: str, where: str, what: str) -> str:
    text = parent.findtext(tag)
    if text is None or not text.strip():
        missing = "lacks" if text is None else "has an empty"
        raise AnnotationError(where, f"{what} {missing} <{tag}>")
    return text.strip()


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(where, f"{what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(where, f"{what} is not finite: {text!r}")
    return value


def _integer(text: str, what: str, where: str) -> int:
    value = _number(text, what, where)
    if value != int(value) or value < 0:
        raise AnnotationError(where, f"{what} is not a non-negative integer: {text!r}")
    return int(value)


def _round(v: float) -> int:
    return math.floor(v + 0.5)  # half up, not Python's banker's rounding


def _child_dir(parent: Path, names: Sequence[str]) -> Path | None:
    """First sub-folder of ``parent`` whose lower-cased name is in ``names`` (in order)."""
    found = {p.name.lower(): p for p in sorted(parent.iterdir()) if p.is_dir()}
    return next((found[n] for n in names if n in found), None)


def _layout(root: Path) -> list[tuple[Path, Path | None, str | None]]:
    """``(annotation folder, image folder, split)`` triples; the split is None for VOC."""
    ann = _child_dir(root, ("annotations",))
    if ann is not None:
        return [(ann, _child_dir(root, _IMAGE_DIRS), None)]
    parts = []
    for sub in sorted(root.iterdir()):
        split = SPLIT_FOLDERS.get(sub.name.lower())
        if split and sub.is_dir() and (sub_ann := _child_dir(sub, ("annotations",))):
            parts.append((sub_ann, _child_dir(sub, _IMAGE_DIRS), split))
    if not parts:
        raise DatasetError(f"{root} has neither Annotations/ (VOC) nor "
                           "Training|Validation|Testing/Annotations/ (CBC) folders")
    return sorted(parts, key=lambda p: _SPLITS.index(p[2]))


def _read_image_sets(root: Path, problems: list[Problem], *, strict: bool) -> dict[str, str]:
    """Image id -> split from ``ImageSets/Main``; ids only in trainval count as train."""
    main = root / "ImageSets" / "Main"
    split_of: dict[str, str] = {}
    for split in (*_SPLITS, "trainval"):
        path = main / f"{split}.txt"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            image_id = line.split()[0] if line.split() else ""
            if not image_id:
                continue
            if split == "trainval":
                split_of.setdefault(image_id, "train")
            elif image_id in split_of:
                record(problems, Problem(_rel(path, root), "duplicate", f"{image_id} is listed "
                      f"in both {split_of[image_id]}.txt and {split}.txt"), strict=strict)
            else:
                split_of[image_id] = split
    return split_of


def _read_part(root: Path, ann_dir: Path, img_dir: Path | None, split: str | None,
               split_of: dict[str, str], problems: list[Problem], *,
               strict: bool) -> list[ImageAnnotation]:
    files = sorted(p for p in img_dir.iterdir() if is_image_file(p)) if img_dir else []
    by_name = {p.name: p for p in files}
    by_stem = {p.stem: p for p in files}
    used: set[Path] = set()
    out = []
    for xml in sorted(p for p in ann_dir.glob("*.xml") if not p.name.startswith(".")):
        where = _rel(xml, root)
        try:
            ann = parse_voc_xml(xml, path_hint=where)
        except AnnotationError as e:
            record(problems, Problem(where, "malformed_annotation", e.reason), strict=strict)
            if xml.stem in by_stem:  # its image has an XML, only a broken one: said above
                used.add(by_stem[xml.stem])
            continue
        named = PurePosixPath(ann.file_name.replace("\\", "/")).name
        image = by_name.get(named) or by_stem.get(xml.stem) or by_stem.get(Path(named).stem)
        if image is None:
            folder = _rel(img_dir, root) + "/" if img_dir else "any image folder"
            record(problems, Problem(where, "missing_image",
                                    f"image {named} is not in {folder}"), strict=strict)
            continue
        used.add(image)
        ann = _with_image(ann, image, root, where, problems, strict=strict)
        if ann is None:
            continue
        ann = replace(ann, split=split or split_of.get(xml.stem))
        for inst in ann.instances:
            for p in check_instance(inst, width=ann.width, height=ann.height, path=where):
                record(problems, p, strict=strict)
        out.append(ann)
    for image in files:
        if image not in used:
            record(problems, Problem(_rel(image, root), "unannotated_image",
                                    f"no XML in {_rel(ann_dir, root)}/ for this image"),
                  strict=strict)
    return out


def _with_image(ann: ImageAnnotation, image: Path, root: Path, where: str,
                problems: list[Problem], *, strict: bool) -> ImageAnnotation | None:
    """Point ``ann`` at its image file and take the size from the header (cheap)."""
    try:
        header = read_header(image)
    except ImageReadError as e:
        record(problems, Problem(_rel(image, root), "unreadable_image", e.reason), strict=strict)
        return None
    # labelImg sometimes writes 0x0; only a real disagreement is worth a report
    if ann.width and ann.height and (ann.width, ann.height) != (header.width, header.height):
        record(problems, Problem(where, "size_mismatch", f"<size> says {ann.width}x{ann.height}"
                                f" but the image is {header.width}x{header.height}"),
              strict=strict)
    return replace(ann, file_name=_rel(image, root), width=header.width, height=header.height)


def _split_lists(by_stem: dict[str, ImageAnnotation]) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for stem, im in sorted(by_stem.items()):
        if im.split:
            lists.setdefault(im.split, []).append(stem)
            if im.split in ("train", "val"):
                lists.setdefault("trainval", []).append(stem)
    return lists




def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
