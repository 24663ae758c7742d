"""AdaBN: batch-norm statistics re-estimated on a new lab, in few-shot runs and `adapt bn`."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from hemascope.adapt.batchnorm import encoder_batchnorms, freeze_batchnorm, reestimate_batchnorm
from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
from hemascope.cli import main
from hemascope.errors import HemascopeError
from hemascope.models.artifact import load_classifier
from hemascope.synthetic import make_cell
from hemascope.train.classifier import to_batch


def _norm(base):
    return (torch.tensor(base.config["mean"], dtype=torch.float32),
            torch.tensor(base.config["std"], dtype=torch.float32))


def _images(n, size, *, shift=(1.0, 1.0, 1.0), seed=0):
    cells = [make_cell(("lymphocyte", "neutrophil")[i % 2], seed=seed + i, size=size).image
             for i in range(n)]
    return np.clip(np.stack(cells).astype(float) * shift, 0, 255).astype(np.uint8)


def test_statistics_are_the_exact_average_over_the_target(tiny_model):
    base = load_classifier(tiny_model)
    model = base.model
    mean, std = _norm(base)
    size = int(base.config["image_size"])
    x = _images(37, size, shift=(0.7, 0.8, 1.2))  # 37: batches of 16, 16 and 5
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    first = encoder_batchnorms(model)[0]
    seen = []
    hook = first.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():  # what the first layer sees, for the direct computation
        model.encoder(to_batch(x, mean, std))
    hook.remove()
    expected = seen[0].mean(dim=(0, 2, 3))
    assert not torch.allclose(first.running_mean, expected, atol=1e-3)  # source stats differ
    assert reestimate_batchnorm(model, x, mean, std, batch_size=16) == 4
    assert torch.allclose(first.running_mean, expected, atol=1e-4)
    assert not model.training and first.momentum == 0.1  # eval mode, momentum restored
    for k, v in model.state_dict().items():
        if k in weights:
            assert torch.equal(v, weights[k]), k  # learned weights untouched
    # order does not matter: the statistics are an average, not a moving estimate
    shuffled = load_classifier(tiny_model).model
    reestimate_batchnorm(shuffled, x[::-1].copy(), mean, std, batch_size=16)
    assert torch.allclose(encoder_batchnorms(shuffled)[0].running_mean, expected, atol=1e-4)


def test_encoders_without_batchnorm_are_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    before = [p.clone() for p in model.parameters()]
    x = np.zeros((4, 8, 8, 3), np.uint8)
    assert reestimate_batchnorm(model, x, torch.zeros(3), torch.ones(3)) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_frozen_batchnorm_keeps_statistics_while_training(tiny_model):
    base = load_classifier(tiny_model)
    model = base.model
    mean, std = _norm(base)
    bn = encoder_batchnorms(model)[0]
    stats = bn.running_mean.clone()
    x = to_batch(_images(8, int(base.config["image_size"]), shift=(0.5, 0.5, 0.5)), mean, std)
    model.train()
    assert freeze_batchnorm(model) == 4
    assert model.head.training and not bn.training
    model(x).sum().backward()
    assert torch.equal(bn.running_mean, stats)
    model.train()  # without freezing, batch norm trains again
    assert bn.training
    with torch.no_grad():
        model(x)
    assert not torch.equal(bn.running_mean, stats)


def test_fewshot_batchnorm_target_vs_source(tiny_model, shifted, tmp_path):
    base = load_classifier(tiny_model)
    target = load_target(shifted, base)
    cfg = FewShotConfig(shots=4, seed=0, epochs=2, batch_size=4, stain="none", threads=1,
                        shot_epochs=0)  # SHOT re-estimates them itself
    adapted = run_fewshot(target, base, cfg, run_dir=tmp_path / "t")
    kept = run_fewshot(target, base, FewShotConfig(**{**cfg.to_dict(), "batchnorm": "source",
                                                      "augment": cfg.augment}),
                       run_dir=tmp_path / "s")
    assert adapted.report.n_images == kept.report.n_images == 8
    bn_t = encoder_batchnorms(load_classifier(tmp_path / "t" / "model").model)[0].running_mean
    bn_s = encoder_batchnorms(load_classifier(tmp_path / "s" / "model").model)[0].running_mean
    # target statistics: the average over all 12 target images, kept fixed while fine-tuning
    reference = load_classifier(tiny_model).model
    reestimate_batchnorm(reference, target.images, *_norm(base))
    assert torch.allclose(bn_t, encoder_batchnorms(reference)[0].running_mean, atol=1e-4)
    assert not torch.allclose(bn_s, bn_t, atol=1e-3)
    cfg_json = json.loads((tmp_path / "t" / "model" / "config.json").read_text())
    assert cfg_json["training"]["fewshot"]["batchnorm"] == "target"
    assert cfg_json["stain_reference"] is None  # no colour transform to repeat at inference
    with pytest.raises(HemascopeError, match="batchnorm"):
        run_fewshot(target, base, FewShotConfig(shots=4, batchnorm="both", augment=cfg.augment))


def test_cli_adapt_bn(tiny_model, shifted, tmp_path, capsys):
    assert main(["adapt", "bn", "--target", str(shifted), "--out", str(tmp_path / "m"),
                 "--base", str(tiny_model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["lymphocyte", "neutrophil"]
    assert out["target_accuracy_before"] is not None and out["target_accuracy_after"] is not None
    adapted = load_classifier(tmp_path / "m")
    assert adapted.config["training"]["adaptation"] == "AdaBN"
    assert adapted.config["training"]["source"] is None
    base = load_classifier(tiny_model)
    assert not torch.allclose(encoder_batchnorms(adapted.model)[0].running_mean,
                              encoder_batchnorms(base.model)[0].running_mean, atol=1e-3)
    # an unlabelled flat folder keeps every class of the base model
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(shifted.rglob("*.png"))):
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    (flat / "broken.png").write_bytes(b"not an image")
    assert main(["adapt", "bn", "--target", str(flat), "--out", str(tmp_path / "m2"),
                 "--base", str(tiny_model), "--json"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err
    out = json.loads(captured.out)
    assert out["target_accuracy_before"] is None and len(out["classes"]) == 4
    assert main(["adapt", "bn", "--target", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "m3"), "--base", str(tiny_model)]) != 0
    assert not (tmp_path / "m3").exists()
