"""Classify single-cell images with a model artifact: class, probability and top-2.

Preprocessing comes from the artifact's config (size, normalisation), never from guesses.
Unreadable files are reported in the result and skipped; the rest are classified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from hemascope.data.preprocess import letterbox_resize
from hemascope.errors import DatasetError, ImageReadError
from hemascope.io.image import is_image_file, read_image
from hemascope.io.masks import paired_masks
from hemascope.models.artifact import LoadedModel, load_classifier


@dataclass(frozen=True)
class CellPrediction:
    """One image's prediction: best class, its probability, the runner-up, all probabilities,
    and why the answer may be a guess (``warnings``: :func:`hemascope.io.quality.image_warnings`)."""

    path: str
    label: str
    probability: float
    second_label: str
    second_probability: float
    probabilities: dict[str, float]
    attributes: dict[str, dict] | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = {"path": self.path, "class": self.label, "probability": self.probability,
             "top2": [[self.label, self.probability], [self.second_label, self.second_probability]],
             "probabilities": self.probabilities, "warnings": list(self.warnings)}
        if self.attributes is not None:
            d["attributes"] = self.attributes
        return d


@dataclass
class ClassifyResult:
    predictions: list[CellPrediction]
    errors: dict[str, str] = field(default_factory=dict)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded recursively to their images (sorted).

    In a folder, the part masks of its images (``NAME.png`` beside ``NAME.bmp``, or
    ``masks/`` beside ``images/``: :func:`hemascope.io.masks.paired_masks`) are not images
    to read and are left out; a mask named as a file is kept.

    Raises:
        DatasetError: a path that does not exist, or no image at all.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise DatasetError(f"no such file or folder: {p}")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
            masks = paired_masks(found)
            found = [f for f in found if f not in masks]
        else:
            found = [p]
        for f in found:  # a file named twice (or also inside a folder given) counts once
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    if not out:
        raise DatasetError("no images found in " + ", ".join(str(p) for p in paths))
    return out


def preprocess(images: Sequence[np.ndarray], config: dict) -> torch.Tensor:
    """RGB uint8 images -> the normalised, channels-last batch the artifact expects.

    Letterbox-resize, then the artifact's colour standardisation (if it carries a stain
    reference), then its channel normalisation: the order training used.
    """
    size = int(config["image_size"])
    arr = np.stack([letterbox_resize(im, size) for im in images])
    if config.get("stain_reference"):
        from hemascope.stain import StainReference, standardize

        arr = standardize(arr, reference=StainReference.from_dict(config["stain_reference"]))
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


TTA_VIEWS = (1, 2, 4, 8)


def dihedral_views(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The first ``n`` of the 8 flips/rotations of a batch (cells have no up or left)."""
    views = [x, x.flip(-1), x.flip(-2), x.flip(-1, -2), x.transpose(-1, -2),
             x.transpose(-1, -2).flip(-1), x.transpose(-1, -2).flip(-2),
             x.transpose(-1, -2).flip(-1, -2)]
    return views[:n]


def view_averaged_softmax(model: torch.nn.Module, x: torch.Tensor, views: int) -> torch.Tensor:
    """Class probabilities of a normalised batch, averaged over its first ``views``
    dihedral views (1 = the batch as it is)."""
    return sum(torch.softmax(model(v.contiguous(memory_format=torch.channels_last)).float(), 1)
               for v in dihedral_views(x, views)) / views


def model_views(model: LoadedModel, tta: int | None = None) -> int:
    """``tta`` when given, else the model's own test-time views: its config's ``views``,
    chosen on its validation split when it was shipped (4 for the default classifier), 1
    for a model without one (a fine-tuned, adapted or exported model starts at 1)."""
    return int(model.config.get("views", 1)) if tta is None else tta


@torch.inference_mode()
def predict_arrays(model: LoadedModel, images: Sequence[np.ndarray], *,
                   batch_size: int = 64, tta: int | None = 1) -> np.ndarray:
    """Class probabilities ``(N, C)`` for RGB uint8 arrays.

    ``tta`` > 1 averages the softmax over that many dihedral views (1, 2, 4 or 8): a little
    more accuracy for ``tta`` times the compute. ``None``: the model's own views
    (:func:`model_views`); the user-facing functions (``classify_paths``,
    ``evaluate_classifier``, ``analyze``) default to that.
    """
    tta = model_views(model, tta)
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {TTA_VIEWS}")
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size], model.config)
        out.append(view_averaged_softmax(model.model, x, tta).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def to_predictions(paths: Sequence[str], probs: np.ndarray, classes: Sequence[str]) -> list[CellPrediction]:
    order = np.argsort(-probs, axis=1)
    preds = []
    for path, p, o in zip(paths, probs, order):
        second = o[1] if len(o) > 1 else o[0]
        preds.append(CellPrediction(path, classes[o[0]], float(p[o[0]]), classes[second],
                                    float(p[second]),
                                    {c: round(float(v), 6) for c, v in zip(classes, p)}))
    return preds


def classify_paths(paths: Iterable[str | Path], *, model: str | Path | LoadedModel | None = None,
                   batch_size: int = 64, tta: int | None = None,
                   attributes: str | Path | LoadedModel | None = None,
                   classes: Sequence[str] | None = None, progress=None) -> ClassifyResult:
    """Classify image files and folders (recursive); unreadable files land in ``errors``.

    Readable images the models cannot judge (grayscale, blank, very dark, washed out, tiny)
    are classified all the same, with the reason in the prediction's ``warnings``.

    ``tta``: test-time views (1, 2, 4, 8); ``None``, the model's own (:func:`model_views`).
    ``attributes`` (an attribute-model folder) adds the 11 morphology attributes to each
    prediction. ``classes`` (any spelling the taxonomy knows) restricts the predictions to
    those of the model's classes; the others get probability 0.

    Raises:
        HemascopeError: a name in ``classes`` that is none of the model's classes.
    """
    from dataclasses import replace

    from hemascope.io.quality import image_warnings
    from hemascope.model_classes import allowed_classes, restrict

    loaded = model if isinstance(model, LoadedModel) else load_classifier(model)
    kept = allowed_classes(classes, loaded.classes)
    att = None
    if attributes is not None:
        from hemascope.attributes import load_attribute_model

        att = attributes if isinstance(attributes, LoadedModel) else load_attribute_model(attributes)
    files = expand_paths(paths)
    result = ClassifyResult([])
    wrap = progress or (lambda it: it)
    for start in wrap(range(0, len(files), batch_size)):
        names, images = [], []
        for f in files[start:start + batch_size]:
            try:
                images.append(read_image(f))
                names.append(str(f))
            except ImageReadError as e:
                result.errors[str(f)] = e.reason
        if images:
            probs = predict_arrays(loaded, images, batch_size=batch_size, tta=tta)
            if kept is not None:
                probs = restrict(probs, kept)
            preds = [replace(p, warnings=tuple(image_warnings(im)))
                     for p, im in zip(to_predictions(names, probs, loaded.classes), images)]
            if att is not None:
                from hemascope.attributes import predict_attributes

                preds = [replace(p, attributes=a.to_dict())
                         for p, a in zip(preds, predict_attributes(att, images, batch_size=batch_size))]
            result.predictions += preds
    return result
