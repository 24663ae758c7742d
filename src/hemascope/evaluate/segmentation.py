"""Score a part-segmentation model on a folder of images with masks
(``hemascope evaluate segmentation``): per-class IoU and F1, mean IoU, at each image's own
size. Unreadable pairs and masks whose size differs from their image are listed and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hemascope.errors import DatasetError, ImageReadError
from hemascope.models.artifact import LoadedModel
from hemascope.segment.metrics import SegmentationReport, segmentation_report
from hemascope.segment.predict import CENTRE_CELL, MIRROR_MARGINS


@dataclass
class SegmentationEvaluation:
    report: SegmentationReport
    errors: dict[str, str]


def evaluate_segmentation(data: str | Path, *, model: str | Path | LoadedModel = "default",
                          balance: bool = True, zoom: bool = True, centre: bool = CENTRE_CELL,
                          mirror: bool = MIRROR_MARGINS, zoom_pad: str = "border",
                          progress=None) -> SegmentationEvaluation:
    """Score a part model on a folder of image/mask pairs; ``balance``, ``zoom``,
    ``centre``, ``mirror`` and ``zoom_pad`` as in
    :func:`hemascope.segment.predict.segment_arrays`.

    Raises ``DatasetError`` when the folder holds no readable pair."""
    from hemascope.segment.data import find_mask_pairs, load_pair
    from hemascope.segment.predict import load_segmenter, segment_arrays

    loaded = model if isinstance(model, LoadedModel) else load_segmenter(model)
    pairs, problems = find_mask_pairs(data)
    errors = {p.path: p.message for p in problems}
    truths, preds = [], []
    wrap = progress or (lambda it: it)
    for pair in wrap(pairs):
        try:
            image, mask = load_pair(pair)
        except ImageReadError as e:  # the image or its mask: the error names which
            errors[str(e.path)] = e.reason
            continue
        truths.append(mask)
        preds += segment_arrays(loaded, [image], balance=balance, zoom=zoom, centre=centre,
                                mirror=mirror, zoom_pad=zoom_pad)
    if not truths:
        raise DatasetError(f"no readable image/mask pair in {data}")
    return SegmentationEvaluation(segmentation_report(truths, preds, loaded.config["classes"]), errors)
