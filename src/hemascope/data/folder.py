"""Class-folder layouts: ``root/<class>/**/image`` (PBC, Munich BM, LISC, any ImageFolder).

Also ``root/<split>/<class>/**/image`` (Raabin-WBC ``Train/``, ``TestA/``; any
``train/val/test`` tree): when every top-level folder is a split name, each is read as a
split. Class folder names go through :mod:`hemascope.taxonomy` (``NEUTROPHIL``,
``neutrophils``, ``NGS``, ``Baso`` all resolve); images nested deeper inside a class folder
(Munich's ``ABE/0001-1000/``) belong to that class.
"""

from __future__ import annotations

import os
from pathlib import Path

from hemascope import taxonomy
from hemascope.data.labels import LabelMapper
from hemascope.data.samples import ClassificationSet, Sample
from hemascope.errors import DatasetError
from hemascope.io.image import is_image_file
from hemascope.problems import Problem

#: Folder names read as splits (normalised) -> split name.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test", "testa": "test_a",
               "test_a": "test_a", "testb": "test_b", "test_b": "test_b"}


def read_class_folders(root: str | Path, *, vocabulary: str | None = None) -> ClassificationSet:
    """List a class-folder data set (does not decode images).

    Args:
        root: the folder holding one sub-folder per class (or per split, then per class).
        vocabulary: map labels into this vocabulary (e.g. ``"pbc8"``, ``"wbc5"``); classes
            it has no counterpart for are counted in ``unmapped`` and left out.

    Raises:
        DatasetError: ``root`` is missing, not a folder, or holds no class folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist or is not a folder")
    top = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not top:
        raise DatasetError(f"{root} holds no class folders (expected {root}/<class>/<images>) "
                           "and no annotations of a known layout (VOC Annotations/, COCO JSON, "
                           "YOLO data.yaml, CVAT annotations.xml, a label CSV)")
    split_layout = all(taxonomy.normalize(d.name) in SPLIT_NAMES for d in top) and not any(
        taxonomy.is_known(d.name) for d in top)
    mapper = LabelMapper(vocabulary)
    samples: list[Sample] = []
    ignored: list[str] = [_rel(f, root) for f in root.iterdir() if f.is_file()
                          and not f.name.startswith(".")]
    groups = ([(SPLIT_NAMES[taxonomy.normalize(s.name)], c) for s in top
               for c in sorted(x for x in s.iterdir() if x.is_dir() and not x.name.startswith("."))]
              if split_layout else [(None, d) for d in top])
    seen: set[str] = set()
    problems_empty: list[Problem] = []
    for split, class_dir in groups:
        files = sorted(_walk(class_dir))
        images = [f for f in files if is_image_file(f)]
        ignored += [_rel(f, root) for f in files if not is_image_file(f)]
        if not images:
            problems_empty.append(Problem(_rel(class_dir, root), "empty_class",
                                          f"class folder {class_dir.name!r} holds no images"))
            continue
        label = mapper(class_dir.name, path=_rel(class_dir, root), n=len(images))
        if label is None:
            continue
        seen.add(label)
        for f in images:
            samples.append(Sample(path=_rel(f, root), label=label, source_label=class_dir.name,
                                  subclass=taxonomy.refining_subclass(f.name, label), split=split))
    if not samples and not mapper.problems and not mapper.unmapped:
        raise DatasetError(f"{root} holds no images in class folders")
    samples.sort(key=lambda s: s.path)
    return ClassificationSet(root=root, samples=samples, classes=mapper.classes(seen),
                             problems=mapper.problems + problems_empty, unmapped=mapper.unmapped,
                             ignored=sorted(ignored), vocabulary=mapper.vocabulary, format="folder")


def _walk(folder: Path):
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()
