"""Self-training in few-shot adaptation: per-class pseudo-label selection and its use."""

import json

import numpy as np
import pytest

import hemascope.adapt.fewshot as fewshot
from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
from hemascope.adapt.pseudolabel import select_pseudo_labels
from hemascope.cli import main
from hemascope.io.image import write_image
from hemascope.models.artifact import load_classifier
from hemascope.synthetic import make_cell


def test_selection_takes_the_same_share_of_every_predicted_class():
    probs = np.array([[0.9, 0.1, 0.0],   # class 0, most sure
                      [0.6, 0.4, 0.0],   # class 0
                      [0.7, 0.3, 0.0],   # class 0
                      [0.8, 0.2, 0.0],   # class 0
                      [0.2, 0.5, 0.3]])  # class 1, unsure but alone
    idx, labels = select_pseudo_labels(probs, 0.5)
    assert idx.tolist() == [0, 3, 4] and labels.tolist() == [0, 0, 1]
    idx, labels = select_pseudo_labels(probs, 1.0)
    assert idx.tolist() == [0, 1, 2, 3, 4] and labels.tolist() == [0, 0, 0, 0, 1]
    idx, _ = select_pseudo_labels(probs, 0.01)  # ceil: every predicted class keeps one
    assert idx.tolist() == [0, 4]


def test_selection_ties_are_broken_by_index():
    probs = np.tile([[0.5, 0.3, 0.2]], (4, 1))
    assert select_pseudo_labels(probs, 0.5)[0].tolist() == [0, 1]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_selection_refuses_bad_fractions(fraction):
    with pytest.raises(ValueError, match="fraction"):
        select_pseudo_labels(np.ones((3, 2)) / 2, fraction)


def test_selection_refuses_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        select_pseudo_labels(np.ones(3), 0.5)
    idx, labels = select_pseudo_labels(np.zeros((0, 3)), 0.5)
    assert len(idx) == 0 and len(labels) == 0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    for folder, kind in (("neutrophil", "neutrophil"), ("lymphocyte", "lymphocyte")):
        for i in range(6):
            img = make_cell(kind, seed=700 + i, size=48).image.astype(float)
            write_image(root / folder / f"{i}.png",
                        np.clip(img * [0.9, 1.0, 1.1], 0, 255).astype(np.uint8))
    return root


def _spy(monkeypatch):
    calls = []
    real = fewshot.select_pseudo_labels

    def spy(probs, fraction):
        calls.append((probs.shape, fraction))
        return real(probs, fraction)

    monkeypatch.setattr(fewshot, "select_pseudo_labels", spy)
    return calls


def test_rounds_label_only_the_unlabelled_images(tiny_model, lab, monkeypatch):
    base = load_classifier(tiny_model)
    target = load_target(lab, base)
    calls = _spy(monkeypatch)
    cfg = FewShotConfig(shots=4, seed=0, epochs=2, threads=1, pseudo_rounds=2, pseudo_fraction=0.3)
    res = run_fewshot(target, base, cfg)
    n_test = len(target.labels) - 4
    # each round ranks the non-shot images only (the shots keep their true labels)
    assert calls == [((n_test, 2), 0.3)] * 2 and res.report.n_images == n_test


def test_large_folders_get_at_most_pseudo_per_shot_labels(tiny_model, lab, monkeypatch):
    base = load_classifier(tiny_model)
    target = load_target(lab, base)
    calls = _spy(monkeypatch)
    cfg = FewShotConfig(shots=2, seed=0, epochs=1, threads=1, pseudo_fraction=0.5,
                        pseudo_per_shot=1.0)
    run_fewshot(target, base, cfg)
    assert calls == [((10, 2), pytest.approx(0.2))]  # 2 shots x 1 of 10 unlabelled images


def test_self_training_is_deterministic_per_seed(tiny_model, lab):
    base = load_classifier(tiny_model)
    target = load_target(lab, base)
    cfg = FewShotConfig(shots=4, seed=0, epochs=2, threads=1, pseudo_rounds=1)
    shots = np.isin(np.arange(len(target.labels)), [0, 1, 6, 7])
    x, y, test_x = target.images[shots], target.labels[shots], target.images[~shots]
    _, a = fewshot.fit_and_predict(base, target.classes, cfg, x, y, test_x)
    _, b = fewshot.fit_and_predict(base, target.classes, cfg, x, y, test_x)
    assert np.array_equal(a, b) and a.shape == (len(test_x),)


def test_no_rounds_without_fine_tuning_or_when_off(tiny_model, lab, monkeypatch):
    base = load_classifier(tiny_model)
    target = load_target(lab, base)
    calls = _spy(monkeypatch)
    run_fewshot(target, base, FewShotConfig(shots=4, epochs=1, threads=1, pseudo_rounds=0))
    run_fewshot(target, base, FewShotConfig(shots=4, threads=1, mode="none"))
    run_fewshot(target, base, FewShotConfig(shots=4, epochs=1, threads=1, mode="scratch"))
    assert calls == []


def test_cli_records_self_training(tiny_model, lab, tmp_path, capsys):
    assert main(["fewshot", "--data", str(lab), "--shots", "4", "--out", str(tmp_path / "r"),
                 "--base", str(tiny_model), "--epochs", "1", "--threads", "1",
                 "--pseudo-rounds", "1", "--pseudo-fraction", "0.25"]) == 0
    cfg = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert cfg["training"]["fewshot"]["pseudo_rounds"] == 1
    (counts,) = cfg["training"]["pseudo_labels"]  # one round, per class, over 8 unlabelled
    assert set(counts) == {"lymphocyte", "neutrophil"} and 1 <= sum(counts.values()) <= 8
    assert "self-training round 1:" in capsys.readouterr().err
    assert cfg["training"]["fewshot"]["pseudo_fraction"] == 0.25
    with pytest.raises(SystemExit, match="2"):  # a usage error
        main(["fewshot", "--data", str(lab), "--shots", "4", "--out", str(tmp_path / "s"),
              "--base", str(tiny_model), "--pseudo-fraction", "0"])
    assert "pseudo-fraction" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
