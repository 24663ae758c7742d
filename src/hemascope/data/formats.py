"""Which layout is this path, and one front door to read any of them.

=============  ==========================================================================
format         recognised by
=============  ==========================================================================
``yolo``       a ``data.yaml`` (or ``*.yaml``) file, or a folder holding one
``voc``        a folder with ``Annotations/*.xml`` (BCCD), or with split folders that each
               hold ``Annotations/`` (CBC), or a single VOC ``.xml`` file
``cvat``       an XML file whose root is ``<annotations>``, or a folder with ``annotations.xml``
``coco``       a COCO ``.json`` file, or a folder with exactly one (also under ``annotations/``)
``csv``        a label table (``labels.csv`` of CellaVision, WBCAtt tables, any path/label CSV),
               or a folder holding CellaVision's ``labels.csv`` or WBCAtt's split tables, or
               a folder in Zheng et al.'s published layout (``Dataset 1/`` with ``Class
               Labels of Dataset 1.csv`` beside it; or the root holding both)
``folder``     any other folder: ``root/<class>/**/image``
``image``      a single image file
=============  ==========================================================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from hemascope.data.samples import ClassificationSet
from hemascope.errors import AnnotationError, DatasetError
from hemascope.io.annotations import DetectionSet
from hemascope.io.image import is_image_file
from hemascope.io.yolo import YAML_NAMES

FORMATS = ("auto", "folder", "csv", "voc", "coco", "yolo", "cvat")
DETECTION_FORMATS = ("voc", "coco", "yolo", "cvat")
AnyDataset = Union[ClassificationSet, DetectionSet]


def detect_format(path: str | Path) -> str:
    """Name of the layout at ``path`` (see the module table).

    Raises:
        DatasetError: the path does not exist or is a file of no known kind.
    """
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p} does not exist")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return "yolo"
        if suffix == ".json":
            return "coco"
        if suffix == ".csv":
            return "csv"
        if suffix == ".xml":
            return "cvat" if _xml_root_tag(p) == "annotations" else "voc"
        if is_image_file(p):
            return "image"
        raise DatasetError(f"{p}: cannot tell the format of a {suffix or 'suffix-less'} file; "
                           f"use --format {{{','.join(FORMATS[1:])}}}")
    if _yolo_yaml(p) is not None:
        return "yolo"
    if (p / "Annotations").is_dir() or any((d / "Annotations").is_dir() for d in _subdirs(p)):
        return "voc"
    if (p / "annotations.xml").is_file():
        return "cvat"
    if _label_tables(p):
        return "csv"
    if _coco_files(p):
        return "coco"
    return "folder"


def load_dataset(path: str | Path, *, format: str = "auto", vocabulary: str | None = None,
                 image_root: str | Path | None = None, strict: bool = False) -> AnyDataset:
    """Read a data set of any supported layout (nothing is decoded).

    Args:
        path: folder or annotation file.
        format: one of :data:`FORMATS`; ``auto`` uses :func:`detect_format`.
        vocabulary: for single-cell sets, map labels into this vocabulary.
        image_root: where images live when the annotation file does not say.
        strict: detection readers raise on the first problem instead of reporting it.
    """
    p = Path(path)
    fmt = detect_format(p) if format == "auto" else format
    if fmt not in FORMATS or fmt == "auto":
        raise DatasetError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if not p.exists():
        raise DatasetError(f"{p} does not exist")
    if fmt == "folder":
        from hemascope.data.folder import read_class_folders

        return read_class_folders(p, vocabulary=vocabulary)
    if fmt == "csv":
        return _load_csv(p, vocabulary=vocabulary, image_root=image_root)
    if fmt == "voc":
        from hemascope.io.voc import parse_voc_xml, read_voc

        if p.is_file():
            ann = parse_voc_xml(p)
            guess = p.parent.parent / "JPEGImages"  # VOC keeps XML and images in sibling folders
            root = image_root or (guess if (guess / ann.file_name).is_file() else p.parent)
            return DetectionSet(images=[ann], classes=sorted(set(ann.labels())),
                                image_root=str(root), format="voc")
        return read_voc(p, strict=strict)
    if fmt == "coco":
        from hemascope.io.coco import read_coco

        if p.is_dir():
            files = _coco_files(p)
            if len(files) != 1:
                raise DatasetError(f"{p} holds {len(files)} COCO JSON files "
                                   f"({', '.join(f.name for f in files) or 'none'}); name one")
            p = files[0]
        return read_coco(p, image_root=image_root, strict=strict)
    if fmt == "yolo":
        from hemascope.io.yolo import read_yolo

        return read_yolo(p, strict=strict)
    from hemascope.io.cvat import read_cvat

    if p.is_dir():
        p = p / "annotations.xml"
    return read_cvat(p, image_root=image_root, strict=strict)


def _load_csv(p: Path, *, vocabulary, image_root) -> ClassificationSet:
    from hemascope.data import tables

    if p.is_file():
        return tables.read_label_csv(p, image_root=image_root, vocabulary=vocabulary)
    if table := tables.cellavision_table(p):
        return tables.read_cellavision(p, vocabulary=vocabulary, csv_path=table)
    if list(p.glob("*_train.csv")):
        return tables.read_wbcatt_folder(p, image_root=image_root, vocabulary=vocabulary)
    sets = tables.zheng_sets(p)
    if len(sets) == 1:
        return tables.read_cellavision(sets[0], vocabulary=vocabulary)
    if sets:
        raise DatasetError(f"{p} holds {len(sets)} labelled sets ("
                           + ", ".join(repr(str(s)) for s in sets) + "): give one of them")
    raise DatasetError(f"{p} holds no label table (labels.csv, Class Labels of {p.name}.csv "
                       "beside it, or *_train.csv)")


def _label_tables(p: Path) -> bool:
    """Whether the folder ``p`` is read through a label table (see :func:`_load_csv`)."""
    from hemascope.data import tables

    return bool(tables.cellavision_table(p) or list(p.glob("*_train.csv"))
                or tables.zheng_sets(p))


def _subdirs(p: Path) -> list[Path]:
    return [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]


def _yolo_yaml(p: Path) -> Path | None:
    for name in YAML_NAMES:
        if (p / name).is_file():
            return p / name
    return None


def _coco_files(p: Path) -> list[Path]:
    found = []
    for folder in (p, p / "annotations"):
        if folder.is_dir():
            found += [f for f in sorted(folder.glob("*.json")) if _looks_like_coco(f)]
    return found


def _looks_like_coco(f: Path) -> bool:
    try:
        if f.stat().st_size > 512 * 2**20:
            return True  # too big to sniff; a COCO file is the only large JSON we expect
        obj = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(obj, dict) and "images" in obj and "annotations" in obj


def _xml_root_tag(p: Path) -> str:
    import xml.etree.ElementTree as ET

    try:
        for _, elem in ET.iterparse(p, events=("start",)):
            return elem.tag
    except ET.ParseError as e:
        raise AnnotationError(p, f"malformed XML: {e}") from None
    return ""
