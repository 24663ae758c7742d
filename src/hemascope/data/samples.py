"""The single-cell data model: a labelled image and a set of them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from hemascope.problems import Problem


def split_order(name: str) -> tuple[int, str]:
    """Sort key putting train, val, test first (then anything else alphabetically)."""
    order = {"train": 0, "val": 1, "test": 2}
    return (order.get(name, 3), name)


@dataclass(frozen=True)
class Sample:
    """One labelled single-cell image.

    Attributes:
        path: image path relative to the set's ``root`` (forward slashes); also its key in
            split files.
        label: class as a taxonomy concept, mapped into the set's vocabulary if one was given.
        source_label: the label exactly as the source wrote it (folder name, CSV value).
        subclass: finer concept when the source encodes one (PBC ``BNE_`` file names...).
        attributes: WBCAtt-style morphology attributes, if the source has them.
        mask: path of a part mask relative to ``root``, if any.
        split: ``train`` / ``val`` / ``test`` / ... when the source or a split file says so.
    """

    path: str
    label: str
    source_label: str
    subclass: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    mask: str | None = None
    split: str | None = None

    def __hash__(self) -> int:
        return hash((self.path, self.label))


@dataclass
class ClassificationSet:
    """Labelled single-cell images read from a folder tree or a label table.

    Attributes:
        root: folder the sample paths are relative to.
        samples: usable samples, sorted by path.
        classes: class names present (sorted), or the vocabulary's classes when one was given.
        problems: what was wrong (unknown labels, malformed rows...); those files are left out.
        unmapped: counts of known labels that the requested vocabulary has no class for
            (left out on purpose, e.g. platelets when asking for ``wbc5``).
        ignored: files that are not images (README, CSVs...) found while scanning.
        vocabulary: name of the vocabulary labels were mapped to, or ``None``.
        format: source layout (``folder``, ``cellavision``, ``wbcatt``, ``csv``).
    """

    root: Path
    samples: list[Sample]
    classes: list[str]
    problems: list[Problem] = field(default_factory=list)
    unmapped: dict[str, int] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    vocabulary: str | None = None
    format: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.samples)
        return {c: counts.get(c, 0) for c in self.classes}

    def subclass_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.subclass for s in self.samples if s.subclass).items()))

    def split_counts(self) -> dict[str, int]:
        counts = Counter(s.split or "none" for s in self.samples)
        return {k: counts[k] for k in sorted(counts, key=split_order)}

    def paths(self) -> list[Path]:
        return [self.root / s.path for s in self.samples]

    def labels(self) -> list[str]:
        return [s.label for s in self.samples]

    def subset(self, *, split: str | None = None, paths: set[str] | None = None) -> "ClassificationSet":
        """Samples of one split and/or with keys in ``paths`` (other fields shared)."""
        keep = [s for s in self.samples
                if (split is None or s.split == split) and (paths is None or s.path in paths)]
        return replace(self, samples=keep)

    def with_splits(self, assignments: Mapping[str, str]) -> "ClassificationSet":
        """Copy with ``Sample.split`` set from ``{path: split}`` (missing keys -> ``None``)."""
        return replace(self, samples=[replace(s, split=assignments.get(s.path)) for s in self.samples])
