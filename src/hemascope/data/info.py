"""What is in a data set: counts, sizes and every problem found, without stopping.

:func:`inspect_dataset` is what ``hemascope data info`` prints. It reads the layout with
:func:`hemascope.data.load_dataset`, maps labels through the taxonomy, and opens every
image (header only, or a full decode to catch truncated files).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from hemascope import taxonomy
from hemascope.data.formats import detect_format, load_dataset
from hemascope.data.samples import ClassificationSet, split_order
from hemascope.errors import HemascopeError, ImageReadError
from hemascope.io.annotations import DetectionSet
from hemascope.io.image import ImageHeader, read_header, verify_image
from hemascope.problems import Problem

CHECKS = ("decode", "header", "none")


@dataclass
class DatasetInfo:
    """Summary of one data set (all counts are of images/boxes actually found)."""

    path: str
    format: str
    task: str  # "classification" | "detection" | "image"
    n_images: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    subclass_counts: dict[str, int] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)
    n_boxes: int = 0
    box_counts: dict[str, int] = field(default_factory=dict)
    n_masks: int = 0
    attribute_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    image_modes: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)
    n_ignored_files: int = 0
    checked: str = "decode"
    problems: list[Problem] = field(default_factory=list)

    def problem_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def to_dict(self) -> dict:
        return {
            "path": self.path, "format": self.format, "task": self.task,
            "n_images": self.n_images, "class_counts": self.class_counts,
            "subclass_counts": self.subclass_counts, "split_counts": self.split_counts,
            "n_boxes": self.n_boxes, "box_counts": self.box_counts, "n_masks": self.n_masks,
            "attribute_counts": self.attribute_counts, "image_sizes": self.image_sizes,
            "image_modes": self.image_modes, "unmapped": self.unmapped,
            "n_ignored_files": self.n_ignored_files, "checked": self.checked,
            "problem_counts": self.problem_counts(),
            "problems": [p.to_dict() for p in self.problems],
        }


def inspect_dataset(path: str | Path, *, format: str = "auto", check: str = "decode",
                    vocabulary: str | None = None, image_root: str | Path | None = None,
                    progress: Callable[[Iterable], Iterable] | None = None) -> DatasetInfo:
    """Read the data set at ``path`` and report counts and problems.

    Args:
        path: folder, annotation file or single image.
        format: layout name or ``auto``.
        check: ``decode`` (open every image fully), ``header`` (sizes only) or ``none``.
        vocabulary: map single-cell labels into this vocabulary.
        image_root: image folder when the annotation file does not say.
        progress: wraps the image iterator (e.g. ``tqdm``); identity when ``None``.

    Raises:
        HemascopeError: the layout itself cannot be read (missing path, not COCO...).
    """
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}")
    p = Path(path)
    fmt = detect_format(p) if format == "auto" else format
    wrap = progress or (lambda it: it)
    if fmt == "image":
        info = DatasetInfo(path=str(p), format="image", task="image", n_images=1, checked=check)
        _scan(info, [(str(p), p)], check, wrap)
        return info
    ds = load_dataset(p, format=fmt, vocabulary=vocabulary, image_root=image_root)
    if isinstance(ds, ClassificationSet):
        info = _classification_info(ds, str(p), check)
        _scan(info, [(s.path, ds.root / s.path) for s in ds.samples], check, wrap)
    else:
        info = _detection_info(ds, str(p), check)
        root = Path(ds.image_root)
        present = [(im.file_name, root / im.file_name, im) for im in ds.images
                   if (root / im.file_name).is_file()]
        reported = {q.path for q in info.problems if q.kind == "missing_image"}
        for im in ds.images:
            if not (root / im.file_name).is_file() and im.file_name not in reported:
                info.problems.append(Problem(im.file_name, "missing_image",
                                             f"annotated image not found under {root}"))
        headers = _scan(info, [(k, f) for k, f, _ in present], check, wrap)
        for key, _, im in present:
            h = headers.get(key)
            if h is not None and im.width and im.height and (h.width, h.height) != (im.width, im.height):
                info.problems.append(Problem(key, "size_mismatch",
                                             f"annotation says {im.width}x{im.height}, image is "
                                             f"{h.width}x{h.height}"))
    return info


def _classification_info(ds: ClassificationSet, path: str, check: str) -> DatasetInfo:
    attrs: dict[str, Counter] = {}
    for s in ds.samples:
        for k, v in s.attributes.items():
            attrs.setdefault(k, Counter())[v] += 1
    return DatasetInfo(
        path=path, format=ds.format, task="classification", n_images=len(ds.samples),
        class_counts=ds.class_counts(), subclass_counts=ds.subclass_counts(),
        split_counts=ds.split_counts() if any(s.split for s in ds.samples) else {},
        n_masks=sum(s.mask is not None for s in ds.samples),
        attribute_counts={k: dict(sorted(v.items())) for k, v in attrs.items()},
        unmapped=dict(ds.unmapped), n_ignored_files=len(ds.ignored), checked=check,
        problems=list(ds.problems))


def _detection_info(ds: DetectionSet, path: str, check: str) -> DatasetInfo:
    problems = list(ds.problems)
    unknown: Counter = Counter()
    for im in ds.images:
        for inst in im.instances:
            if not taxonomy.is_known(inst.label):
                unknown[inst.label] += 1
    for label, n in sorted(unknown.items()):
        problems.append(Problem(path, "unknown_label", f"unknown label {label!r} for vocabulary "
                                f"'taxonomy' on {n} box(es)"))
    splits = Counter(im.split or "none" for im in ds.images)
    return DatasetInfo(
        path=path, format=ds.format, task="detection", n_images=len(ds.images),
        split_counts=({k: splits[k] for k in sorted(splits, key=split_order)}
                      if set(splits) != {"none"} else {}),
        n_boxes=sum(len(im.instances) for im in ds.images),
        box_counts=dict(sorted(ds.box_counts().items())), checked=check, problems=problems)


def _scan(info: DatasetInfo, items: list[tuple[str, Path]], check: str, wrap) -> dict[str, ImageHeader]:
    headers: dict[str, ImageHeader] = {}
    if check == "none":
        return headers
    opener = verify_image if check == "decode" else read_header
    sizes: Counter = Counter()
    modes: Counter = Counter()
    for key, f in wrap(items):
        try:
            h = opener(f)
        except ImageReadError as e:
            info.problems.append(Problem(key, "unreadable_image", e.reason))
            continue
        except HemascopeError as e:  # pragma: no cover - defensive
            info.problems.append(Problem(key, "unreadable_image", str(e)))
            continue
        headers[key] = h
        sizes[f"{h.width}x{h.height}"] += 1
        modes[h.mode] += 1
    info.image_sizes = dict(sizes.most_common())
    info.image_modes = dict(modes.most_common())
    return headers


def render_text(info: DatasetInfo, *, max_problems: int = 20) -> str:
    """Plain-text report for a person (what ``hemascope data info`` prints)."""
    lines = [f"{info.path}", f"  format: {info.format} ({info.task})",
             f"  images: {info.n_images:,}"]
    if info.split_counts:
        lines.append("  splits: " + ", ".join(f"{k} {v:,}" for k, v in info.split_counts.items()))
    if info.class_counts:
        lines.append(f"  classes ({len(info.class_counts)}):")
        lines += [f"    {k:<24} {v:>7,}" for k, v in info.class_counts.items()]
    if info.subclass_counts:
        lines.append("  sub-classes (from file names):")
        lines += [f"    {k:<24} {v:>7,}" for k, v in info.subclass_counts.items()]
    if info.task == "detection":
        lines.append(f"  boxes: {info.n_boxes:,}")
        lines += [f"    {k:<24} {v:>7,}" for k, v in info.box_counts.items()]
    if info.n_masks:
        lines.append(f"  masks: {info.n_masks:,}")
    if info.attribute_counts:
        lines.append(f"  attributes ({len(info.attribute_counts)}):")
        lines += [f"    {k:<26} " + ", ".join(f"{v} {n:,}" for v, n in c.items())
                  for k, c in info.attribute_counts.items()]
    if info.unmapped:
        lines.append("  left out (no class in the vocabulary): "
                     + ", ".join(f"{k} {v:,}" for k, v in info.unmapped.items()))
    if info.image_sizes:
        top = list(info.image_sizes.items())
        shown = ", ".join(f"{k} ({v:,})" for k, v in top[:5])
        more = f" and {len(top) - 5} more" if len(top) > 5 else ""
        lines.append(f"  image sizes: {shown}{more}")
        lines.append("  image modes: " + ", ".join(f"{k} ({v:,})" for k, v in info.image_modes.items()))
    elif info.checked == "none":
        lines.append("  images not opened (--check none)")
    if info.n_ignored_files:
        lines.append(f"  non-image files ignored: {info.n_ignored_files:,}")
    if info.problems:
        lines.append(f"  problems: {len(info.problems):,} ("
                     + ", ".join(f"{k} {v:,}" for k, v in info.problem_counts().items()) + ")")
        for prob in info.problems[:max_problems]:
            lines.append(f"    [{prob.kind}] {prob.path}: {prob.message}")
        if len(info.problems) > max_problems:
            lines.append(f"    ... {len(info.problems) - max_problems:,} more (use --json for all)")
    else:
        lines.append("  problems: none")
    return "\n".join(lines)
