import numpy as np
import pytest

from hemascope.explain.bias import error_rates_by_attribute
from hemascope.explain.concepts import concept_names, fit_concept_bottleneck
from hemascope.explain.counterfactual import counterfactuals


def test_bias_flags_the_value_with_more_errors():
    rng = np.random.default_rng(0)
    shape = np.array(["round"] * 200 + ["irregular"] * 200)
    correct = np.r_[rng.random(200) < 0.95, rng.random(200) < 0.70]
    size = rng.choice(["big", "small"], 400)
    findings = error_rates_by_attribute(correct, {"cell_shape": shape, "cell_size": size})
    assert findings[0].attribute == "cell_shape" and findings[0].worst_value == "irregular"
    assert findings[0].gap > 0.15
    assert all(f.attribute != "cell_size" or f.gap < 0.1 for f in findings)
    with pytest.raises(ValueError):
        error_rates_by_attribute([True], {"a": ["x", "y"]})


def test_counterfactual_prefers_one_attribute_difference():
    emb = np.array([[0, 0], [0.1, 0], [0.2, 0], [5, 5]], float)
    attrs = {"nucleus_shape": ["round", "round", "bilobed", "bilobed"],
             "granularity": ["no", "no", "yes", "no"]}
    res = counterfactuals(0, emb, attrs, "nucleus_shape", k=2)
    # index 3 differs only in nucleus shape (far away); index 2 also differs in granularity
    assert [r.index for r in res] == [3, 2] and res[0].other_differences == 0
    assert counterfactuals(0, emb, attrs, "nucleus_shape", value="segmented") == []
    with pytest.raises(KeyError):
        counterfactuals(0, emb, attrs, "colour")


def test_concept_bottleneck_learns_sparse_rules_and_interventions():
    attributes = {"nucleus_shape": ["round", "segmented"], "granule_colour": ["nil", "red"]}
    names = concept_names(attributes)
    rng = np.random.default_rng(1)
    # lymphocyte: round + nil; neutrophil: segmented + nil; eosinophil: segmented + red
    proto = {0: [1, 0, 1, 0], 1: [0, 1, 1, 0], 2: [0, 1, 0, 1]}
    y = rng.integers(0, 3, 300)
    x = np.clip(np.array([proto[c] for c in y]) + rng.normal(0, 0.1, (300, 4)), 0, 1)
    model = fit_concept_bottleneck(x, y, concepts=names,
                                   classes=["lymphocyte", "neutrophil", "eosinophil"], l1=2e-3)
    assert (model.predict_proba(x).argmax(1) == y).mean() > 0.95
    assert model.sparsity() > 0  # the L1 penalty zeroes some weights exactly
    eos = np.array(proto[2], float)
    top = model.explain(eos, top=2)
    assert any(name == "granule_colour=red" for name, _ in top)
    p = model.intervene(eos, "granule_colour", "nil")  # remove the red granules
    assert np.argmax(p) == 1  # now a neutrophil
    with pytest.raises(KeyError):
        model.intervene(eos, "granule_colour", "blue")
    # an L2 term (no L1) shrinks the weights without zeroing any and still separates the types
    plain, ridge = (fit_concept_bottleneck(x, y, concepts=names, classes=["l", "n", "e"],
                                           l1=0.0, l2=l2) for l2 in (0.0, 0.1))
    assert np.abs(ridge.weights).sum() < 0.8 * np.abs(plain.weights).sum()
    assert ridge.sparsity() == 0 and (ridge.predict_proba(x).argmax(1) == y).mean() > 0.95
