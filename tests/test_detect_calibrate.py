"""Box-edge offsets: fitted from matched boxes, applied per class, after mirror views."""

import numpy as np
import pytest

from hemascope.detect.calibrate import apply_box_offsets, edge_residuals, fit_box_offsets
from hemascope.detect.ensemble import Detections

CLASSES = ["WBC", "RBC", "Platelets"]


def _field(rng, n=6):
    """Predicted boxes of class 1 (WBC) and 2 (RBC), and truths drawn wider / taller."""
    xy = rng.uniform(10, 300, (n, 2))
    wh = rng.uniform(30, 60, (n, 2))
    pred = np.concatenate([xy, xy + wh], 1)
    labels = np.array([1, 2] * (n // 2))
    truth = pred.copy()
    w, h = wh[:, 0], wh[:, 1]
    wbc = labels == 1  # the annotators draw white cells 10 % wider, 4 % lower
    truth[wbc, 0] -= 0.05 * w[wbc]
    truth[wbc, 2] += 0.05 * w[wbc]
    truth[wbc, 1] += 0.04 * h[wbc]
    truth[wbc, 3] += 0.04 * h[wbc]
    return Detections(pred, np.full(n, 0.9), labels), (truth, labels)


def test_fit_finds_the_annotators_habit_and_applying_it_recovers_their_boxes():
    rng = np.random.default_rng(0)
    fields = [_field(rng) for _ in range(10)]
    preds, truths = [p for p, _ in fields], [t for _, t in fields]
    off = fit_box_offsets(preds, truths, CLASSES)
    assert off["WBC"]["matches"] == 30 and off["RBC"]["matches"] == 30
    assert off["WBC"]["offsets"] == pytest.approx([-0.05, 0.04, 0.05, 0.04], abs=1e-3)
    assert off["RBC"]["offsets"] == pytest.approx([0, 0, 0, 0], abs=1e-9)
    assert "Platelets" not in off  # none matched: left as predicted
    moved = apply_box_offsets(preds[0], off, CLASSES, 400, 400)
    assert np.allclose(moved.boxes, truths[0][0], atol=1e-2)
    assert moved.scores is preds[0].scores and moved.labels is preds[0].labels
    # too few matches for a class: no offsets for it
    assert fit_box_offsets(preds[:2], truths[:2], CLASSES, min_matches=20) == {}
    with pytest.raises(ValueError, match="annotated images"):
        fit_box_offsets(preds, truths[:3], CLASSES)


def test_only_significant_edges_move_by_default():
    """Truth boxes that differ from the predictions by noise alone: the medians are not
    zero, but their bootstrap intervals hold zero, so no edge moves unless keep="all"."""
    rng = np.random.default_rng(1)
    preds, truths = [], []
    for _ in range(6):
        xy = rng.uniform(10, 300, (4, 2))
        pred = np.concatenate([xy, xy + 40], 1)
        preds.append(Detections(pred, np.full(4, 0.9), np.ones(4, int)))
        truths.append((pred + rng.normal(0, 2, pred.shape), np.ones(4, int)))
    sig = fit_box_offsets(preds, truths, CLASSES)["WBC"]
    every = fit_box_offsets(preds, truths, CLASSES, keep="all")["WBC"]
    assert sig["offsets"] == [0.0] * 4 and any(abs(v) > 1e-3 for v in every["offsets"])
    low, high = np.array(sig["interval"])
    assert (low < 0).all() and (high > 0).all()
    with pytest.raises(ValueError, match="keep must be"):
        fit_box_offsets(preds, truths, CLASSES, keep="some")


def test_unmatched_and_low_score_boxes_do_not_count():
    pred = Detections(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10.0]]),
                      np.array([0.9, 0.9, 0.1]), np.array([1, 1, 1]))
    truth = np.array([[1, 0, 11, 10.0]])
    r = edge_residuals(pred, truth, np.array([1]), 1)
    assert r.shape == (1, 4) and r[0] == pytest.approx([0.1, 0, 0.1, 0])
    assert edge_residuals(pred, truth, np.array([2]), 1).shape == (0, 4)


