import json

import numpy as np
import pytest

from hemascope.cli import main
from hemascope.evaluate.pr import pr_curve


def test_pr_curve_hand_example():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg)
    c = pr_curve(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0], bool))
    assert c.precision.tolist() == pytest.approx([1, 0.5, 2 / 3, 0.5])
    assert c.recall.tolist() == pytest.approx([0.5, 0.5, 1, 1])
    assert c.average_precision == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    perfect = pr_curve(np.array([0.9, 0.2]), np.array([1, 0], bool))
    assert perfect.average_precision == 1.0


def test_report_adaptation_cli(tiny_model, synthetic_cells, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    run = tmp_path / "fs"
    assert main(["fewshot", "--data", str(synthetic_cells), "--shots", "8", "--out", str(run),
                 "--base", str(tiny_model), "--epochs", "1", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["report", "adaptation", "--target", str(synthetic_cells), "--out",
                 str(tmp_path / "rep"), "--base", str(tiny_model), "--adapted", str(run / "model"),
                 "--source", str(synthetic_cells), "--max-per-set", "20", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["excluded_shots"] == 8 and summary["n_target_evaluated"] == 64 - 8
    for f in summary["files"].values():
        assert (tmp_path / "rep" / f.split("/")[-1]).stat().st_size > 1000
    assert set(summary["average_precision"]) == {"eosinophil", "lymphocyte", "monocyte", "neutrophil"}


def test_gallery_captions_wrap_to_the_column():
    from hemascope.report.plots import CAPTION_CHARS, wrap_caption

    cap = "monocyte\nnucleus_shape=unsegmented-indented\ntrue immature_granulocyte pred neutrophil"
    lines = wrap_caption(cap).splitlines()
    assert all(len(line) <= CAPTION_CHARS for line in lines)
    assert lines[0] == "monocyte" and len(lines) > 3  # long lines were broken, short kept
    assert "".join(lines).replace(" ", "") == cap.replace("\n", "").replace(" ", "")  # nothing lost
    assert wrap_caption("short") == "short" and wrap_caption("") == ""


def test_gallery_png_is_written(tmp_path):
    from hemascope.report.plots import error_gallery

    imgs = [np.full((32, 32, 3), 200, np.uint8)] * 3
    out = error_gallery(imgs, ["a\nnucleus_shape=unsegmented-indented"] * 3, tmp_path / "g.png",
                        columns=3, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
