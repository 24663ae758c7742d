"""Turning raw labels into samples: one place that applies the taxonomy to a data set."""

from __future__ import annotations

from hemascope import taxonomy
from hemascope.errors import DatasetError, UnknownLabelError, UnmappableLabelError
from hemascope.problems import Problem


class LabelMapper:
    """Resolve raw labels to concepts (optionally into a vocabulary), tallying failures.

    Unknown labels become ``unknown_label`` problems; labels the vocabulary has no class for
    are counted in :attr:`unmapped` (deliberately left out, not an error).
    """

    def __init__(self, vocabulary: str | None = None):
        self.vocabulary = None if vocabulary is None else taxonomy.vocabulary(vocabulary).name
        self.unmapped: dict[str, int] = {}
        self.problems: list[Problem] = []

    def __call__(self, raw: str, *, path: str, n: int = 1) -> str | None:
        """Concept for ``raw`` or ``None`` (recorded as problem or as unmapped).

        ``n`` is how many images carry this label at ``path`` (a whole class folder).
        """
        try:
            if self.vocabulary is None:
                return taxonomy.resolve(raw)
            return taxonomy.to_vocabulary(raw, self.vocabulary)
        except UnmappableLabelError:
            key = taxonomy.resolve(raw)
            self.unmapped[key] = self.unmapped.get(key, 0) + n
            return None
        except UnknownLabelError as e:
            vocab = self.vocabulary or "taxonomy"
            msg = str(e) if e.vocabulary == vocab else f"unknown label {raw!r} for vocabulary {vocab!r}"
            if n > 1:
                msg += f"; {n} images left out"
            self.problems.append(Problem(path, "unknown_label", msg))
            return None

    def classes(self, seen: set[str]) -> list[str]:
        """Vocabulary order when mapping into one, else the sorted concepts seen."""
        if self.vocabulary is not None:
            return list(taxonomy.vocabulary(self.vocabulary).classes)
        return sorted(seen)


def refuse_unknown_labels(ds) -> None:
    """Raise a :class:`DatasetError` naming the labels of ``ds`` the taxonomy does not know
    (a typo or a lab's own name must not silently drop a class)."""
    unknown = [p for p in ds.problems if p.kind == "unknown_label"]
    if unknown:
        where = "; ".join(f"{p.path}: {p.message}" for p in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DatasetError(f"labels of {ds.root} unknown to the taxonomy: {where}{more} "
                           "(rename a folder that holds one cell type to a known class name, and move a folder "
                           "of mixed or unlabelled cells out of the data folder; `hemascope data info` "
                           "lists all names)")