def test_apply_clips_to_the_image_and_never_turns_a_box_inside_out():
    d = Detections(np.array([[0.0, 0, 20, 20], [50, 50, 60, 60]]), np.ones(2), np.array([1, 2]))
    off = {"WBC": {"offsets": [-0.5, -0.5, 0.5, 0.5]}, "RBC": {"offsets": [0.8, 0, -0.8, 0]}}
    out = apply_box_offsets(d, off, CLASSES, 100, 100)
    assert out.boxes[0] == pytest.approx([0, 0, 30, 30])  # clipped at the image's edge
    assert np.array_equal(out.boxes[1], d.boxes[1])  # x0 58 > x1 52: kept as it was
    assert apply_box_offsets(Detections.empty(), off, CLASSES, 9, 9).boxes.shape[0] == 0


def test_offsets_apply_in_field_pixels_after_mirror_views(monkeypatch, tmp_path):
    """A left-edge offset moves the left edge in every view, flipped or not."""
    from hemascope.detect import predict

    def fake_field(det, image, *, scale="auto", score_thresh=None, balance=True):
        w = image.shape[1]
        flipped = image[0, 0, 0] == 1  # the marker pixel moved: this view is mirrored
        box = [w - 60, 10, w - 20, 50] if flipped else [20, 10, 60, 50]
        return Detections(np.array([box], float), np.array([0.9]), np.array([1]))

    monkeypatch.setattr(predict, "detect_field", fake_field)
    image = np.zeros((100, 200, 3), np.uint8)
    image[0, -1] = 1  # a marker at the top right: at the top left in a horizontal mirror
    config = {"classes": CLASSES, "box_offsets": {"WBC": {"offsets": [-0.25, 0, 0, 0]}}}
    det = predict.LoadedDetector(None, config, tmp_path)
    from hemascope.detect.tta import detect_views

    views = detect_views(det, image, views=2, balance=False)
    for d in views:
        assert d.boxes[0] == pytest.approx([10, 10, 60, 50])  # left edge out by 0.25 x 40
    plain = detect_views(det, image, views=2, balance=False, box_offsets=False)
    assert all(d.boxes[0] == pytest.approx([20, 10, 60, 50]) for d in plain)


def test_write_calibrated_copies_the_weights_and_records_the_offsets(tmp_path):
    import json

    from hemascope.detect.calibrate import write_calibrated
    from hemascope.detect.predict import LoadedDetector

    src = tmp_path / "det"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "config.json").write_text(json.dumps({"format": "hemascope-model/1", "task": "detection",
                                                 "classes": CLASSES}))
    (src / "MODEL_CARD.md").write_text("card of the uncalibrated model")
    det = LoadedDetector(None, {"classes": CLASSES}, src)
    off = {"WBC": {"offsets": [-0.02, 0.0, 0.04, 0.0], "matches": 62}}
    out = write_calibrated(det, off, tmp_path / "cal", source="lab fields")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["box_offsets"] == off and cfg["box_offsets_source"] == "lab fields"
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert not (out / "MODEL_CARD.md").exists()  # its card describes the other model
    assert "box_offsets" not in json.loads((src / "config.json").read_text())  # input untouched
    from hemascope.errors import HemascopeError

    with pytest.raises(HemascopeError, match="own folder"):
        write_calibrated(det, off, src, source="x")


def test_adapt_boxes_refuses_single_cell_labels(tmp_path, capsys):
    from hemascope.cli import main
    from hemascope.data import load_dataset
    from hemascope.errors import DatasetError
    from hemascope.evaluate.detector import load_fields
    from hemascope.io.image import write_image

    for cls in ("neutrophil", "lymphocyte"):
        write_image(tmp_path / "cells" / cls / "a.png", np.full((32, 32, 3), 200, np.uint8))
    assert main(["adapt", "boxes", "--data", str(tmp_path / "cells"), "--out",
                 str(tmp_path / "out")]) == 1
    assert "not an annotated detection set" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetError, match="not an annotated detection set"):
        load_fields(load_dataset(tmp_path / "cells"), CLASSES)
