"""The in-memory annotation model shared by every detection / instance format.

Coordinate convention (the only one used inside hemascope)
----------------------------------------------------------
Pixel ``(col, row)`` covers the square ``[col, col + 1) x [row, row + 1)``; the image spans
``0 <= x <= width`` and ``0 <= y <= height`` with ``y`` pointing down. Boxes are
``(x0, y0, x1, y1)`` floats in these continuous coordinates (torchvision's ``xyxy``), so a
box covering pixels 10..19 is ``(10, *, 20, *)``. Polygons are sequences of ``(x, y)``
vertices in the same space. Each file format converts once, at its reader and writer:

========  ==========================================================================
format    stored as
========  ==========================================================================
COCO      ``bbox = [x0, y0, w, h]``, polygons as flat ``[x, y, x, y, ...]`` (same space)
VOC       integer ``xmin ymin xmax ymax``, 1-based inclusive pixel indices:
          ``x0 = xmin - 1``, ``x1 = xmax`` (as written by labelImg, used by BCCD/CBC)
YOLO      ``class cx cy w h`` normalised by width/height; segments ``class x y x y ...``
CVAT 1.1  ``xtl ytl xbr ybr`` and ``points="x,y;x,y"`` (same space)
GeoJSON   QuPath pixel coordinates (same space), closed rings
========  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from hemascope.problems import Problem

Box = tuple[float, float, float, float]
Polygon = tuple[tuple[float, float], ...]

#: Boxes narrower or lower than this (in pixels) are reported as degenerate.
MIN_BOX_SIDE = 2.0
#: Slack (pixels) before a box counts as outside the image (rounding in other tools).
OUTSIDE_TOLERANCE = 1.0


@dataclass(frozen=True)
class Instance:
    """One annotated or predicted object.

    Attributes:
        label: class name as written in the source (map it with :mod:`hemascope.taxonomy`).
        box: ``(x0, y0, x1, y1)`` in the continuous pixel space described above.
        polygons: zero or more outer rings; several when an object is split in parts.
        rle: COCO run-length encoding ``{"size": [h, w], "counts": ...}`` if the mask came so.
        score: confidence for predictions, ``None`` for ground truth.
        attributes: free-form attributes (CVAT attributes, ``difficult``, ``truncated``...).
    """

    label: str
    box: Box
    polygons: tuple[Polygon, ...] = ()
    rle: Mapping[str, Any] | None = None
    score: float | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def with_label(self, label: str) -> "Instance":
        return replace(self, label=label)

    def __hash__(self) -> int:  # attributes / rle are dicts; identity of the box is enough
        return hash((self.label, self.box, self.polygons, self.score))


@dataclass(frozen=True)
class ImageAnnotation:
    """All instances of one image.

    Attributes:
        file_name: image path relative to the data set's image root (forward slashes).
        width, height: image size in pixels (``0`` when unknown).
        instances: the objects on the image.
        split: ``train`` / ``val`` / ``test`` / ``None`` when the source says so.
    """

    file_name: str
    width: int
    height: int
    instances: tuple[Instance, ...] = ()
    split: str | None = None

    def labels(self) -> list[str]:
        return [inst.label for inst in self.instances]


def box_from_polygon(points: Iterable[tuple[float, float]]) -> Box:
    """Tight box of a polygon's vertices."""
    pts = list(points)
    if not pts:
        raise ValueError("empty polygon")
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    return (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))


def check_instance(inst: Instance, *, width: int, height: int, path: str) -> list[Problem]:
    """Geometry problems of one instance: degenerate or outside-the-image boxes.

    Returns an empty list for a healthy instance; never raises.
    """
    out: list[Problem] = []
    x0, y0, x1, y1 = inst.box
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        out.append(
            Problem(path, "degenerate_box", f"{inst.label} box {_fmt_box(inst.box)} is smaller than "
                    f"{MIN_BOX_SIDE:g} px on a side")
        )
    if width > 0 and height > 0:
        tol = OUTSIDE_TOLERANCE
        if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
            out.append(
                Problem(path, "box_outside_image", f"{inst.label} box {_fmt_box(inst.box)} lies "
                        f"outside the {width}x{height} image")
            )
    return out


def clip_box(box: Box, *, width: int, height: int) -> Box:
    """Clip a box to the image; may return a degenerate box."""
    x0, y0, x1, y1 = box
    return (
        min(max(x0, 0.0), float(width)),
        min(max(y0, 0.0), float(height)),
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
    )


def _fmt_box(box: Box) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


@dataclass
class DetectionSet:
    """A detection / instance-segmentation data set as read from any format.

    Attributes:
        images: per-image annotations, in a stable order.
        classes: class names in the source's order (COCO categories, YOLO names...).
        image_root: folder that ``ImageAnnotation.file_name`` is relative to.
        problems: everything found wrong while reading (the set holds what was usable).
        format: the source format name.
    """

    images: list[ImageAnnotation]
    classes: list[str]
    image_root: str
    problems: list[Problem] = field(default_factory=list)
    format: str = ""

    def splits(self) -> dict[str, list[ImageAnnotation]]:
        out: dict[str, list[ImageAnnotation]] = {}
        for im in self.images:
            out.setdefault(im.split or "all", []).append(im)
        return out

    def subset(self, split: str) -> "DetectionSet":
        return DetectionSet(
            images=[im for im in self.images if im.split == split],
            classes=list(self.classes),
            image_root=self.image_root,
            problems=list(self.problems),
            format=self.format,
        )

    def box_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for im in self.images:
            for inst in im.instances:
                counts[inst.label] = counts.get(inst.label, 0) + 1
        return counts
