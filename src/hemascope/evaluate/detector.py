"""Evaluating detector artifacts (one, or an ensemble) on an annotated set.

Labels of the set are mapped onto the model's classes through the taxonomy (``WBC``,
``leukocyte``, ``neutrophil`` -> ``WBC``); labels that map to none are named in the error.
With several models (or mirror views of each field), their boxes are fused per field
(weighted boxes fusion by default; the leukocyte-detection study's vote or NMS) before
scoring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from hemascope.detect.data import FieldSet, class_mapping, prepare_fields
from hemascope.detect.ensemble import Detections
from hemascope.detect.predict import LoadedDetector, predict_ensemble
from hemascope.errors import DatasetError
from hemascope.evaluate.detection import DetectionReport, GroundTruth, detection_report
from hemascope.io.annotations import DetectionSet


@dataclass
class DetectorEvaluation:
    report: DetectionReport
    fields: FieldSet
    predictions: list[Detections]
    seconds_per_image: float


def load_fields(ds: DetectionSet, classes: Sequence[str], *, split: str | None = None) -> FieldSet:
    """Decode the (split of the) set with labels mapped onto ``classes``.

    Raises:
        DatasetError: not a detection set, the split is absent or empty, or labels map to
            none of the classes.
    """
    if not isinstance(ds, DetectionSet):
        raise DatasetError(f"{getattr(ds, 'root', 'the data set')} is not an annotated "
                           "detection set (VOC, COCO, YOLO, CVAT)")
    if split:
        have = ds.splits()
        if split not in have:
            raise DatasetError(f"the data set has no {split!r} split (it has "
                               f"{', '.join(sorted(have))})")
        ds = ds.subset(split)
    if not ds.images:
        raise DatasetError("no annotated images to evaluate on")
    _, mapping = class_mapping(ds, classes=classes)
    return prepare_fields(ds, classes, mapping)


def evaluate_detector(models: Sequence[LoadedDetector], ds: DetectionSet, *,
                      split: str | None = None, fusion: str = "wbf", scale="auto",
                      views: int = 1, balance: bool = True, box_offsets: bool = True,
                      transform: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None,
                      fields: FieldSet | None = None) -> DetectorEvaluation:
    """COCO metrics + counting error of ``models`` (fused if several) on ``ds``.

    Args:
        transform: optional ``(image, boxes, index) -> image`` applied before prediction
            (interference-factor robustness tests).
        views: views per model (test-time augmentation: 1, 2, 4 mirrors or 8 with turns).
        balance: white-balance each field's background first (see :func:`detect_field`).
        box_offsets: apply each model's box-edge offsets (:mod:`hemascope.detect.calibrate`).
        fields: already decoded fields (skips decoding when evaluating several variants).
    """
    classes = models[0].classes
    for m in models[1:]:
        if m.classes != classes:
            raise DatasetError(f"ensemble members disagree on classes: {classes} vs {m.classes}")
    fs = fields or load_fields(ds, classes, split=split)
    preds, t0 = [], time.perf_counter()
    for i, f in enumerate(fs.fields):
        img = f.image if transform is None else transform(f.image, f.boxes, i)
        preds.append(predict_ensemble(models, img, fusion=fusion, scale=scale, views=views,
                                      balance=balance, box_offsets=box_offsets))
    sec = (time.perf_counter() - t0) / max(len(fs.fields), 1)
    thr = models[0].config.get("count_thresholds")
    rep = detection_report([GroundTruth(f.boxes, f.labels) for f in fs.fields], preds, classes,
                           count_thresholds=thr)
    return DetectorEvaluation(rep, fs, preds, sec)
