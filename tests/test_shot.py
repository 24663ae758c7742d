import json

import numpy as np
import pytest
import torch

from hemascope.adapt.fewshot import TargetData, load_target
from hemascope.adapt.shot import (ShotConfig, adapt_source_free, centroid_pseudo_labels,
                                  information_maximization, shot_prior)
from hemascope.cli import main
from hemascope.errors import DatasetError, HemascopeError
from hemascope.models.artifact import load_classifier

FAST = dict(epochs=2, batch_size=4, threads=1)


def test_information_maximization_prefers_confident_and_diverse():
    eye = torch.eye(3) * 10
    diverse = eye.repeat(4, 1)  # confident, every class used
    collapsed = eye[[0]].repeat(12, 1)  # confident, one class only
    unsure = torch.zeros(12, 3)  # uniform predictions
    assert information_maximization(diverse) < information_maximization(collapsed)
    assert information_maximization(diverse) < information_maximization(unsure)
    # without the diversity term collapse costs nothing
    assert information_maximization(collapsed, 0.0) < 1e-3


def test_diversity_prior_from_the_shots_rewards_the_labs_own_mix():
    eye = torch.eye(3) * 10
    balanced = eye.repeat(4, 1)  # 4 / 4 / 4
    skewed = eye[[0] * 8 + [1] * 3 + [2]]  # 8 / 3 / 1
    prior = shot_prior(np.array([0, 0, 0, 0, 0, 0, 1, 1, 2]), 3)
    assert prior.sum().item() == pytest.approx(1.0) and prior.argmax() == 0 and prior.min() > 0
    assert shot_prior(np.array([0, 0]), 3)[2] > 0  # a class with no shot keeps some weight
    # uniform prior: the paper's term up to a constant, so it prefers the balanced mix
    uniform = torch.full((3,), 1 / 3)
    for logits in (balanced, skewed):
        assert (information_maximization(logits, prior=uniform) - information_maximization(logits)
                ).item() == pytest.approx(np.log(3), abs=1e-4)
    assert information_maximization(balanced) < information_maximization(skewed)
    # the shots' shares: the skewed mix that matches them is preferred
    assert information_maximization(skewed, prior=prior) < information_maximization(balanced, prior=prior)
    with pytest.raises(HemascopeError, match="--prior"):
        ShotConfig(prior="data")


def test_centroid_labels_follow_clusters_not_the_head():
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([1.0, 0.0]) + 0.1 * torch.randn(10, 2, generator=g)
    b = torch.tensor([0.0, 1.0]) + 0.1 * torch.randn(10, 2, generator=g)
    feats = torch.cat([a, b])
    probs = torch.tensor([[0.9, 0.1, 0.0]] * 10 + [[0.1, 0.9, 0.0]] * 10)
    probs[:3] = torch.tensor([0.4, 0.6, 0.0])  # the head gets three of cluster a wrong
    labels = centroid_pseudo_labels(feats, probs)
    assert labels.tolist() == [0] * 10 + [1] * 10
    assert labels.max() < 2  # class 2 has no images and takes none


def test_labelled_anchors_pull_centroids():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    probs = torch.tensor([[0.6, 0.4]] * 4)  # the head calls everything class 0
    assert centroid_pseudo_labels(feats, probs, refinements=0).tolist() == [0, 0, 0, 0]
    anchors = (torch.tensor([[0.0, 1.0], [0.05, 1.0]]), torch.tensor([1, 1]))
    assert centroid_pseudo_labels(feats, probs, anchors=anchors).tolist() == [0, 0, 1, 1]


def test_shots_make_source_free_adaptation_semi_supervised(tiny_model, shifted):
    base = load_classifier(tiny_model)
    target = load_target(shifted, base)
    plain = adapt_source_free(target, base, ShotConfig(**FAST))
    shots = (target.images[:4], np.array([0, 1, 0, 1]))
    semi = adapt_source_free(target, base, ShotConfig(**FAST), shots=shots)
    assert not torch.equal(plain.model.embedding[0].weight, semi.model.embedding[0].weight)
    empty = adapt_source_free(target, base, ShotConfig(**FAST),
                              shots=(target.images[:0], np.zeros(0, np.int64)))
    assert torch.equal(plain.model.embedding[0].weight, empty.model.embedding[0].weight)
    one = adapt_source_free(target, base, ShotConfig(**FAST), shots=(target.images[:1], np.array([0])))
    assert not torch.equal(plain.model.embedding[0].weight, one.model.embedding[0].weight)  # one shot trains


def test_source_free_adaptation_keeps_head_and_is_seeded(tiny_model, shifted):
    base = load_classifier(tiny_model)
    target = load_target(shifted, base)
    res = adapt_source_free(target, base, ShotConfig(**FAST))
    assert res.classes == ["lymphocyte", "neutrophil"]
    assert res.before.n_images == res.after.n_images == 12
    assert len(res.history) == 2 and all(np.isfinite(h["infomax"]) for h in res.history)
    assert all("target_accuracy" in h for h in res.history)  # 12 labelled images: cheap to track
    idx = [base.classes.index(c) for c in res.classes]
    assert torch.equal(res.model.head[-1].weight, base.model.head[-1].weight[idx])  # hypothesis kept
    assert not torch.equal(res.model.embedding[0].weight, base.model.embedding[0].weight)
    again = adapt_source_free(target, base, ShotConfig(**FAST))
    for p, q in zip(res.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)


def test_large_labelled_target_is_scored_once_not_per_epoch(tiny_model, shifted):
    base = load_classifier(tiny_model)
    res = adapt_source_free(load_target(shifted, base), base, ShotConfig(**FAST, max_images=8))
    assert all("target_accuracy" not in h for h in res.history)
    assert res.after.n_images == 12


def test_source_free_adaptation_rejects_bad_input(tiny_model, shifted):
    base = load_classifier(tiny_model)
    target = load_target(shifted, base)
    one = TargetData(target.classes, target.images[:1], target.labels[:1], target.keys[:1], {})
    with pytest.raises(DatasetError, match="at least 2"):
        adapt_source_free(one, base, ShotConfig(**FAST))
    with pytest.raises(HemascopeError, match="platelet"):
        adapt_source_free(target, base, ShotConfig(**FAST), classes=["platelet", "lymphocyte"])
    with pytest.raises(HemascopeError, match="epochs"):
        adapt_source_free(target, base, ShotConfig(epochs=0))


def test_cli_adapt_shot(tiny_model, shifted, tmp_path, capsys):
    args = ["--base", str(tiny_model), "--epochs", "1", "--batch-size", "4", "--threads", "1",
            "--json"]
    assert main(["adapt", "shot", "--target", str(shifted), "--out", str(tmp_path / "m"), *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target_accuracy_before"] is not None and out["target_accuracy_after"] is not None
    model = load_classifier(tmp_path / "m")
    assert model.classes == ["lymphocyte", "neutrophil"]
    assert model.config["training"]["adaptation"] == "SHOT"
    assert model.config["training"]["config"]["method"] == "shot"
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(shifted.rglob("*.png"))):
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    assert main(["adapt", "shot", "--target", str(flat), "--out", str(tmp_path / "m2"),
                 "--classes", "Neutrophil", "LYMPHOCYTES", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target_accuracy_before"] is None
    assert out["classes"] == ["lymphocyte", "neutrophil"]
    assert main(["adapt", "shot", "--target", str(flat), "--out", str(tmp_path / "m3"),
                 "--classes", "platelet", "neutrophil", *args]) != 0
    assert "platelet" in capsys.readouterr().err
    assert not (tmp_path / "m3").exists()
