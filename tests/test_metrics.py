import numpy as np
import pytest

from hemascope.evaluate.classification import classification_report, confusion_matrix


def test_hand_computed_example():
    # truth a a b b c c ; predicted a b b b c a
    r = classification_report([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], ["a", "b", "c"],
                              n_bootstrap=0)
    assert r.accuracy == pytest.approx(4 / 6)
    # precision a=1/2, b=2/3, c=1 ; recall a=1/2, b=1, c=1/2
    assert r.per_class["a"].precision == pytest.approx(0.5)
    assert r.per_class["b"].precision == pytest.approx(2 / 3)
    assert r.per_class["c"].recall == pytest.approx(0.5)
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert r.macro_f1 == pytest.approx(np.mean(f1))
    assert r.balanced_accuracy == pytest.approx((0.5 + 1 + 0.5) / 3)
    cm = r.confusion_normalized()
    assert cm.sum(axis=1) == pytest.approx([1, 1, 1])
    assert cm[0].tolist() == [0.5, 0.5, 0.0]


def test_absent_class_not_in_macro_but_listed():
    r = classification_report([0, 0, 1], [0, 0, 2], ["a", "b", "c"], n_bootstrap=0)
    assert r.per_class["c"].support == 0
    assert r.macro_recall == pytest.approx((1 + 0) / 2)


def test_json_keys_are_exactly_the_contract():
    d = classification_report([0, 1], [0, 1], ["a", "b"], n_bootstrap=50).to_dict()
    assert set(d) == {"accuracy", "balanced_accuracy", "macro_precision", "macro_recall",
                      "macro_f1", "per_class", "confusion_matrix", "classes", "n_images", "ci95"}


def test_bootstrap_interval_brackets_estimate():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, 400)
    p = np.where(rng.random(400) < 0.8, t, rng.integers(0, 4, 400))
    r = classification_report(t, p, list("abcd"), n_bootstrap=300)
    lo, hi = r.ci95["accuracy"]
    assert lo < r.accuracy < hi and hi - lo < 0.15


def test_bad_labels():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0]), np.array([0, 1]), 3)
