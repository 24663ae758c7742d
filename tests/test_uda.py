import json

import numpy as np
import pytest
import torch

from hemascope.adapt.fewshot import load_target
from hemascope.adapt.uda import (UdaConfig, adapt_unsupervised, dann_lambda, grad_reverse,
                                 load_unlabelled, mmd2)
from hemascope.cli import main
from hemascope.models.artifact import load_classifier


def test_gradient_reversal_and_schedule():
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.5))
    assert dann_lambda(0.0) == 0.0 and 0.99 < dann_lambda(1.0) <= 1.0


def test_mmd_separates_shifted_distributions():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=g)
    b = torch.randn(64, 8, generator=g)
    assert mmd2(a, b) < mmd2(a, b + 3.0)
    assert abs(float(mmd2(a, a))) < 1e-5


@pytest.mark.parametrize("method", ["dann", "mmd"])
def test_adaptation_runs_on_shared_classes(tiny_model, synthetic_cells, shifted, method):
    base = load_classifier(tiny_model)
    res = adapt_unsupervised(load_target(synthetic_cells, base), load_target(shifted, base), base,
                             UdaConfig(method=method, epochs=2, steps_per_epoch=3, batch_size=8,
                                       threads=1))
    assert res.classes == ["lymphocyte", "neutrophil"]  # shared by both sides
    assert res.before.n_images == res.after.n_images == 12
    assert len(res.history) == 2 and all(np.isfinite(h["domain"]) for h in res.history)


def test_cli_adapt_labelled_and_unlabelled(tiny_model, synthetic_cells, shifted, tmp_path, capsys):
    assert main(["adapt", "dann", "--source", str(synthetic_cells), "--target", str(shifted),
                 "--out", str(tmp_path / "m"), "--base", str(tiny_model), "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "8", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target_accuracy_before"] is not None
    assert load_classifier(tmp_path / "m").classes == ["lymphocyte", "neutrophil"]
    flat = tmp_path / "flat"
    for i, f in enumerate(sorted(shifted.rglob("*.png"))):
        flat.mkdir(exist_ok=True)
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    base = load_classifier(tiny_model)
    assert len(load_unlabelled(flat, base).keys) == 12
    assert main(["adapt", "mmd", "--source", str(synthetic_cells), "--target", str(flat),
                 "--out", str(tmp_path / "m2"), "--base", str(tiny_model), "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "8", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target_accuracy_before"] is None and len(out["classes"]) == 4
