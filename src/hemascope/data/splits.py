"""Deterministic stratified splits, k-fold assignments and few-shot samples, saved as files.

Everything is a pure function of ``(keys, labels, seed)``: keys are sorted first, so the
order in which a folder was listed never changes a split. A split is saved as JSON
(``hemascope-split/1``) so every benchmark and every model uses exactly the same images.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hemascope.errors import SplitError

SPLIT_FORMAT = "hemascope-split/1"


@dataclass(frozen=True)
class SplitFile:
    """A saved assignment of image keys to parts.

    Attributes:
        assignments: ``{key: part}``; part is ``train``/``val``/``test``, or ``fold0``..
            ``fold{k-1}`` for k-fold splits.
        method: ``stratified``, ``kfold`` or ``fewshot``.
        seed: the seed it was made with.
        params: the fractions / k / shots used.
        dataset: free text naming the data (path, vocabulary).
    """

    assignments: Mapping[str, str]
    method: str
    seed: int
    params: Mapping[str, object] = field(default_factory=dict)
    dataset: str = ""

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.assignments.values()).items()))

    def keys(self, part: str) -> list[str]:
        return sorted(k for k, v in self.assignments.items() if v == part)

    def to_dict(self) -> dict:
        return {"format": SPLIT_FORMAT, "method": self.method, "seed": self.seed,
                "params": dict(self.params), "dataset": self.dataset, "counts": self.counts(),
                "assignments": dict(sorted(self.assignments.items()))}


def _grouped(keys: Sequence[str], labels: Sequence[str]) -> dict[str, list[str]]:
    if len(keys) != len(labels):
        raise SplitError(f"{len(keys)} keys but {len(labels)} labels")
    if len(set(keys)) != len(keys):
        dup = next(k for k, n in Counter(keys).items() if n > 1)
        raise SplitError(f"duplicate key {dup!r}: every image must appear once")
    groups: dict[str, list[str]] = defaultdict(list)
    for k, lbl in sorted(zip(keys, labels)):
        groups[lbl].append(k)
    return dict(sorted(groups.items()))


def stratified_split(keys: Sequence[str], labels: Sequence[str], *, val: float = 0.1,
                     test: float = 0.2, seed: int = 0) -> dict[str, str]:
    """Assign each key to ``train``/``val``/``test`` keeping class proportions.

    Per class ``round(n * test)`` go to test and ``round(n * val)`` to val, but at least one
    image of every class stays in train.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SplitError(f"fractions must satisfy 0 <= val, test and val + test < 1 "
                         f"(got val={val}, test={test})")
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for _, members in _grouped(keys, labels).items():
        order = [members[i] for i in rng.permutation(len(members))]
        n = len(order)
        n_test = int(round(n * test))
        n_val = int(round(n * val))
        while n_test + n_val >= n and (n_test or n_val):  # keep one for training
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        for i, k in enumerate(order):
            out[k] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def stratified_kfold(keys: Sequence[str], labels: Sequence[str], *, k: int = 5,
                     seed: int = 0) -> dict[str, str]:
    """Assign each key to ``fold0``..``fold{k-1}``, every class spread evenly over folds.

    The fold counter runs on across classes so fold sizes differ by at most one.
    """
    if k < 2:
        raise SplitError(f"k-fold needs k >= 2 (got {k})")
    if k > len(keys):
        raise SplitError(f"k-fold with k={k} needs at least {k} images (got {len(keys)})")
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    pos = 0
    for _, members in _grouped(keys, labels).items():
        for i in rng.permutation(len(members)):
            out[members[i]] = f"fold{pos % k}"
            pos += 1
    return out


def kfold_parts(assignments: Mapping[str, str], fold: int, *, val: float = 0.2,
                labels: Mapping[str, str] | None = None, seed: int = 0) -> dict[str, str]:
    """Train/val/test view of fold ``fold``: it is the test set; ``val`` of the rest is val.

    The validation part is stratified when ``labels`` (``{key: label}``) is given.
    """
    test = {k for k, v in assignments.items() if v == f"fold{fold}"}
    if not test:
        raise SplitError(f"fold {fold} is empty or does not exist")
    rest = sorted(k for k in assignments if k not in test)
    lab = [labels[k] for k in rest] if labels is not None else ["_"] * len(rest)
    inner = stratified_split(rest, lab, val=val, test=0.0, seed=seed)
    return {**{k: "test" for k in test}, **inner}


