"""Run bias discovery for a classifier on an attribute-labelled set (WBCAtt tables).

Each image is classified; its correctness is split by the value of every attribute, taken
from the table (the annotators') or read by an attribute model (what a lab without
attribute labels would do); :func:`hemascope.explain.bias.error_rates_by_attribute` flags
the largest gaps.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from hemascope.errors import DatasetError
from hemascope.explain.bias import error_rates_by_attribute


def bias_study(csv: str | Path, *, model="default", images=None, attributes=None,
               min_support: int = 20, flag_gap: float = 0.05, batch_size: int = 64,
               progress=None) -> dict:
    """Returns ``{"n_images", "accuracy", "source", "findings": [...], "errors"}``.

    Raises:
        DatasetError: no image of the table maps to a class of the classifier.
    """
    import numpy as np

    from hemascope.classify import predict_arrays
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.errors import ImageReadError
    from hemascope.model_classes import map_to_classes
    from hemascope.io.image import read_image
    from hemascope.models.artifact import load_classifier

    clf = load_classifier(model)
    path = Path(csv)
    ds = read_wbcatt_any(path, image_root=images)
    att = None
    if attributes:
        from hemascope.attributes import load_attribute_model, predict_attributes

        att = load_attribute_model(attributes)
    samples = [s for s in ds.samples if map_to_classes(s.label, clf.classes)]
    if not samples:
        raise DatasetError(f"no label of {path} maps to a class of the classifier "
                           f"({', '.join(clf.classes)})")
    correct, values = [], {}
    errors = {p.path: p.message for p in ds.problems}  # rows left out, and why
    wrap = progress or (lambda it: it)
    for start in wrap(range(0, len(samples), batch_size)):
        batch, imgs = [], []
        for s in samples[start:start + batch_size]:
            try:
                imgs.append(read_image(ds.root / s.path))
                batch.append(s)
            except ImageReadError as e:
                errors[s.path] = e.reason
        if not imgs:
            continue
        pred = predict_arrays(clf, imgs, batch_size=batch_size).argmax(1)
        correct += [clf.classes[p] == map_to_classes(s.label, clf.classes) for p, s in zip(pred, batch)]
        rows = ([a.values for a in predict_attributes(att, imgs, batch_size=batch_size)] if att
                else [dict(s.attributes) for s in batch])
        for r in rows:
            for k, v in r.items():
                values.setdefault(k, []).append(v)
    findings = error_rates_by_attribute(correct, values, min_support=min_support, flag_gap=flag_gap)
    return {"n_images": len(correct), "accuracy": float(np.mean(correct)) if correct else 0.0,
            "source": "attribute model" if att else "table", "classifier": str(clf.path),
            "findings": [asdict(f) for f in findings], "errors": errors}
