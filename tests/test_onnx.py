"""ONNX export of classifiers: float32 matches PyTorch, int8 stays close, and the folder
works wherever a classifier folder does."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from hemascope.classify import expand_paths, predict_arrays  # noqa: E402
from hemascope.cli import main  # noqa: E402
from hemascope.io.image import read_image  # noqa: E402
from hemascope.models.artifact import ModelError, load_classifier  # noqa: E402
from hemascope.models.onnx import OnnxClassifier, export_classifier  # noqa: E402


@pytest.fixture(scope="module")
def cells(synthetic_cells):
    return [read_image(f) for f in expand_paths([synthetic_cells])]


def test_float32_export_gives_the_pytorch_scores(tiny_model, cells, tmp_path):
    viewed = tmp_path / "viewed"  # a source with its own test-time views: the export runs 1
    shutil.copytree(tiny_model, viewed)
    src_cfg = json.loads((viewed / "config.json").read_text())
    (viewed / "config.json").write_text(json.dumps({**src_cfg, "views": 4}))
    assert "views" not in json.loads((export_classifier(viewed, tmp_path / "v") / "config.json").read_text())
    out = export_classifier(tiny_model, tmp_path / "f32")
    onnx = load_classifier(out)
    assert isinstance(onnx.model, OnnxClassifier)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["runtime"] == "onnx" and cfg["onnx"]["quantization"] is None
    source = json.loads((tiny_model / "config.json").read_text())["weights_sha256"]
    assert cfg["onnx"]["source_weights_sha256"] == source != cfg["weights_sha256"]
    assert (out / "split.json").is_file() and not (out / "model.safetensors").exists()
    torch_model = load_classifier(tiny_model)
    assert np.abs(predict_arrays(onnx, cells) - predict_arrays(torch_model, cells)).max() < 1e-4
    # TTA views (flipped, strided tensors) pass through the graph too
    assert np.abs(predict_arrays(onnx, cells, tta=2)
                  - predict_arrays(torch_model, cells, tta=2)).max() < 1e-4


def test_int8_export_stays_close_and_is_smaller(tiny_model, cells, tmp_path):
    out = export_classifier(tiny_model, tmp_path / "int8", calibration=cells[::4])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["onnx"]["quantization"].startswith("int8") and cfg["onnx"]["calibration_images"] == 16
    f32 = export_classifier(tiny_model, tmp_path / "f32")
    assert (out / "model.onnx").stat().st_size < (f32 / "model.onnx").stat().st_size
    ref = predict_arrays(load_classifier(tiny_model), cells).argmax(1)
    got = predict_arrays(load_classifier(out), cells).argmax(1)
    assert np.mean(ref == got) >= 0.9


def test_export_refuses_what_would_lose_or_break_something(tiny_model, cells, tmp_path):
    with pytest.raises(ModelError, match="another folder"):
        export_classifier(tiny_model, tiny_model)
    out = export_classifier(tiny_model, tmp_path / "a")
    with pytest.raises(ModelError, match="already holds a model"):
        export_classifier(tiny_model, out)
    with pytest.raises(ModelError, match="already an ONNX model"):
        export_classifier(out, tmp_path / "b")
    with pytest.raises(ModelError, match="calibration images"):
        export_classifier(tiny_model, tmp_path / "c", calibration=[])
    with pytest.raises(ModelError, match="scores only"):
        load_classifier(out).model.embed(None)
    from hemascope.models.artifact import init_from
    from hemascope.models.classifier import CellClassifier

    with pytest.raises(ModelError, match="ONNX export"):  # fine-tuning needs the source
        init_from(CellClassifier("tinycnn", 4), out)
    (out / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="cannot load"):
        load_classifier(out)


def test_cli_export_then_classify_and_evaluate(tiny_model, synthetic_cells, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["export", "classifier", "--model", str(tiny_model), "--out", str(out)]) == 0
    assert main(["export", "classifier", "--model", str(tiny_model), "--out", str(tmp_path / "x"),
                 "--int8"]) == 1  # no calibration images
    assert "--calibration" in capsys.readouterr().err
    assert main(["export", "classifier", "--model", str(tiny_model), "--out", str(tmp_path / "q"),
                 "--int8", "--calibration", str(synthetic_cells), "--calibration-images", "8",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["int8"] and summary["calibration_images"] == 8
    assert main(["classify", str(synthetic_cells / "monocyte"), "--model", str(tmp_path / "q"),
                 "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds["predictions"]) == 16
    assert main(["evaluate", "classifier", "--model", str(tmp_path / "q"), "--data",
                 str(synthetic_cells), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] >= 0.8


def test_what_needs_the_pytorch_model_refuses_an_export_clearly(tiny_model, synthetic_cells,
                                                                tmp_path, capsys):
    """Adaptation, few-shot fine-tuning, analyze --adapt and Grad-CAM say that an ONNX export
    only predicts (exit 1, no traceback, nothing written)."""
    out = export_classifier(tiny_model, tmp_path / "onnx")
    cell = str(synthetic_cells / "monocyte" / "00.png")
    cases = [
        (["adapt", "bn", "--target", str(synthetic_cells), "--base", str(out), "--out",
          str(tmp_path / "bn")], "adaptation", tmp_path / "bn"),
        (["adapt", "shot", "--target", str(synthetic_cells), "--base", str(out), "--out",
          str(tmp_path / "shot")], "adaptation", tmp_path / "shot"),
        (["fewshot", "--data", str(synthetic_cells), "--shots", "8", "--base", str(out), "--out",
          str(tmp_path / "fs")], "few-shot fine-tuning", tmp_path / "fs"),
        (["analyze", str(synthetic_cells), "--classifier", str(out), "--mode", "cells",
          "--adapt", "bn", "--out", str(tmp_path / "an")], "--adapt bn", tmp_path / "an"),
        (["explain", "gradcam", cell, "--model", str(out), "--out", str(tmp_path / "cam")],
         "Grad-CAM", tmp_path / "cam"),
    ]
    for argv, what, written in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "ONNX export (inference only)" in err and what in err and "Traceback" not in err
        assert not written.exists() or not any(written.rglob("*.safetensors")), argv
