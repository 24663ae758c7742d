"""Label audit: confident learning on cross-validated probabilities (hemascope.adapt.audit)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hemascope.adapt.audit import (audit_labels, class_thresholds, find_label_issues,
                                   out_of_fold_probs, stratified_folds)
from hemascope.cli import main
from hemascope.errors import DatasetError


def _clusters(n_per: int, k: int, *, seed: int = 0, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 16)) * 3
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(scale=spread, size=(len(y), 16)), y


def test_folds_spread_every_class():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    fold = stratified_folds(y, 5, seed=1)
    for c in (0, 1, 2):
        per_fold = np.bincount(fold[y == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1  # dealt out in turn
    assert np.bincount(fold, minlength=5).max() - np.bincount(fold, minlength=5).min() <= 1
    assert not np.array_equal(fold, stratified_folds(y, 5, seed=2))


def test_confident_rule_against_argmax():
    # class 0's own cells average p0 = 0.6; class 1's average p1 = 0.9
    probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.45, 0.55],  # labelled 0
                      [0.1, 0.9], [0.1, 0.9], [0.55, 0.45]])  # labelled 1
    y = np.array([0, 0, 0, 1, 1, 1])
    assert class_thresholds(probs, y) == pytest.approx([(0.7 + 0.5 + 0.45) / 3, 0.75])
    suspect, suggested, _ = find_label_issues(probs, y, method="argmax")
    assert suspect.tolist() == [False, False, True, False, False, True]
    # confident: row 2's 0.55 for class 1 is below class 1's threshold (0.75), so it stays;
    # row 5's 0.55 for class 0 reaches class 0's (0.55), and its 0.45 misses class 1's
    suspect, suggested, _ = find_label_issues(probs, y, method="confident")
    assert suspect.tolist() == [False, False, False, False, False, True]
    assert suggested.tolist() == [-1, -1, -1, -1, -1, 0]
    with pytest.raises(ValueError, match="method"):
        find_label_issues(probs, y, method="vote")


def test_finds_flipped_labels_among_separable_cells():
    x, y = _clusters(20, 4, seed=3)
    noisy = y.copy()
    flipped = [3, 25, 47, 70]
    for i in flipped:
        noisy[i] = (y[i] + 1) % 4
    audit = audit_labels(x, noisy, ["a", "b", "c", "d"], seed=0)
    assert sorted(np.flatnonzero(audit.suspect).tolist()) == flipped
    assert audit.suggested[flipped].tolist() == y[flipped].tolist()
    assert audit.order()[:4].tolist() == sorted(flipped, key=lambda i: audit.label_probability()[i])
    assert sum(audit.confusions().values()) == 4
    # out-of-fold: a cell's probability never comes from a model that saw its label
    probs = out_of_fold_probs(x, noisy, 4)
    assert probs.shape == (80, 4) and np.allclose(probs.sum(1), 1)
    assert (probs[flipped, noisy[flipped]] < 0.5).all()


def test_small_classes_are_left_out_and_never_suggested():
    x, y = _clusters(10, 3, seed=5)
    x = np.vstack([x, x[:1] + 0.01])  # a lone cell of a fourth class, looking like class 0
    y = np.append(y, 3)
    audit = audit_labels(x, y, ["a", "b", "c", "lone"])
    assert audit.audited_classes == [0, 1, 2]
    assert not audit.audited[-1] and not audit.suspect[-1] and audit.order()[-1] == 30
    assert 3 not in audit.suggested
    assert np.isnan(audit.label_probability()[-1])
    with pytest.raises(DatasetError, match="at least two classes"):
        audit_labels(x[:11], np.array([0] * 10 + [1]), ["a", "b"])


def test_audit_cli_flags_misfiled_cells(tiny_model, tmp_path, capsys):
    from hemascope.io.image import write_image
    from hemascope.synthetic import make_cell

    lab = tmp_path / "lab"
    for kind in ("lymphocyte", "eosinophil", "neutrophil"):
        for i in range(8):
            write_image(lab / kind / f"{i}.png", make_cell(kind, seed=400 + i, size=48).image)
    misfiled = ["neutrophil/lymph_a.png", "neutrophil/lymph_b.png"]
    for j, name in enumerate(misfiled):
        write_image(lab / name, make_cell("lymphocyte", seed=480 + j, size=48).image)
    (lab / "eosinophil" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "audit.csv"
    tiny = ["--base", str(tiny_model), "--features", "classifier", "--views", "1"]
    assert main(["audit", "--data", str(lab), "--out", str(out), *tiny,
                 "--json", str(tmp_path / "summary.json")]) == 0
    assert "broken.png" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 26
    suspects = [r for r in rows if r["verdict"] == "suspect"]
    assert suspects and rows[:len(suspects)] == suspects  # suspects first
    assert {r["path"] for r in rows[:2]} == set(misfiled)  # the least probable labels
    assert all(r["suggested"] == "lymphocyte" for r in suspects if r["path"] in misfiled)
    # the argmax rule flags both (and may flag more)
    assert main(["audit", "--data", str(lab), "--out", str(tmp_path / "argmax.csv"), *tiny,
                 "--rule", "argmax"]) == 0
    flagged = {r["path"] for r in csv.DictReader((tmp_path / "argmax.csv").open())
               if r["verdict"] == "suspect"}
    assert flagged >= set(misfiled)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["suspects"] == len(suspects) and summary["unreadable"] == 1
    # an output may not overwrite its input; a set with one class cannot be audited
    assert main(["audit", "--data", str(lab), "--out", str(lab / "neutrophil" / "0.png"),
                 *tiny]) != 0
    one = tmp_path / "one"
    for i in range(3):
        write_image(one / "lymphocyte" / f"{i}.png", make_cell("lymphocyte", seed=i, size=48).image)
    assert main(["audit", "--data", str(one), "--out", str(tmp_path / "o.csv"), *tiny]) == 1
    assert "at least two classes" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_default_audit_finds_flips_in_cellavision(shared_data):
    """The shipped models' audit (the fast features; the default adds minutes of SHOT) finds
    most of 10 labels flipped among CellaVision's 100 (benchmarks/audit_labels.py measures
    it over many seeds)."""
    from hemascope.adapt.audit import audit_features
    from hemascope.adapt.fewshot import load_target
    from hemascope.models.artifact import load_classifier

    base = load_classifier("default")
    target = load_target(shared_data / "cellavision", base)
    x, _ = audit_features(base, target.images, features="classifier+attributes")
    rng = np.random.default_rng(7)
    flipped = rng.choice(len(target.labels), size=10, replace=False)
    noisy = target.labels.copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 5, size=10)) % 5
    audit = audit_labels(x, noisy, target.classes)
    found = audit.suspect[flipped].sum()
    assert found >= 6, found
    assert found / audit.suspect.sum() >= 0.3
    hits = flipped[audit.suspect[flipped]]
    assert (audit.suggested[hits] == target.labels[hits]).mean() >= 0.8  # their true class


def test_attribute_labels_audited_per_attribute():
    from hemascope.adapt.audit import audit_attribute_labels

    values = {"size": ["big", "small"], "vacuole": ["no", "yes"]}
    probs = {"size": np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.95, 0.05]]),
             "vacuole": np.array([[0.7, 0.3], [0.5, 0.5], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])}
    truth = {"size": ["big", "big", "small", "small", "small"],  # the last looks big
             "vacuole": ["no", "", "no", "yes", "no"]}
    audits = audit_attribute_labels(probs, truth, values)
    assert np.flatnonzero(audits["size"].suspect).tolist() == [4]
    assert audits["size"].suggested[4] == 0
    v = audits["vacuole"]
    # no value given: not audited; the last is below both thresholds, so it keeps its label
    assert not v.audited[1] and not v.suspect.any()
    assert v.thresholds.tolist() == pytest.approx([0.7, 0.7])
    assert np.isnan(v.label_probability()[1])


def test_shot_features_and_their_fallback(tiny_model, synthetic_cells):
    from hemascope.adapt.audit import audit_features
    from hemascope.adapt.fewshot import load_target
    from hemascope.models.artifact import load_classifier

    base = load_classifier(tiny_model)
    target = load_target(synthetic_cells, base)
    x, used = audit_features(base, target.images, features="shot+attributes", views=1,
                             classes=target.classes)
    assert used == "shot+attributes" and len(x) == len(target.images) and np.isfinite(x).all()
    said = []
    x2, used = audit_features(base, target.images, features="shot+attributes", views=1,
                              classes=[*target.classes, "basophil"], log=said.append)
    assert used == "classifier+attributes" and "SHOT" in said[0]
    assert not np.allclose(x, x2)
    with pytest.raises(ValueError, match="features"):
        audit_features(base, target.images, features="pixels")
