import numpy as np
import pytest
import torch

from hemascope.cli import main
from hemascope.errors import HemascopeError
from hemascope.explain.gradcam import gradcam, overlay
from hemascope.models.classifier import CellClassifier


@pytest.mark.parametrize("arch", ["tinycnn", "resnet18"])
def test_heatmap_shape_range_and_target(arch):
    torch.manual_seed(0)
    m = CellClassifier(arch, 3)
    x = torch.randn(2, 3, 48, 48)
    cams = gradcam(m, x)
    assert len(cams) == 2
    for c in cams:
        assert c.heatmap.shape == (48, 48)
        assert 0 <= c.heatmap.min() and c.heatmap.max() <= 1
    assert [c.target for c in gradcam(m, x, target=2)] == [2, 2]
    assert m.training  # mode restored


def test_heatmap_follows_the_evidence():
    """A model that only looks at the top-left quadrant gets its heat there."""
    torch.manual_seed(0)
    m = CellClassifier("tinycnn", 2)
    x = torch.zeros(1, 3, 32, 32)
    x[..., :16, :16] = 3.0
    cam = gradcam(m, x, target=0)[0].heatmap
    assert cam.max() > 0
    assert cam[:16, :16].mean() > cam[16:, 16:].mean()


def test_vit_is_refused():
    m = CellClassifier("vit_tiny_patch16", 2, image_size=32, patch_size=16)
    with pytest.raises(HemascopeError, match="CNN"):
        gradcam(m, torch.randn(1, 3, 32, 32))


def test_overlay_and_cli(tiny_model, synthetic_cells, tmp_path, capsys):
    img = np.full((40, 40, 3), 128, np.uint8)
    out = overlay(img, np.ones((10, 10)))
    assert out.shape == img.shape and out.dtype == np.uint8 and (out != img).any()
    assert main(["explain", "gradcam", str(synthetic_cells / "lymphocyte" / "00.png"),
                 "--model", str(tiny_model), "--out", str(tmp_path / "gc"), "--json"]) == 0
    assert (tmp_path / "gc" / "00_gradcam.png").is_file()
    assert main(["explain", "gradcam", str(synthetic_cells / "lymphocyte" / "00.png"),
                 "--model", str(tiny_model), "--out", str(tmp_path), "--target", "platelet"]) == 1
    assert "not a class of the model" in capsys.readouterr().err
