"""The main job, `hemascope analyze`: smear images -> a white-cell differential with evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

from hemascope.pipeline.analyzer import AnalysisOptions, AnalysisResult, Analyzer
from hemascope.pipeline.records import CellRecord, ImageResult

__all__ = ["AnalysisOptions", "AnalysisResult", "Analyzer", "CellRecord", "ImageResult", "analyze"]


def analyze(paths: str | Path | Iterable[str | Path], *, out_dir: str | Path,
            detector: str | Path = "default", classifier: str | Path = "default",
            refiner: str | Path | None = None, attributes: str | Path | None = None,
            parts: str | Path | None = None, stain: str | Path | None = None,
            mode: str = "auto", scale: float | str | None = "auto", balance: bool = True,
            review_below: float = 0.6, overlays: bool = True, tta: int | None = None,
            detector_tta: int = 1, classes: Sequence[str] | None = None, adapt: str = "none",
            adapt_seed: int = 0, resume: bool = False, shard: tuple[int, int] | None = None,
            progress: Callable[[int, int, str], None] | None = None,
            log: Callable[[str], None] | None = None) -> AnalysisResult:
    """Analyse images and folders into ``out_dir`` (the Python face of `hemascope analyze`).

    Args:
        paths: image files and/or folders (searched recursively).
        out_dir: where every output goes (created; inputs are never written).
        detector, classifier: model folders or ``"default"`` (the shipped models).
        refiner: an adapted classifier (e.g. ``RUN/model`` of `hemascope fewshot`) that types
            again the cells whose first class it also knows (two-stage pipeline).
        attributes: an attribute model (`hemascope train attributes`): each white cell
            gets its 11 morphology attributes in the per-image JSON.
        parts: a cell-part model that outlines each white cell (nucleus and cytoplasm)
            and measures its nucleus-to-cell area ratio: ``"default"`` (the shipped U-Net)
            or a `hemascope train segmentation` folder; ``None`` (the default): the
            classical outline of the stained region (:mod:`hemascope.segment.classical`).
        stain: a colour reference (`hemascope stain fit`) applied to cells before typing.
        mode: ``"cells"`` (single-cell crops), ``"fields"`` (smear fields) or ``"auto"``
            (images up to 400 px on the longer side are single cells).
        scale: detector scale: ``"auto"``, ``None`` (training scale) or a factor.
        balance: white-balance each field's background onto the detector's training
            fields' before detection (:mod:`hemascope.stain.background`).
        review_below: white cells typed with less confidence are flagged for review.
        overlays: write an overlay PNG per image.
        tta: classifier test-time augmentation views (1, 2, 4 or 8); ``None``: each
            classifier's own (4 for the shipped default, 1 for a fine-tuned model).
        detector_tta: mirror views of each field for the detector (1, 2 or 4), fused by
            weighted boxes fusion (``hemascope.detect.tta``).
        classes: the classes white cells may take (names the taxonomy knows, e.g. the five
            leukocyte types of normal blood); default: every class of the classifier.
        adapt: ``"bn"`` or ``"shot"`` adapt the classifier to the run's own white cells
            before typing them, with no label (:mod:`hemascope.pipeline.adaptation`; the
            adapted model is saved in ``out_dir/adapted_classifier``); ``"none"``: as is.
        adapt_seed: seed of the adaptation (cell sample, SHOT's training).
        resume: skip images whose result is already in ``out_dir``.
        shard: ``(k, n)``: analyse only the k-th of n interleaved parts of the inputs (one
            per machine or job; ``hemascope report merge`` joins the parts' folders).
        progress: called as ``progress(done, total, file)`` (twice over the files with
            ``adapt``: finding the cells to adapt on, then analysing).
        log: called with a line of text about adaptation.
    """
    from hemascope.pipeline.analyzer import analyze as _run

    if isinstance(paths, (str, Path)):
        paths = [paths]
    opts = AnalysisOptions(detector=detector, classifier=classifier, refiner=refiner,
                           attributes=attributes, parts=parts, stain=stain, mode=mode,
                           scale=scale, balance=balance, review_below=review_below,
                           overlays=overlays, tta=tta,
                           detector_tta=detector_tta,
                           classes=None if classes is None else list(classes), adapt=adapt,
                           adapt_seed=adapt_seed)
    return _run(paths, out_dir=out_dir, options=opts, resume=resume, shard=shard,
                progress=progress, log=log)
