"""Ultralytics YOLO detection / segmentation data sets (``data.yaml`` + label ``.txt``).

A label file holds one object per line: ``class cx cy w h`` (a box) or
``class x1 y1 x2 y2 ...`` (a polygon, at least 3 points), all normalised by the image
width and height in the continuous pixel space of :mod:`hemascope.io.annotations`.
Label files are found by the Ultralytics rule: the last ``/images/`` component of the
image path becomes ``/labels/`` and the suffix ``.txt``. A missing or empty label file
means an image without objects, as in Ultralytics.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Sequence

from hemascope.errors import AnnotationError, HemascopeError, ImageReadError, UnknownLabelError
from hemascope.io.annotations import (
    DetectionSet,
    ImageAnnotation,
    Instance,
    box_from_polygon,
    check_instance,
    clip_box,
)
from hemascope.io.atomic import atomic_write, refuse_existing, write_text
from hemascope.io.image import is_image_file, read_header
from hemascope.problems import Problem, record

#: How far (normalised) a value may stray outside ``[0, 1]`` before the line is rejected.
YOLO_TOLERANCE = 0.01
_SPLITS = ("train", "val", "test")
#: Names a folder's data-set YAML may have, in the order they are looked for.
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")


def read_yolo(source: str | Path, *, strict: bool = False) -> DetectionSet:
    """Read an Ultralytics-style YOLO data set.

    Args:
        source: a ``data.yaml`` file, or a folder holding one. Its ``path`` (relative to
            the YAML's folder; default the folder itself) is the data set root;
            ``train``/``val``/``test`` are each a folder of images (searched
            recursively), a ``.txt`` list of image paths (relative to the list's folder),
            or a list of those; ``names`` is a list or an ``{id: name}`` mapping.
            A ``path`` that does not exist here falls back to the YAML's folder, and an
            entry that does not exist is looked up by the tail of its path under the root,
            as Ultralytics does for Roboflow exports (``train: ../train/images``).
        strict: raise on the first problem instead of collecting it.

    Returns:
        A :class:`DetectionSet` with ``file_name`` relative to the root and the split of
        each image. Malformed label lines are reported and skipped (the rest of the file
        is kept); missing and unreadable images are reported and left out.

    Raises:
        AnnotationError: an unreadable or invalid ``data.yaml``; with ``strict`` any problem.
    """
    yaml_path = _find_yaml(Path(source))
    config = _load_yaml(yaml_path)
    names = _class_names(config, yaml_path)
    root = _root(config.get("path"), yaml_path.parent)
    problems: list[Problem] = []
    images: list[ImageAnnotation] = []
    seen: dict[Path, str] = {}
    for split in _SPLITS:
        for image in _split_images(config.get(split), root, split, yaml_path, problems,
                                   strict=strict):
            key = image.resolve()
            if key in seen:
                record(problems, Problem(_rel(image, root), "duplicate", f"listed in both "
                                        f"{seen[key]} and {split}; kept in {seen[key]}"),
                      strict=strict)
                continue
            seen[key] = split
            ann = _read_image(image, root, names, split, problems, strict=strict)
            if ann is not None:
                images.append(ann)
    used = {label_path(image).resolve() for image in seen}
    for folder in sorted({label.parent for label in used}):  # label files nobody's image owns
        for label in sorted(folder.glob("*.txt")):
            if label.resolve() not in used:
                record(problems, Problem(_rel(label, root), "missing_image",
                                        "label file without an image of the same name"),
                      strict=strict)
    return DetectionSet(images=images, classes=names, image_root=str(root), problems=problems,
                        format="yolo")


def label_path(image: str | Path) -> Path:
    """The label file of an image by the Ultralytics rule (``/images/`` -> ``/labels/``)."""
    text = Path(image).as_posix()
    head, sep, tail = text.rpartition("/images/")
    if sep:
        text = f"{head}/labels/{tail}"
    return Path(text).with_suffix(".txt")


def parse_yolo_line(line: str, *, n_classes: int, width: int, height: int) -> tuple[int, Instance]:
    """``(class id, instance)`` of one label line in pixel coordinates.

    Raises:
        ValueError: wrong field count, non-numbers, class id out of range, negative
            sizes, or values outside ``[0, 1]`` by more than :data:`YOLO_TOLERANCE`.
    """
    fields = line.split()
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        raise ValueError(f"expected 5 values (class cx cy w h) or a class and at least 3 "
                         f"x y pairs, got {len(fields)} values")
    try:
        cls_value, *values = (float(f) for f in fields)
    except ValueError:
        raise ValueError(f"non-numeric value in {line.strip()!r}") from None
    if not math.isfinite(cls_value) or cls_value != int(cls_value) \
            or not 0 <= cls_value < n_classes:
        raise ValueError(f"class id {fields[0]} is not one of 0..{n_classes - 1}")
    if any(not -YOLO_TOLERANCE <= v <= 1 + YOLO_TOLERANCE for v in values):
        raise ValueError("coordinates must be normalised to [0, 1]; got "
                         + " ".join(fields[1:]))
    if len(values) == 4:
        cx, cy, w, h = values
        if w < 0 or h < 0:
            raise ValueError(f"negative box width or height in {line.strip()!r}")
        box = ((cx - w / 2) * width, (cy - h / 2) * height,
               (cx + w / 2) * width, (cy + h / 2) * height)
        return int(cls_value), Instance(label="", box=box)
    points = tuple((values[i] * width, values[i + 1] * height) for i in range(0, len(values), 2))
    return int(cls_value), Instance(label="", box=box_from_polygon(points), polygons=(points,))


def write_yolo(images: Sequence[ImageAnnotation], classes: Sequence[str], out_dir: str | Path,
               *, image_root: str | Path, link: Literal["copy", "symlink", "none"] = "copy",
               overwrite: bool = False) -> Path:
    """Write ``out_dir/images/<split>/``, ``out_dir/labels/<split>/*.txt`` and ``data.yaml``.

    Images without a split go to ``train``. Boxes are clipped to the image (Ultralytics
    drops a whole label file with a value above 1). An instance with polygons is written
    as its largest polygon; in a file mixing polygons and boxes the boxes are written as
    rectangles, because Ultralytics reads every line as a polygon once one is.
    ``data.yaml`` has no ``path`` key, so Ultralytics resolves the folders next to it.

    Images that do not exist under ``image_root`` are left out (with ``link`` ``copy`` or
    ``symlink``): YOLO pairs every label file with its image. Nothing is written until
    every target has been checked.

    Args:
        images: annotations; ``file_name`` is relative to ``image_root``.
        classes: class names; the index is the YOLO class id.
        out_dir: output folder.
        image_root: where the images are read from.
        link: ``copy`` the images, ``symlink`` them, or ``none`` (labels and YAML only;
            the caller places the images under ``images/<split>/``).
        overwrite: allow replacing existing files.

    Returns:
        The written ``data.yaml``.

    Raises:
        UnknownLabelError: a label is not in ``classes``.
        HemascopeError: an output exists (without ``overwrite``) or is an input.
    """
    if link not in ("copy", "symlink", "none"):
        raise ValueError(f"link must be 'copy', 'symlink' or 'none', got {link!r}")
    out, src_root = Path(out_dir), Path(image_root)
    class_id = {name: i for i, name in enumerate(classes)}
    plan = []  # (source image, target image, label path, label text)
    used: set[str] = set()
    for im, name in zip(images, _target_names(images)):
        split = im.split or "train"
        src = src_root / im.file_name
        if link != "none" and not src.is_file():
            continue  # a missing image (the reader reported it): no label without its image
        used.add(split)
        width, height = (im.width, im.height) if im.width and im.height else _size(src)
        text = "".join(f"{line}\n" for line in _label_lines(im, class_id, width, height))
        target = out / "images" / split / name
        plan.append((src, target, label_path(target), text))
    used = used or {"train"}
    splits = [s for s in _SPLITS if s in used] + sorted(used - set(_SPLITS))
    yaml_path = out / "data.yaml"
    _check_targets([yaml_path, *(p[2] for p in plan),
                    *(p[1] for p in plan if link != "none")], {p[0] for p in plan},
                   overwrite=overwrite)
    for src, target, label, text in plan:
        if link != "none":
            _place_image(src, target, link=link)
        write_text(label, text)
    write_text(yaml_path, _data_yaml(classes, splits))
    return yaml_path


def _find_yaml(source: Path) -> Path:
    if source.is_dir():
        found = next((source / n for n in YAML_NAMES if (source / n).is_file()), None)
        if found is None:
            raise AnnotationError(source, "folder has no data.yaml (nor data.yml, dataset.yaml)")
        return found
    if not source.is_file():
        raise AnnotationError(source, "file does not exist")
    return source


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AnnotationError(path, f"cannot read file ({e.strerror or e})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise AnnotationError(path, f"malformed YAML ({e})") from None
    if not isinstance(config, dict):
        raise AnnotationError(path, "not a YOLO data.yaml: expected a mapping with 'names' "
                                    "and 'train'/'val'/'test'")
    if "kpt_shape" in config:
        raise AnnotationError(path, "keypoint (pose) data sets are not supported")
    if not any(config.get(s) for s in _SPLITS):
        raise AnnotationError(path, "data.yaml names no 'train', 'val' or 'test' images")
    return config


def _class_names(config: dict[str, Any], path: Path) -> list[str]:
    names, nc = config.get("names"), config.get("nc")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise AnnotationError(path, f"'names' keys must be 0..{len(names) - 1}, got "
                                        f"{sorted(names, key=str)}")
        names = [names[i] for i in range(len(names))]
    elif names is None and isinstance(nc, int):
        names = [f"class{i}" for i in range(nc)]  # Ultralytics' own fallback
    if not isinstance(names, list) or not names:
        raise AnnotationError(path, "'names' must be a non-empty list or {id: name} mapping")
    if nc is not None and nc != len(names):
        raise AnnotationError(path, f"'nc' is {nc} but 'names' has {len(names)} entries")
    return [str(n) for n in names]


def _split_images(entry: Any, root: Path, split: str, yaml_path: Path,
                  problems: list[Problem], *, strict: bool) -> list[Path]:
    out: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry] if entry else []:
        p = _locate(str(item), root)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
        elif p.is_file() and p.suffix.lower() == ".txt":
            out += _image_list(p, root, problems, strict=strict)
        elif p.is_file() and is_image_file(p):
            out.append(p)
        else:
            record(problems, Problem(yaml_path.name, "missing_image", f"{split} entry "
                                    f"{item!r} is not a folder, image or .txt list"),
                  strict=strict)
    return out


def _root(path: Any, yaml_dir: Path) -> Path:
    """The data set root: ``path`` relative to the YAML's folder, or that folder itself when
    ``path`` is absent or names a place that does not exist here (an export's
    ``/content/datasets/...`` or a training machine's ``../datasets/...``)."""
    if not path:
        return yaml_dir
    root = yaml_dir / str(path)
    return root if root.is_dir() else yaml_dir


def _locate(item: str, root: Path) -> Path:
    """Where a split entry lies: ``root / item`` when it exists, else the longest tail of
    its path (at least its last two parts) that exists under ``root``. This finds
    Roboflow exports' ``../train/images`` (Ultralytics resolves them the same way) and
    entries written as absolute paths on the machine that made the data set."""
    p = root / item
    if p.exists():
        return p
    parts = [s for s in PurePosixPath(item.replace("\\", "/")).parts
             if s not in ("/", "..", ".") and not s.endswith(":")]
    for start in range(max(len(parts) - 1, 1)):
        candidate = root.joinpath(*parts[start:])
        if candidate.exists():
            return candidate
    return p


def _image_list(list_file: Path, root: Path, problems: list[Problem], *,
                strict: bool) -> list[Path]:
    out = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        image = list_file.parent / line.strip()
        if not image.is_file():
            image = _locate(line.strip(), root)
        if image.is_file():
            out.append(image)
        else:
            record(problems, Problem(_rel(list_file, root), "missing_image",
                                    f"listed image {line.strip()} does not exist"), strict=strict)
    return out


def _read_image(image: Path, root: Path, names: list[str], split: str,
                problems: list[Problem], *, strict: bool) -> ImageAnnotation | None:
    try:
        header = read_header(image)
    except ImageReadError as e:
        record(problems, Problem(_rel(image, root), "unreadable_image", e.reason), strict=strict)
        return None
    labels = label_path(image)
    where = _rel(labels, root)
    instances = []
    lines = _read_lines(labels, where, problems, strict=strict)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cls, inst = parse_yolo_line(line, n_classes=len(names), width=header.width,
                                        height=header.height)
        except ValueError as e:
            record(problems, Problem(where, "malformed_annotation", f"line {number}: {e}"),
                  strict=strict)
            continue
        inst = inst.with_label(names[cls])
        for p in check_instance(inst, width=header.width, height=header.height, path=where):
            record(problems, p, strict=strict)
        instances.append(inst)
    return ImageAnnotation(_rel(image, root), header.width, header.height, tuple(instances),
                           split=split)


def _read_lines(labels: Path, where: str, problems: list[Problem], *,
                strict: bool) -> list[str]:
    if not labels.is_file():
        return []
    try:
        return labels.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        record(problems, Problem(where, "malformed_annotation", f"cannot read label file ({e})"),
              strict=strict)
        return []


def _label_lines(im: ImageAnnotation, class_id: dict[str, int], width: int,
                 height: int) -> list[str]:
    if width <= 0 or height <= 0:
        raise HemascopeError(f"{im.file_name}: image size unknown, cannot normalise")
    any_polygon = any(inst.polygons for inst in im.instances)
    lines = []
    for inst in im.instances:
        if inst.label not in class_id:
            raise UnknownLabelError(inst.label, "classes", tuple(class_id))
        cls = class_id[inst.label]
        if inst.polygons or any_polygon:
            points = (max(inst.polygons, key=_polygon_area) if inst.polygons
                      else _rectangle(clip_box(inst.box, width=width, height=height)))
            values = [v for x, y in points for v in (_unit(x / width), _unit(y / height))]
        else:
            x0, y0, x1, y1 = clip_box(inst.box, width=width, height=height)
            values = [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                      (x1 - x0) / width, (y1 - y0) / height]
        lines.append(" ".join([str(cls), *(_fmt(v) for v in values)]))
    return lines


def _target_names(images: Sequence[ImageAnnotation]) -> list[str]:
    """Base names, made unique within a split by flattening the path when they clash."""
    counts = Counter((im.split or "train", PurePosixPath(im.file_name).name) for im in images)
    return [PurePosixPath(im.file_name).name
            if counts[(im.split or "train", PurePosixPath(im.file_name).name)] == 1
            else "__".join(PurePosixPath(im.file_name).parts) for im in images]


def _check_targets(targets: Sequence[Path], inputs: set[Path], *, overwrite: bool) -> None:
    sources = {p.resolve() for p in inputs}
    for t in targets:
        # resolve the folder only: an existing symlink output must not count as its source
        if t.parent.resolve() / t.name in sources:
            raise HemascopeError(f"refusing to overwrite input file {t}")
    refuse_existing(targets, overwrite=overwrite)


def _place_image(src: Path, target: Path, *, link: str) -> None:
    if not src.is_file():
        raise HemascopeError(f"image {src} does not exist")
    if link == "copy":
        with open(src, "rb") as fin, atomic_write(target, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        return
    # link through a temporary name so an existing target is replaced in one step
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.link")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(src.resolve(), tmp)
    os.replace(tmp, target)


def _data_yaml(classes: Sequence[str], splits: Sequence[str]) -> str:
    import yaml

    config: dict[str, Any] = {s: f"images/{s}" for s in splits}
    config["nc"] = len(classes)
    config["names"] = {i: name for i, name in enumerate(classes)}
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _size(image: Path) -> tuple[int, int]:
    header = read_header(image)
    return header.width, header.height


def _rectangle(box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
    x0, y0, x1, y1 = box
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _polygon_area(poly: Sequence[tuple[float, float]]) -> float:
    n = len(poly)
    return abs(sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]
                   for i in range(n))) / 2.0


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def _fmt(v: float) -> str:
    # fixed notation (no exponents) with enough digits for sub-micro-pixel round trips
    return f"{v:.10f}".rstrip("0").rstrip(".") or "0"



def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()