def few_shot(keys: Sequence[str], labels: Sequence[str], *, shots: int, seed: int = 0,
             min_per_class: int = 1) -> list[str]:
    """Pick ``shots`` keys stratified by class, at least ``min_per_class`` of each if possible.

    The remainder after the minimum is shared in proportion to class size (largest
    remainder), never more than a class holds. With fewer shots than classes, a seeded
    random choice of classes gets one image each.

    Raises:
        SplitError: ``shots`` < 1 or larger than the number of images.
    """
    groups = _grouped(keys, labels)
    total = sum(len(v) for v in groups.values())
    if shots < 1:
        raise SplitError(f"shots must be >= 1 (got {shots})")
    if shots > total:
        raise SplitError(f"asked for {shots} shots but the set holds only {total} images")
    rng = np.random.default_rng(seed)
    names = list(groups)
    quota = dict.fromkeys(names, 0)
    if shots < len(names) * min_per_class:
        for i in rng.permutation(len(names))[:shots]:
            quota[names[i]] = 1
    else:
        for c in names:
            quota[c] = min(min_per_class, len(groups[c]))
        left = shots - sum(quota.values())
        while left > 0:
            room = {c: len(groups[c]) - quota[c] for c in names if len(groups[c]) > quota[c]}
            size = sum(len(groups[c]) for c in room)
            ideal = {c: left * len(groups[c]) / size for c in room}
            add = {c: min(int(ideal[c]), room[c]) for c in room}
            given = sum(add.values())
            # hand out the rest by largest fractional part, ties broken by the seeded rng
            order = sorted(room, key=lambda c: (-(ideal[c] - int(ideal[c])), rng.random()))
            for c in order:
                if given >= left:
                    break
                if add[c] < room[c]:
                    add[c] += 1
                    given += 1
            for c in room:
                quota[c] += add[c]
            left -= given
    chosen: list[str] = []
    for c in names:
        perm = rng.permutation(len(groups[c]))[: quota[c]]
        chosen += [groups[c][i] for i in sorted(perm)]
    return sorted(chosen)


def save_split(path: str | Path, split: SplitFile) -> Path:
    """Write a split file atomically (JSON, keys sorted, counts included for reading)."""
    from hemascope.io.atomic import write_json

    return write_json(path, split.to_dict(), indent=1)


def load_split(path: str | Path) -> SplitFile:
    """Read a split file written by :func:`save_split`.

    Raises:
        SplitError: missing file, not JSON, or not a hemascope split.
    """
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SplitError(f"split file {p} does not exist") from None
    except OSError as e:
        raise SplitError(f"cannot read split file {p}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SplitError(f"split file {p} is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != SPLIT_FORMAT:
        raise SplitError(f"{p} is not a hemascope split file (format {SPLIT_FORMAT!r} expected)")
    a = obj.get("assignments")
    if not isinstance(a, dict) or not all(isinstance(v, str) for v in a.values()):
        raise SplitError(f"{p}: 'assignments' must map image keys to part names")
    odd = sorted({v for v in a.values() if v not in ("train", "val", "test")
                  and not (v.startswith("fold") and v[4:].isdigit())})
    if odd:
        raise SplitError(f"{p}: unknown part name(s) {odd[:5]} (train, val, test or fold<N>)")
    seed, params = obj.get("seed", 0), obj.get("params") or {}
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SplitError(f"{p}: 'seed' must be a whole number, not {seed!r}")
    if not isinstance(params, dict):
        raise SplitError(f"{p}: 'params' must be an object, not {params!r:.40}")
    return SplitFile(assignments=a, method=str(obj.get("method", "")), seed=seed,
                     params=params, dataset=str(obj.get("dataset", "")))


def check_covers(split: SplitFile, keys: Sequence[str], *, source: str = "split") -> None:
    """Raise :class:`SplitError` unless ``split`` assigns exactly ``keys``."""
    have, want = set(split.assignments), set(keys)
    missing, extra = sorted(want - have), sorted(have - want)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) of the data are not in the {source} "
                         f"(e.g. {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} image(s) of the {source} are not in the data "
                         f"(e.g. {extra[0]!r})")
        raise SplitError("; ".join(parts))
