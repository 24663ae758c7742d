"""Fit an attribute model's decision offsets on a lab's labelled cells and write a copy
of the model that applies them (``hemascope adapt offsets``).

Labs draw the line between attribute values in their own places (where "big" ends, when
a nucleus counts as segmented). Given cells labelled by the lab's convention, free
per-value offsets (:func:`hemascope.attributes.bias.fit_value_bias`) move each head's
boundaries to maximise macro-F1 on them; the model's weights are unchanged. On WBCAtt's
own validation split they gave no gain to the shipped model
(``benchmarks/results/attributes_bias.md``). Fitted on 104 cells that other annotators
re-labelled, they raised macro-F1 on 304 further such cells by 0.006, but not on cells
drawn with the tables' mix of types (``benchmarks/results/attributes_offsets_reannotators.md``):
fit them on cells sampled and labelled the way the lab will use the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_CELLS = 30


@dataclass(frozen=True)
class OffsetFit:
    offsets: dict[str, list[float]]  # attribute -> one offset per value (zeros: kept)
    n_cells: dict[str, int]  # attribute -> labelled cells it was fitted on
    macro_f1_before: dict[str, float]  # on the fitting cells themselves (in-sample)
    macro_f1_after: dict[str, float]
    errors: dict[str, str]  # unreadable rows
    tta: int = 1  # flips/rotations averaged when fitting


def fit_table_offsets(model, csv, *, images=None, tta: int = 1, min_cells: int = MIN_CELLS,
                      progress=None) -> OffsetFit:
    """Offsets for every attribute of ``model`` from the labelled cells of a WBCAtt-style
    table. An attribute with fewer than ``min_cells`` labelled cells keeps zero offsets.
    The model's own offsets, if any, are replaced, not added to."""
    from hemascope.attributes.bias import apply_value_bias, fit_value_bias, macro_f1
    from hemascope.evaluate.attributes import table_probabilities

    loaded, truth, probs, errors = table_probabilities(csv, model=model, images=images,
                                                       tta=tta, adjusted=False,
                                                       progress=progress)
    offsets, counts, before, after = {}, {}, {}, {}
    for name, values in loaded.model.attributes.items():
        t = np.array([values.index(v) if v else -1 for v in truth[name]], np.int64)
        known = t >= 0
        counts[name] = int(known.sum())
        bias = np.zeros(len(values))
        if counts[name] >= min_cells:
            bias = fit_value_bias(probs[name], t)
        offsets[name] = [round(float(b), 4) for b in bias]
        if counts[name]:
            k = len(values)
            before[name] = macro_f1(t[known], probs[name][known].argmax(1), k)
            after[name] = macro_f1(t[known], apply_value_bias(probs[name][known], bias).argmax(1), k)
    return OffsetFit(offsets, counts, before, after, errors, tta)


def write_offset_model(model_path, fit: OffsetFit, out, *, source: str) -> Path:
    """A copy of the attribute model at ``out`` whose config carries the offsets
    (``value_bias``) and where they came from (``value_bias_source``).

    Raises:
        HemascopeError: ``out`` is the model's own folder.
    """
    from hemascope.models.artifact import copy_with_config

    return copy_with_config(model_path, out, {"value_bias": fit.offsets,
                                              "value_bias_source": source,
                                              "value_bias_cells": fit.n_cells,
                                              "value_bias_tta": fit.tta},
                            what="attribute model")
