"""Pseudo-labels for cell-part segmentation: what a teacher model is sure of, nothing else.

Self-training (one round, after Xie et al. 2020's noisy student, without the noise
schedule): a U-Net trained on the labelled cells (the teacher) segments unlabelled cells
from another source (e.g. PBC); pixels where its top probability reaches
``min_confidence`` keep the predicted part, the others become :data:`IGNORE` and take no
part in the student's loss. These are *pseudo*-labels: nobody checked them, and a student
trained on them is only as good as the labelled score it is measured on says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

#: label value of a pixel left out of the loss (not a part index)
IGNORE = 255


def confident_labels(probs: np.ndarray, min_confidence: float) -> np.ndarray:
    """``(C, H, W)`` probabilities -> ``(H, W)`` uint8 part indices, :data:`IGNORE` where
    the top probability is below ``min_confidence`` (pure)."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError("min_confidence must lie in [0, 1]")
    labels = probs.argmax(0).astype(np.uint8)
    labels[probs.max(0) < min_confidence] = IGNORE
    return labels


def load_unlabelled(folder: str | Path, size: int, *, limit: int, seed: int = 0,
                    log: Callable[[str], None] = lambda s: None) -> np.ndarray:
    """Up to ``limit`` images of ``folder`` (recursive; a seeded random choice), resized to
    ``size`` x ``size`` as segmentation training expects; unreadable files are logged and
    skipped.

    Raises:
        DatasetError: no folder, or no readable image in it.
    """
    from hemascope.classify import expand_paths
    from hemascope.errors import DatasetError, ImageReadError
    from hemascope.io.image import read_image
    from hemascope.segment.data import resize_pair

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"unlabelled images: {root} is not a folder")
    files = expand_paths([root])
    order = np.random.default_rng(seed).permutation(len(files))
    out: list[np.ndarray] = []
    for i in order:
        if len(out) >= limit:
            break
        try:
            out.append(resize_pair(read_image(files[i]), None, size)[0])
        except ImageReadError as e:
            log(f"skipping unlabelled {files[i]}: {e.reason}")
    if not out:
        raise DatasetError(f"no readable image in {root}")
    return np.stack(out)


def pseudo_label(loaded, images: Sequence[np.ndarray], min_confidence: float) -> np.ndarray:
    """``(N, H, W)`` pseudo-labels of same-size images from a loaded segmenter."""
    from hemascope.segment.predict import segment_arrays

    probs = segment_arrays(loaded, list(images), return_probs=True, zoom=False,
                           centre=False, mirror=False)  # as measured
    return np.stack([confident_labels(p, min_confidence) for p in probs])
