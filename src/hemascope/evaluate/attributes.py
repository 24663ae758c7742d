"""Scores of morphology-attribute recognition (the WBCAtt protocol).

Each attribute is scored as its own classification problem (accuracy, macro precision /
recall / F1 over the values present in the truth, per-value scores, confusion matrix); the
headline numbers are their plain averages over attributes, as in Tsutsui et al. (2023).
JSON keys: ``attributes`` (per attribute, the ``evaluate classifier`` shape without CIs),
``average_macro_f1``, ``average_accuracy``, ``average_macro_precision``,
``average_macro_recall``, ``n_images``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hemascope.evaluate.classification import ClassificationReport, classification_report


@dataclass(frozen=True)
class AttributeReport:
    """One report per attribute and their averages."""

    attributes: dict[str, ClassificationReport]
    n_images: int

    def _mean(self, name: str) -> float:
        vals = [getattr(r, name) for r in self.attributes.values()]
        return float(np.mean(vals)) if vals else 0.0

    @property
    def average_macro_f1(self) -> float:
        return self._mean("macro_f1")

    @property
    def average_accuracy(self) -> float:
        return self._mean("accuracy")

    def to_dict(self) -> dict:
        per = {}
        for name, r in self.attributes.items():
            d = r.to_dict()
            d.pop("ci95", None)
            per[name] = d
        return {"attributes": per, "average_macro_f1": self.average_macro_f1,
                "average_accuracy": self.average_accuracy,
                "average_macro_precision": self._mean("macro_precision"),
                "average_macro_recall": self._mean("macro_recall"), "n_images": self.n_images}


def attribute_report(truth: Mapping[str, Sequence[str]], predicted: Mapping[str, Sequence[str]],
                     values: Mapping[str, Sequence[str]]) -> AttributeReport:
    """Score predicted attribute values against the truth.

    Args:
        truth: attribute -> true value per image (``""`` or ``None``: unknown, left out).
        predicted: attribute -> predicted value per image (same order).
        values: attribute -> its allowed values (the confusion matrix order).

    Raises:
        ValueError: an attribute missing from ``predicted``, lengths that differ, or a value
            outside ``values`` (the message names attribute and value).
    """
    reports, n = {}, 0
    for name, allowed in values.items():
        if name not in truth:
            continue
        if name not in predicted:
            raise ValueError(f"no predictions for attribute {name!r}")
        t, p = list(truth[name]), list(predicted[name])
        if len(t) != len(p):
            raise ValueError(f"attribute {name!r}: {len(t)} true values but {len(p)} predictions")
        index = {v: i for i, v in enumerate(allowed)}
        keep = [i for i, v in enumerate(t) if v not in ("", None)]
        for v in [t[i] for i in keep] + [p[i] for i in keep]:
            if v not in index:
                raise ValueError(f"attribute {name!r}: value {v!r} is not one of {list(allowed)}")
        reports[name] = classification_report([index[t[i]] for i in keep],
                                              [index[p[i]] for i in keep], list(allowed),
                                              n_bootstrap=0)
        n = max(n, len(t))
    return AttributeReport(reports, n)


@dataclass
class AttributeEvaluation:
    report: AttributeReport
    errors: dict[str, str]


def default_wbcatt_test() -> Path:
    """The official WBCAtt test table under the shared data folder."""
    root = Path(os.environ.get("HEMASCOPE_SHARED_DATA", "../shared/data"))
    return root / "wbcatt" / "pbc_attr_v1_test.csv"


def evaluate_attributes(csv=None, *, model="default", images=None, batch_size: int = 64,
                        tta: int = 1, progress=None) -> AttributeEvaluation:
    """Score an attribute model on a WBCAtt table (default: the official test split).

    Args:
        csv: a WBCAtt CSV (``img_name, label, <11 attributes>, path``) or a folder of the
            three official tables (all rows are scored).
        model: attribute-model folder or ``"default"``.
        images: the folder the CSV's ``path`` column is relative to (PBC); found beside
            the CSV when omitted.
        tta: dihedral views averaged per cell (1, 2, 4 or 8).

    Raises:
        DatasetError / AnnotationError: unreadable table, missing columns, unknown values
            (the file and line are named), or no readable image.
    """
    loaded, truth, probs, errors = table_probabilities(csv, model=model, images=images,
                                                       batch_size=batch_size, tta=tta,
                                                       progress=progress)
    attrs = loaded.model.attributes
    pred = {k: [attrs[k][j] for j in p.argmax(1)] for k, p in probs.items()}
    return AttributeEvaluation(attribute_report(truth, pred, attrs), errors)


def table_probabilities(csv=None, *, model="default", images=None, batch_size: int = 64,
                        tta: int = 1, adjusted: bool = True, progress=None):
    """An attribute model's value probabilities for the readable cells of a WBCAtt table.

    Returns ``(loaded model, truth, probabilities, errors)``: ``truth`` maps attribute ->
    the table's value per cell (``""`` where unknown), ``probabilities`` attribute ->
    ``(N, n values)`` in the same order, ``errors`` path -> why a row was skipped.
    ``adjusted`` as in :func:`hemascope.attributes.attribute_probabilities`.
    :func:`table_cells` also gives the cells' paths.
    """
    loaded, _, _, truth, probs, errors = table_cells(csv, model=model, images=images,
                                                     batch_size=batch_size, tta=tta,
                                                     adjusted=adjusted, progress=progress)
    return loaded, truth, probs, errors


def table_cells(csv=None, *, model="default", images=None, batch_size: int = 64,
                tta: int = 1, adjusted: bool = True, progress=None):
    """:func:`table_probabilities` with the table's image root and the readable cells' paths
    (relative to it) after the model: ``(loaded model, root, paths, truth, probabilities,
    errors)``.

    Raises:
        DatasetError / AnnotationError: unreadable table, missing columns, unknown values
            (the file and line are named), or no readable image.
    """
    from hemascope.attributes.predict import attribute_probabilities, load_attribute_model
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.errors import DatasetError, ImageReadError
    from hemascope.io.image import read_image
    from hemascope.models.artifact import LoadedModel

    path = Path(csv) if csv else default_wbcatt_test()
    if not path.exists():
        raise DatasetError(f"attribute table {path} does not exist")
    ds = read_wbcatt_any(path, image_root=images)
    bad = [p for p in ds.problems if p.kind == "unknown_attribute_value"]
    if bad:
        raise DatasetError(f"{path}: {len(bad)} row(s) with unknown attribute values, e.g. "
                           f"{bad[0].path}: {bad[0].message}")
    loaded = model if isinstance(model, LoadedModel) else load_attribute_model(model)
    attrs = loaded.model.attributes
    truth: dict[str, list[str]] = {k: [] for k in attrs}
    probs: dict[str, list[np.ndarray]] = {k: [] for k in attrs}
    paths: list[str] = []
    errors = {p.path: p.message for p in ds.problems}
    wrap = progress or (lambda it: it)
    for start in wrap(range(0, len(ds.samples), batch_size)):
        batch, arrays = [], []
        for s in ds.samples[start:start + batch_size]:
            try:
                arrays.append(read_image(ds.root / s.path))
                batch.append(s)
            except ImageReadError as e:
                errors[s.path] = e.reason
        if not arrays:
            continue
        p = attribute_probabilities(loaded, arrays, batch_size=batch_size, tta=tta,
                                    adjusted=adjusted)
        paths += [s.path for s in batch]
        for k in attrs:
            truth[k] += [s.attributes.get(k, "") for s in batch]
            probs[k].append(p[k])
    if not any(truth.values()):
        raise DatasetError(f"no readable image with attributes in {path}")
    return (loaded, ds.root, paths, truth, {k: np.concatenate(v) for k, v in probs.items()},
            errors)


def agreement(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]],
              values: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Per attribute: how often two labelings agree, and Cohen's kappa (Cohen 1960).

    Used for the label-noise check: annotator vs annotator on the re-annotated WBCAtt
    images, next to model vs each annotator. Entries where either side is unknown are
    left out; ``n`` says how many were compared.
    """
    out = {}
    for name, allowed in values.items():
        if name not in a or name not in b:
            continue
        pairs = [(x, y) for x, y in zip(a[name], b[name]) if x not in ("", None) and y not in ("", None)]
        if not pairs:
            continue
        index = {v: i for i, v in enumerate(allowed)}
        k = len(allowed)
        cm = np.zeros((k, k))
        for x, y in pairs:
            cm[index[x], index[y]] += 1
        n = cm.sum()
        po = np.trace(cm) / n
        pe = float((cm.sum(0) * cm.sum(1)).sum() / n**2)
        kappa = 1.0 if pe >= 1 else (po - pe) / (1 - pe)
        out[name] = {"agreement": float(po), "kappa": float(kappa), "n": int(n)}
    return out
