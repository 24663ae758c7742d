"""Problems found while scanning data: reported, never fatal in a scan.

Readers of whole data sets collect :class:`Problem` records instead of stopping at the
first bad file; a ``strict=True`` reader raises the first one instead.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kinds a reader may report; kept as plain strings so JSON output stays readable.
PROBLEM_KINDS = (
    "unreadable_image",  # file exists but cannot be decoded
    "missing_image",  # annotation refers to an image that is not there
    "unannotated_image",  # image without an annotation where one is expected
    "malformed_annotation",  # XML/JSON/CSV/TXT that cannot be parsed or lacks fields
    "unknown_label",  # class name not in the vocabulary / taxonomy
    "unknown_attribute_value",  # WBCAtt value outside the allowed set
    "box_outside_image",  # box extends past the image borders
    "degenerate_box",  # zero or near-zero width or height
    "size_mismatch",  # size written in the annotation differs from the image
    "duplicate",  # the same image listed twice
    "empty_class",  # a class folder without any image
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file.

    Attributes:
        path: file the problem is about (as given, usually relative to the data root).
        kind: one of :data:`PROBLEM_KINDS`.
        message: one clear sentence for a person.
    """

    path: str
    kind: str
    message: str

    def __post_init__(self) -> None:
        if self.kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}")

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "message": self.message}


def record(problems: list[Problem], problem: Problem, *, strict: bool) -> None:
    """Collect ``problem``, or raise it as an :class:`AnnotationError` when ``strict``.

    The one rule every reader follows: a scan reports and goes on; a strict read stops.
    """
    if strict:
        from hemascope.errors import AnnotationError

        raise AnnotationError(problem.path, problem.message)
    problems.append(problem)
