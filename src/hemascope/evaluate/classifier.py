"""Evaluate a classifier artifact on a labelled folder (``hemascope evaluate classifier``).

The folder's labels are mapped through the taxonomy onto the model's classes (``SNE`` ->
``neutrophil``...). Classes of the data that no model class covers are an error naming
them. ``split="test"`` keeps only the images the model's own ``split.json`` held out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hemascope.classify import predict_arrays, to_predictions
from hemascope.data import ClassificationSet, load_dataset
from hemascope.data.labels import refuse_unknown_labels
from hemascope.data.splits import load_split
from hemascope.errors import DatasetError, ImageReadError
from hemascope.evaluate.classification import ClassificationReport, classification_report
from hemascope.io.image import read_image
from hemascope.model_classes import allowed_classes, map_to_classes, restrict
from hemascope.models.artifact import SPLIT, LoadedModel, load_classifier


@dataclass
class ClassifierEvaluation:
    report: ClassificationReport
    predictions: list = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)
    truth: dict[str, str] = field(default_factory=dict)  # path -> true model class


def evaluate_classifier(data: str | Path | ClassificationSet, *,
                        model: str | Path | LoadedModel | None = "default",
                        split: str | None = None, format: str = "auto", batch_size: int = 64,
                        n_bootstrap: int = 1000, tta: int | None = None,
                        classes: Sequence[str] | str | None = None,
                        progress=None) -> ClassifierEvaluation:
    """Score ``model`` on the labelled set ``data`` (``tta``: test-time views; ``None``, the
    model's own, :func:`hemascope.classify.model_views`).

    ``classes`` restricts the predictions to some of the model's classes (any spelling the
    taxonomy knows), and the report to them; ``"data"`` means the classes the data holds
    (the cross-lab protocol: another lab is scored on the classes it shares with the
    model, so a model class the lab never labels cannot take its cells).

    Raises:
        DatasetError: classes of the data that map to no model class (named), an empty
            evaluation set, ``split`` asked for but the model holds no split file, or data
            classes that ``classes`` leaves out.
        HemascopeError: a name in ``classes`` that is none of the model's classes.
    """
    loaded = model if isinstance(model, LoadedModel) else load_classifier(model)
    wanted, classes = classes, loaded.classes
    ds = data if isinstance(data, ClassificationSet) else load_dataset(data, format=format)
    refuse_unknown_labels(ds)
    mapped = {s.label: map_to_classes(s.label, classes) for s in ds.samples}
    unmappable = sorted(c for c, m in mapped.items() if m is None)
    if unmappable:
        raise DatasetError(f"classes {unmappable} of {ds.root} do not map to the model's "
                           f"classes {classes}")
    samples = ds.samples
    if split is not None:
        split_file = loaded.path / SPLIT
        if not split_file.is_file():
            raise DatasetError(f"model {loaded.path} records no split file, so --split "
                               f"{split} cannot be applied")
        keep = set(load_split(split_file).keys(split))
        samples = [s for s in samples if s.path in keep]
        if len(samples) != len(keep):
            raise DatasetError(f"the model's {split} split lists {len(keep)} images but "
                               f"{len(samples)} of them are in {ds.root}: wrong --data folder?")
    if not samples:
        raise DatasetError(f"no images to evaluate in {ds.root}")
    kept = None
    if wanted is not None:
        held = {mapped[s.label] for s in samples}
        kept = allowed_classes(sorted(held) if wanted == "data" else wanted, classes)
        outside = sorted(held - {classes[i] for i in kept})
        if outside:
            raise DatasetError(f"{ds.root} holds classes {outside} that the classes to score "
                               f"({', '.join(classes[i] for i in kept)}) leave out")
    result = ClassifierEvaluation(report=None)  # type: ignore[arg-type]
    y_true, probs, names = [], [], []
    wrap = progress or (lambda it: it)
    for start in wrap(range(0, len(samples), batch_size)):
        images, batch = [], []
        for s in samples[start:start + batch_size]:
            try:
                images.append(read_image(ds.root / s.path))
                batch.append(s)
            except ImageReadError as e:
                result.errors[s.path] = e.reason
        if images:
            probs.append(predict_arrays(loaded, images, batch_size=batch_size, tta=tta))
            y_true += [classes.index(mapped[s.label]) for s in batch]
            names += [s.path for s in batch]
    if not names:
        raise DatasetError(f"none of the {len(samples)} images could be read")
    p, y = np.concatenate(probs), np.array(y_true)
    if kept is not None:  # scored on the kept classes only, in the model's order
        p, y = restrict(p, kept)[:, kept], np.searchsorted(kept, y)
        classes = [classes[i] for i in kept]
    result.report = classification_report(y, p.argmax(1), classes, n_bootstrap=n_bootstrap)
    result.predictions = to_predictions(names, p, classes)
    result.left_out = dict(ds.unmapped)
    result.truth = {n: classes[t] for n, t in zip(names, y)}
    return result
