"""What `analyze` finds, as plain records, and the tables derived from them (pure functions).

One :class:`CellRecord` per detected object (white cells with their type, red cells and
platelets with the detector's class); one :class:`ImageResult` per input image, in the
smear study's JSON shape (file name, size, per cell: class, score, top-2, box, polygon).
:func:`differential` counts classes per image and overall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

#: The ``format`` of a per-image result file.
RESULT_FORMAT = "hemascope-analysis/1"
#: Detector classes that are not typed further.
OTHER_KINDS = ("RBC", "Platelets")


@dataclass(frozen=True)
class CellRecord:
    """One object on an image.

    Attributes:
        kind: the detector's class (``WBC``, ``RBC``, ``Platelets``) or ``WBC`` in cell mode.
        label: the final class: the classifier's for white cells, else ``kind``.
        score: detector confidence (1.0 in cell mode, where nothing is detected).
        probability: classifier probability of ``label`` (white cells only).
        top2: ``[[label, p], [second, p2]]`` from the classifier (white cells only).
        box: ``(x0, y0, x1, y1)`` in image pixels.
        polygon: outline ``[(x, y), ...]``: the part model's whole cell with ``--parts``, else
            the classical extraction's stained region, if found.
        review: flagged for a person to check (low classifier or detector confidence).
        refined: typed by the second-stage (refiner) classifier.
        attributes: morphology attributes ``{name: {"value", "probability"}}`` when an
            attribute model was given (white cells only).
        nucleus: outlines of the nucleus pieces (lobes) inside ``polygon``, when the part
            model outlined the cell (white cells only).
        nc_ratio: nucleus area / cell area from those outlines.
    """

    id: int
    kind: str
    label: str
    score: float
    box: tuple[float, float, float, float]
    probability: float | None = None
    top2: list[list[Any]] | None = None
    polygon: list[tuple[float, float]] | None = None
    review: bool = False
    refined: bool = False
    attributes: dict[str, dict[str, Any]] | None = None
    nucleus: list[list[tuple[float, float]]] | None = None
    nc_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        if self.polygon is not None:
            d["polygon"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.polygon]
        d["score"] = round(float(self.score), 4)
        if self.probability is not None:
            d["probability"] = round(float(self.probability), 4)
        if self.top2 is not None:
            d["top2"] = [[lab, round(float(p), 4)] for lab, p in self.top2]
        if self.attributes is None:
            d.pop("attributes")
        if self.nucleus is None:
            d.pop("nucleus")
        else:
            d["nucleus"] = [[[round(float(x), 2), round(float(y), 2)] for x, y in piece]
                            for piece in self.nucleus]
        if self.nc_ratio is None:
            d.pop("nc_ratio")
        else:
            d["nc_ratio"] = round(float(self.nc_ratio), 4)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CellRecord":
        return cls(id=int(d["id"]), kind=str(d["kind"]), label=str(d["label"]),
                   score=float(d["score"]), box=tuple(float(v) for v in d["box"]),
                   probability=None if d.get("probability") is None else float(d["probability"]),
                   top2=d.get("top2"),
                   polygon=None if d.get("polygon") is None else [tuple(p) for p in d["polygon"]],
                   review=bool(d.get("review", False)), refined=bool(d.get("refined", False)),
                   attributes=d.get("attributes"),
                   nucleus=None if d.get("nucleus") is None else
                   [[tuple(p) for p in piece] for piece in d["nucleus"]],
                   nc_ratio=None if d.get("nc_ratio") is None else float(d["nc_ratio"]))


@dataclass
class ImageResult:
    """Everything found on one image (the per-image JSON)."""

    file: str
    key: str
    width: int
    height: int
    mode: str
    cells: list[CellRecord] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: the input's absolute path when it was analysed (``--resume`` checks it)
    source: str = ""
    #: why the models may not read this image (:func:`hemascope.io.quality.image_warnings`)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {"format": RESULT_FORMAT, "file": self.file, "key": self.key,
             "width": self.width, "height": self.height, "mode": self.mode,
             "counts": counts(self.cells), "seconds": self.seconds,
             "warnings": list(self.warnings), "cells": [c.to_dict() for c in self.cells]}
        if self.source:
            d["source"] = self.source
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImageResult":
        if d.get("format") != RESULT_FORMAT:
            raise ValueError("not a hemascope analysis file")
        return cls(file=d["file"], key=d["key"], width=int(d["width"]), height=int(d["height"]),
                   mode=d["mode"], cells=[CellRecord.from_dict(c) for c in d["cells"]],
                   seconds=dict(d.get("seconds", {})), source=str(d.get("source", "")),
                   warnings=[str(w) for w in d.get("warnings", [])])


def counts(cells: Sequence[CellRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in cells:
        out[c.label] = out.get(c.label, 0) + 1
    return dict(sorted(out.items()))


def wbc_labels(results: Sequence[ImageResult]) -> list[str]:
    """The white-cell classes seen anywhere, sorted."""
    return sorted({c.label for r in results for c in r.cells if c.kind not in OTHER_KINDS})


CELL_COLUMNS = ("image", "cell_id", "kind", "class", "score", "probability", "second_class",
                "second_probability", "x0", "y0", "x1", "y1", "review", "nc_ratio")


def cell_rows(results: Sequence[ImageResult]) -> list[list[Any]]:
    """Rows of ``cells.csv`` (header: :data:`CELL_COLUMNS`)."""
    rows = []
    for r in results:
        for c in r.cells:
            second = c.top2[1] if c.top2 and len(c.top2) > 1 else ["", ""]
            rows.append([r.file, c.id, c.kind, c.label, f"{c.score:.4f}",
                         "" if c.probability is None else f"{c.probability:.4f}",
                         second[0], "" if second[1] == "" else f"{float(second[1]):.4f}",
                         *(f"{v:.1f}" for v in c.box), int(c.review),
                         "" if c.nc_ratio is None else f"{c.nc_ratio:.4f}"])
    return rows


def differential(results: Sequence[ImageResult]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of ``differential.csv``: per image and overall.

    Each white-cell class gets a count and a percentage of all white cells; ``WBC``,
    ``RBC`` and ``Platelets`` totals follow.
    """
    classes = wbc_labels(results)
    header = (["image"] + [f"{c}_count" for c in classes] + [f"{c}_percent" for c in classes]
              + ["WBC_total", "RBC_total", "Platelets_total"])
    rows = []

    def row(name: str, cells: Sequence[CellRecord]) -> list[Any]:
        n = counts(cells)
        wbc = sum(v for k, v in n.items() if k not in OTHER_KINDS)
        pct = [f"{100 * n.get(c, 0) / wbc:.1f}" if wbc else "" for c in classes]
        return ([name] + [n.get(c, 0) for c in classes] + pct
                + [wbc, n.get("RBC", 0), n.get("Platelets", 0)])

    for r in results:
        rows.append(row(r.file, r.cells))
    rows.append(row("ALL", [c for r in results for c in r.cells]))
    return header, rows
