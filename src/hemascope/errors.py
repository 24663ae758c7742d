"""One exception hierarchy for everything hemascope refuses to do.

Every error a user can trigger with bad input derives from :class:`HemascopeError`, so the
CLI can print one clear line and exit non-zero instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class HemascopeError(Exception):
    """Base class of all errors raised on purpose by hemascope."""


class ImageReadError(HemascopeError):
    """An image file could not be read (missing, empty, truncated, corrupt, too large...).

    Attributes:
        path: the offending file.
        reason: short human-readable cause.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class AnnotationError(HemascopeError):
    """An annotation file (XML, JSON, CSV, TXT, YAML) is malformed or inconsistent."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{reason}")


class UnknownLabelError(HemascopeError, KeyError):
    """A class label is not known to a vocabulary (or to the taxonomy at all)."""

    def __init__(self, label: str, vocabulary: str, known: tuple[str, ...] = ()):
        self.label = label
        self.vocabulary = vocabulary
        self.known = known
        hint = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"unknown label {label!r} for vocabulary {vocabulary!r}{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class UnmappableLabelError(UnknownLabelError):
    """A known label has no counterpart in the target vocabulary (e.g. platelet -> wbc5)."""

    def __init__(self, label: str, vocabulary: str, known: tuple[str, ...] = ()):
        super().__init__(label, vocabulary, known)
        hint = f" (classes: {', '.join(known)})" if known else ""
        self.args = (f"label {label!r} has no class in vocabulary {vocabulary!r}{hint}",)


class DatasetError(HemascopeError):
    """A data set folder or file is missing, empty or of an unrecognised layout."""


class SplitError(HemascopeError):
    """A split cannot be made or does not match the data it is applied to."""
