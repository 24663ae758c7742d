"""Adapting the classifier to the run's own white cells (``analyze --adapt bn|shot``).

A classifier trained in one lab types another lab's cells worse (README: the PBC default
reads CellaVision at 0.50). Before any image is typed, ``analyze`` can adapt it to the
white cells of the run itself, with no label and no source image:

* ``bn`` (AdaBN, :func:`hemascope.adapt.uda.adapt_batchnorm`): the encoder's batch-norm
  statistics are re-estimated on the run's cells. Seconds; nothing is trained.
* ``shot`` (SHOT, :mod:`hemascope.adapt.shot`): AdaBN, then a few epochs that move the
  encoder so that the cells land where the fixed head is confident, with diverse
  predictions and centroid pseudo-labels. Minutes. Its diversity term assumes that the
  classes come in comparable numbers: name the classes the lab's cells have (``classes``).

The white cells are found as the run finds them (the whole image in cells mode, the
detector's white-cell boxes on fields; those detections are kept so that fields are not
detected twice), and a seeded sample of at most ``max_cells`` is adapted on. The adapted
classifier is saved in ``OUT/adapted_classifier`` with a digest of the input files, so that
it can type later batches of the same lab (``--classifier OUT/adapted_classifier``) and a
resumed run with the same inputs re-uses it instead of adapting again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hemascope.errors import HemascopeError, ImageReadError

ADAPTATIONS = ("none", "bn", "shot")
#: Folder of the adapted classifier inside the run's output folder.
ADAPTED_DIR = "adapted_classifier"
#: Fewer white cells than this give batch-norm statistics too noisy to adapt on.
MIN_CELLS = 16
#: At most this many white cells are kept for adaptation (memory: 2000 x 224 px = 0.3 GB).
MAX_CELLS = 2000


@dataclass
class CellSample:
    """White cells found in the run (a seeded sample), resized for the classifier."""

    images: np.ndarray  # (N, S, S, 3) uint8
    n_found: int  # white cells in all readable images (the sample holds at most MAX_CELLS)
    modes: set[str]  # "cells" and/or "fields": how the images were read
    found: dict[str, Any] = field(default_factory=dict)  # source -> the analyzer's find_cells
    unreadable: int = 0  # files passed over (the run reports them)


def inputs_digest(files: Sequence[Path]) -> str:
    """SHA-256 of the input files' absolute paths, sizes and modification times: the same
    digest means the same cells to adapt on."""
    h = hashlib.sha256()
    for f in sorted(str(Path(f).resolve()) for f in files):
        try:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\0missing\n".encode())
    return h.hexdigest()


def collect_white_cells(analyzer, files: Sequence[Path], *, max_cells: int = MAX_CELLS,
                        seed: int = 0,
                        progress: Callable[[int, int, str], None] | None = None) -> CellSample:
    """Find the white cells of ``files`` as ``analyzer`` will, keeping a seeded uniform
    sample of at most ``max_cells`` (reservoir sampling), colour-standardised as the
    analyzer does (``--stain``) and resized to the classifier's input.

    Unreadable files are passed over here (the run reports them). The detections are kept
    in ``CellSample.found`` by absolute path for the run to re-use.
    """
    from hemascope.data.preprocess import letterbox_resize
    from hemascope.io.image import read_image
    from hemascope.pipeline.analyzer import cell_crops
    from hemascope.stain import standardize

    size = int(analyzer.classifier.config["image_size"])
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    n_found, modes, found, unreadable = 0, set(), {}, 0
    for n, f in enumerate(files):
        if progress:
            progress(n, len(files), str(f))
        try:
            image = read_image(f)
        except ImageReadError:
            unreadable += 1
            continue
        mode = analyzer.mode_of(image)
        cells = analyzer.find_cells(image, mode)
        found[str(Path(f).resolve())] = cells
        modes.add(mode)
        for crop in cell_crops(image, cells, mode):
            n_found += 1
            j = len(kept) if len(kept) < max_cells else int(rng.integers(n_found))
            if j < max_cells:
                if analyzer.stain is not None:  # as the classifier will see it
                    crop = standardize(crop, reference=analyzer.stain)
                crop = letterbox_resize(crop, size)
                if j == len(kept):
                    kept.append(crop)
                else:
                    kept[j] = crop
    if progress:
        progress(len(files), len(files), "")
    images = np.stack(kept) if kept else np.zeros((0, size, size, 3), np.uint8)
    return CellSample(images, n_found, modes, found, unreadable)


def adaptation_classes(base_classes: Sequence[str], allowed: Sequence[int] | None,
                       modes: set[str]) -> list[str]:
    """The classes SHOT spreads the cells over: the allowed ones (``analyze --classes``),
    and only the nucleated ones when every image is a field (a white-cell box is never a
    platelet)."""
    from hemascope.pipeline.analyzer import nucleated_classes

    keep = set(range(len(base_classes))) if allowed is None else set(allowed)
    if modes == {"fields"}:
        keep &= set(nucleated_classes(base_classes))
    return [c for i, c in enumerate(base_classes) if i in keep]


def reusable(folder: Path, digest: str, settings: dict[str, Any]):
    """The adapted classifier saved in ``folder`` if it was made from the same inputs with
    the same settings, else ``None``."""
    from hemascope.models.artifact import load_classifier, read_config

    if not (folder / "config.json").is_file():
        return None
    try:
        made = read_config(folder).get("training", {}).get("analyze_adaptation")
        return load_classifier(folder) if made == {"inputs_sha256": digest, **settings} else None
    except HemascopeError:  # damaged: not re-usable
        return None


def check_enough(sample: CellSample, method: str) -> None:
    """Raise unless ``sample`` holds at least :data:`MIN_CELLS` white cells."""
    if len(sample.images) < MIN_CELLS:
        bad = f" ({sample.unreadable} files could not be read)" if sample.unreadable else ""
        raise HemascopeError(
            f"--adapt {method} needs at least {MIN_CELLS} white cells in the run and found "
            f"{sample.n_found}{bad}: analyse more images together, or adapt once on a larger "
            f"set (`hemascope adapt {method}`) and pass that model with --classifier")


def adapt_to_run(base, sample: CellSample, *, method: str, classes: list[str], seed: int,
                 out_dir: Path, digest: str, settings: dict[str, Any],
                 log: Callable[[str], None] = lambda s: None):
    """Adapt ``base`` to the sampled cells by ``method`` ("bn" or "shot"), save it in
    ``out_dir`` and return it loaded (a :class:`~hemascope.models.artifact.LoadedModel`).

    Raises:
        HemascopeError: fewer than :data:`MIN_CELLS` white cells, an encoder without batch
            norm, or fewer than 2 classes to adapt to.
    """
    from hemascope.adapt.fewshot import TargetData
    from hemascope.adapt.uda import UdaConfig, adapt_batchnorm, save_adapted
    from hemascope.models.artifact import load_classifier

    if method not in ADAPTATIONS[1:]:
        raise HemascopeError(f"adaptation must be one of {', '.join(ADAPTATIONS)}")
    check_enough(sample, method)
    n = len(sample.images)
    target = TargetData([], sample.images, np.zeros(0, np.int64), [str(i) for i in range(n)], {})
    if method == "bn":
        result = adapt_batchnorm(target, base, target_labelled=False, log=log)
        cfg = UdaConfig(method="bn", seed=seed)
    else:
        from hemascope.adapt.shot import ShotConfig, adapt_source_free

        cfg = ShotConfig(seed=seed)
        result = adapt_source_free(target, base, cfg, target_labelled=False, classes=classes,
                                   log=log)
    save_adapted(result, base, cfg, out_dir, source=None,
                 target=f"{sample.n_found} white cells of an analyze run ({n} adapted on)",
                 extra={"analyze_adaptation": {"inputs_sha256": digest, **settings}})
    return load_classifier(out_dir)
