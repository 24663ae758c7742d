"""Convert a detection set to another annotation format (VOC <-> COCO <-> YOLO <-> CVAT)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from hemascope.errors import DatasetError
from hemascope.io.annotations import DetectionSet
from hemascope.io.atomic import guard_inputs

TARGETS = ("coco", "voc", "yolo", "cvat")


def convert_detection_set(ds: DetectionSet, *, to: str, out: str | Path,
                          protect: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
    """Write ``ds`` in format ``to`` at ``out`` and return the written path.

    Args:
        ds: any set read by :func:`hemascope.data.load_dataset`.
        to: ``coco`` / ``cvat`` (``out`` is a file) or ``voc`` / ``yolo`` (``out`` is a folder;
            YOLO gets copies of the images, as its layout requires).
        protect: source files that must never be overwritten.
        overwrite: replace existing output files.
    """
    target = Path(out)
    guard_inputs(target, protect)
    classes = list(ds.classes) or sorted({i.label for im in ds.images for i in im.instances})
    if to == "coco":
        from hemascope.io.coco import write_coco

        return write_coco(ds.images, classes, target, overwrite=overwrite)
    if to == "cvat":
        from hemascope.io.cvat import write_cvat

        return write_cvat(ds.images, classes, target, overwrite=overwrite)
    if to == "voc":
        from hemascope.io.voc import write_voc

        return write_voc(ds.images, target, overwrite=overwrite)
    if to == "yolo":
        from hemascope.io.yolo import write_yolo

        return write_yolo(ds.images, classes, target, image_root=ds.image_root, overwrite=overwrite)
    raise DatasetError(f"cannot convert to {to!r}; choose from {', '.join(TARGETS)}")
