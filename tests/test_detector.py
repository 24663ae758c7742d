"""Detectors: registry, field augmentation, tiling, COCO metrics, training, CLI."""

import json

import numpy as np
import pytest
import torch

from hemascope.cli import main
from hemascope.detect.data import (FieldAugment, augment_field, class_mapping, mosaic,
                                   prepare_fields)
from hemascope.detect.ensemble import Detections
from hemascope.detect.registry import build_detector, detector_names
from hemascope.detect.tiling import merge_tiles, tile_grid
from hemascope.errors import DatasetError
from hemascope.evaluate.detection import GroundTruth, best_count_thresholds, detection_report
from hemascope.io.annotations import DetectionSet, ImageAnnotation, Instance
from hemascope.io.image import read_image, write_image
from hemascope.io.voc import write_voc
from hemascope.models.artifact import ModelError
from hemascope.synthetic import make_smear

CLASSES = ["WBC", "RBC", "Platelets"]


@pytest.fixture(scope="module")
def voc_smears(tmp_path_factory):
    """Ten synthetic fields in VOC layout: 6 train, 2 val, 2 test."""
    root = tmp_path_factory.mktemp("voc")
    images = []
    for seed in range(10):
        f = make_smear(6, seed=seed, size=(96, 128), n_wbc=1, n_platelets=1)
        a = f.annotation
        write_image(root / "JPEGImages" / a.file_name, f.image)
        split = "train" if seed < 6 else "val" if seed < 8 else "test"
        images.append(ImageAnnotation(a.file_name, a.width, a.height, a.instances, split=split))
    write_voc(images, root)
    return root


@pytest.mark.parametrize("name", detector_names())
def test_every_detector_trains_and_predicts(name):
    torch.manual_seed(0)
    model = build_detector(name, 3, min_size=128, max_size=160, fpn_channels=64)
    target = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0], [60.0, 30.0, 90.0, 70.0]]),
              "labels": torch.tensor([1, 2])}
    if "mask" in name:
        m = torch.zeros(2, 128, 160, dtype=torch.uint8)
        m[0, 10:40, 10:40] = 1
        m[1, 30:70, 60:90] = 1
        target["masks"] = m
    model.train()
    losses = model([torch.rand(3, 128, 160)] * 2, [target] * 2)
    loss = sum(losses.values())
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 128, 160)])[0]
    assert set(out) >= {"boxes", "scores", "labels"}


def test_registry_rejects_unknown_and_bad_options():
    with pytest.raises(KeyError, match="unknown detector"):
        build_detector("yolo9000", 3)
    with pytest.raises(ValueError):
        build_detector("fcos_resnet18", 3, fpn_channels=48)
    with pytest.raises(ValueError):
        build_detector("fcos_resnet18", 0)


def _painted(h=60, w=80, box=(10, 5, 30, 25)):
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 200
    return img, np.array([box], np.float32), np.array([2])


def _bbox_of_paint(img):
    ys, xs = np.nonzero(img[..., 0] > 100)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("seed", range(12))
def test_geometric_augmentation_moves_boxes_with_pixels(seed):
    img, b, lab = _painted()
    cfg = FieldAugment(zoom_p=0.0, hsv_p=0.0, paste_p=0.0, interference_p=0.0)
    out, ob, ol = augment_field(img, b, lab, rng=np.random.default_rng(seed), cfg=cfg)
    assert ol.tolist() == [2]
    np.testing.assert_allclose(ob[0], _bbox_of_paint(out))
    assert img[5:25, 10:30].min() == 200  # input untouched


def test_augmentation_keeps_boxes_inside_and_labels_aligned():
    f = make_smear(10, seed=3, size=(120, 160))
    b = np.array([i.box for i in f.annotation.instances], np.float32)
    lab = np.array([CLASSES.index(i.label) + 1 for i in f.annotation.instances])
    rng = np.random.default_rng(0)
    for _ in range(30):
        out, ob, ol = augment_field(f.image, b, lab, rng=rng)
        h, w = out.shape[:2]
        assert len(ob) == len(ol) and out.dtype == np.uint8
        assert (ob >= -1e-3).all() and (ob[:, 2] <= w + 1e-3).all() and (ob[:, 3] <= h + 1e-3).all()
        assert ((ob[:, 2:] - ob[:, :2]) > 0).all()


def test_mosaic_halves_boxes_into_quadrants():
    img, b, lab = _painted(60, 80, (0, 0, 20, 20))
    canvas, mb, ml = mosaic([(img, b, lab)] * 4, size=(60, 80))
    assert canvas.shape == (60, 80, 3) and len(mb) == 4
    np.testing.assert_allclose(mb[0], [0, 0, 10, 10])
    np.testing.assert_allclose(mb[3], [40, 30, 50, 40])


def test_class_mapping_through_taxonomy_and_unknown_labels():
    inst = (Instance("neutrophil", (0, 0, 10, 10)), Instance("erythrocyte", (5, 5, 20, 20)))
    ds = DetectionSet([ImageAnnotation("a.png", 30, 30, inst)], ["neutrophil", "erythrocyte"], ".")
    classes, mapping = class_mapping(ds)
    assert classes == ["WBC", "RBC"] and mapping["neutrophil"] == "WBC"
    _, mapping = class_mapping(ds, classes=CLASSES)
    assert mapping == {"neutrophil": "WBC", "erythrocyte": "RBC"}
    bad = DetectionSet([ImageAnnotation("a.png", 30, 30, (Instance("blob", (0, 0, 9, 9)),))],
                       ["blob"], ".")
    with pytest.raises(DatasetError, match="'blob'"):
        class_mapping(bad)
    assert class_mapping(bad, vocabulary=None)[0] == ["blob"]


def test_prepare_fields_reports_unreadable_images(tmp_path):
    f = make_smear(4, seed=1, size=(64, 80))
    write_image(tmp_path / "ok.png", f.image)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    anns = [ImageAnnotation("ok.png", 80, 64, f.annotation.instances),
            ImageAnnotation("broken.png", 80, 64, f.annotation.instances)]
    ds = DetectionSet(anns, CLASSES, str(tmp_path))
    fs = prepare_fields(ds, CLASSES, {c: c for c in CLASSES})
    assert [x.name for x in fs.fields] == ["ok.png"]
    assert any(p.path == "broken.png" and p.kind == "unreadable_image" for p in fs.problems)


def test_tile_grid_covers_and_overlaps():
    tiles = tile_grid(1000, 1500, tile=640, overlap=192)
    cover = np.zeros((1000, 1500), bool)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 <= 640 and y1 - y0 <= 640
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    assert tile_grid(300, 400, tile=640, overlap=192) == [(0, 0, 400, 300)]
    with pytest.raises(ValueError):
        tile_grid(10, 10, tile=5, overlap=5)


def test_merge_tiles_drops_cut_boxes_and_duplicates():
    tiles = [(0, 0, 100, 100), (60, 0, 160, 100)]
    whole = np.array([[70.0, 10, 90, 30]])  # inside both tiles
    cut = np.array([[80.0, 50, 100, 70]])  # cut by the right side of tile 0
    a = Detections(np.concatenate([whole, cut]), np.array([0.9, 0.8]), np.array([1, 1]))
    b = Detections(np.array([[10.0, 10, 30, 30], [20.0, 50, 50, 70]]), np.array([0.85, 0.7]),
                   np.array([1, 1]))  # tile 1 coordinates
    m = merge_tiles([a, b], tiles, height=100, width=160)
    got = sorted(map(tuple, np.round(m.boxes).astype(int).tolist()))
    assert got == [(70, 10, 90, 30), (80, 50, 110, 70)]


def test_detection_report_perfect_partial_and_empty():
    g = [GroundTruth(np.array([[0, 0, 10, 10], [20, 20, 40, 40.0]]), np.array([1, 2]))] * 3
    perfect = [Detections(g[0].boxes, np.array([0.9, 0.8]), np.array([1, 2]))] * 3
    r = detection_report(g, perfect, ["a", "b"])
    assert r.map50_95 == pytest.approx(1.0) and r.count_mae == {"a": 0.0, "b": 0.0}
    shifted = [Detections(g[0].boxes + [0, 0, 2.5, 2.5], np.array([0.9, 0.8]), np.array([1, 2]))] * 3
    r = detection_report(g, shifted, ["a", "b"])
    assert r.map50 == pytest.approx(1.0) and r.map50_95 < 0.9
    r = detection_report(g, [Detections.empty()] * 3, ["a", "b"])
    assert r.map50 == 0.0 and r.count_mae == {"a": 1.0, "b": 1.0}
    assert set(r.to_dict()) >= {"map50_95", "map50", "map75", "mar100", "per_class", "count_mae"}
    low = [Detections(g[0].boxes, np.array([0.3, 0.3]), np.array([1, 2]))] * 3
    thr = best_count_thresholds(g, low, ["a", "b"])
    assert thr["a"] <= 0.3 and thr["b"] <= 0.3
    with pytest.raises(ValueError):
        detection_report(g, perfect[:1], ["a", "b"])


@pytest.mark.slow
def test_train_evaluate_detect_round_trip(voc_smears, tmp_path, capsys):
    out = tmp_path / "det"
    code = main(["train", "detector", "--data", str(voc_smears), "--out", str(out), "--epochs", "2",
                 "--min-sizes", "96", "--test-size", "96", "--max-size", "128",
                 "--fpn-channels", "64", "--batch-size", "3", "--json", str(tmp_path / "t.json")])
    assert code == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"] == "detection" and cfg["classes"] == CLASSES
    assert cfg["size_reference"]["class"] == "RBC" and cfg["metrics"]["test"]["n_images"] == 2
    assert not list(out.glob("*.pkl"))
    code = main(["evaluate", "detector", "--data", str(voc_smears), "--split", "test",
                 "--model", str(out), "--model", str(out), "--json", str(tmp_path / "e.json")])
    assert code == 0
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["n_images"] == 2 and set(rep["per_class"]) == set(CLASSES)
    assert 0.0 <= rep["map50"] <= 1.0 and len(rep["models"]) == 2
    assert rep["views"] == 1 and rep["fusion"] == "wbf"
    code = main(["evaluate", "detector", "--data", str(voc_smears), "--split", "test",
                 "--model", str(out), "--tta", "4", "--fusion", "wbf", "--json", str(tmp_path / "t.json")])
    assert code == 0
    tta = json.loads((tmp_path / "t.json").read_text())
    assert tta["views"] == 4 and tta["fusion"] == "wbf" and 0.0 <= tta["map50"] <= 1.0
    # resume finishes immediately: every epoch is done
    code = main(["train", "detector", "--data", str(voc_smears), "--out", str(out), "--epochs", "2",
                 "--min-sizes", "96", "--test-size", "96", "--max-size", "128",
                 "--fpn-channels", "64", "--batch-size", "3", "--resume"])
    assert code == 0
    imgs = voc_smears / "JPEGImages"
    (tmp_path / "bad.png").write_bytes(b"garbage")
    code = main(["detect", str(imgs), str(tmp_path / "bad.png"), "--model", str(out),
                 "--out", str(tmp_path / "p.json"), "--score-thresh", "0.0"])
    assert code == 0
    preds = json.loads((tmp_path / "p.json").read_text())
    assert isinstance(preds, list)
    code = main(["detect", str(imgs), "--model", str(out), "--out", str(tmp_path / "p2.json"),
                 "--tta", "2", "--fusion", "wbf", "--score-thresh", "0.0"])
    assert code == 0 and isinstance(json.loads((tmp_path / "p2.json").read_text()), list)
    assert all({"file_name", "category_name", "bbox", "score"} <= set(p) for p in preds)
    # a grayscale field is detected all the same, with a warning naming why
    gray = tmp_path / "gray.png"
    write_image(gray, read_image(next(imgs.iterdir())).mean(axis=2).astype(np.uint8))
    capsys.readouterr()
    assert main(["detect", str(gray), "--model", str(out), "--out", str(tmp_path / "g.json")]) == 0
    out_err = capsys.readouterr()
    assert "WARNING grayscale" in out_err.out and "1 image(s) the detector may not read" in out_err.err
    # outputs never overwrite inputs
    victim = next(imgs.iterdir())
    assert main(["detect", str(victim), "--model", str(out), "--out", str(victim)]) == 1


def test_augmentation_workers_give_the_same_run(voc_smears, tmp_path):
    """Each batch carries its own seed: batches prepared by worker processes ahead of the
    training loop are the ones the loop would have made itself."""
    losses = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        assert main(["train", "detector", "--data", str(voc_smears), "--out", str(out),
                     "--epochs", "2", "--min-sizes", "96", "--test-size", "96", "--max-size", "128",
                     "--fpn-channels", "64", "--batch-size", "3", "--threads", "1",
                     "--workers", str(workers), "--device", "cpu"]) == 0
        rows = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
        losses[workers] = [r["loss"] for r in rows]
    assert len(losses[0]) == 2
    assert losses[0] == pytest.approx(losses[2], rel=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_detector_asks_for_a_missing_gpu_and_writes_nothing(voc_smears, tmp_path, capsys):
    out = tmp_path / "gpu"
    assert main(["train", "detector", "--data", str(voc_smears), "--out", str(out),
                 "--device", "cuda", "--epochs", "1"]) == 1
    assert "no CUDA GPU" in capsys.readouterr().err and not out.exists()


def test_detector_fit_to_time_shortens_the_schedule(voc_smears, tmp_path, monkeypatch):
    """A time box far shorter than 50 epochs: the run fits its cosine to what the box holds
    (timed on the first epochs), records the fitted count, and stops there."""
    import hemascope.train.classifier as clf

    monkeypatch.setattr(clf, "epochs_that_fit", lambda minutes, elapsed, pace, done: done + 1)
    out = tmp_path / "fit"
    assert main(["train", "detector", "--data", str(voc_smears), "--out", str(out),
                 "--epochs", "50", "--min-sizes", "96", "--test-size", "96", "--max-size", "128",
                 "--fpn-channels", "64", "--batch-size", "3", "--max-minutes", "30",
                 "--fit-to-time"]) == 0
    rows = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    cfg = json.loads((out / "config.json").read_text())
    assert len(rows) == 4 and cfg["training"]["config"]["epochs"] == 4
    assert rows[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine finished


def test_detect_field_tiles_large_fields(monkeypatch, voc_smears, tmp_path):
    from hemascope.detect import predict

    model = build_detector("fcos_resnet18", 3, min_size=96, max_size=128, fpn_channels=64).eval()
    det = predict.LoadedDetector(model, {"classes": CLASSES, "test_size": 96, "max_size": 4000},
                                 tmp_path)
    seen = []
    real = predict._forward
    monkeypatch.setattr(predict, "_forward", lambda m, t: seen.append(t.shape) or real(m, t))
    img = np.full((600, 1500, 3), 230, np.uint8)
    out = predict.detect_field(det, img, scale=1.0)
    assert len(seen) > 1 and all(max(s[:2]) <= predict.TILE for s in seen)
    assert out.boxes.shape[1:] == (4,) if len(out) else True
    seen.clear()
    predict.detect_field(det, img, scale=0.5)  # 300 x 750 fits in one pass
    assert len(seen) == 1


def test_auto_scale_finds_cells_that_a_large_field_shrinks_away(monkeypatch, tmp_path):
    """A big field at the training magnification: the first pass (field fitted to the
    training size) sees no red cell; the probes zoom in until red cells have their
    training size, and the whole field runs at that scale."""
    from hemascope.detect import predict

    true_size, scales = 100.0, []  # red cells span 100 field pixels

    def fake_run(model, image, s):  # a detector that finds red cells of >= 20 working px
        scales.append((round(s, 4), image.shape[:2]))
        h, w = image.shape[:2]
        n = int(h // true_size) * int(w // true_size) if true_size * s >= 20 else 0
        boxes = np.array([[0, 0, true_size, true_size]] * n, float).reshape(-1, 4)
        return Detections(boxes, np.full(n, 0.9), np.full(n, 2))

    monkeypatch.setattr(predict, "_run", fake_run)
    config = {"classes": CLASSES, "test_size": 350, "max_size": 560,
              "size_reference": {"class": "RBC", "size": 75.0}}
    det = predict.LoadedDetector(None, config, tmp_path)
    big = np.zeros((9000, 12000, 3), np.uint8)
    predict.detect_field(det, big)
    final = scales[-1][0]
    assert 0.75 / 1.3 <= final <= 0.75 * 1.3 and scales[-1][1] == (9000, 12000)
    assert all(max(shape) * s <= predict.MAX_SINGLE_PASS + 1 for s, shape in scales[1:-1])  # probes: windows
    scales.clear()
    predict.detect_field(det, np.zeros((480, 640, 3), np.uint8))  # sizes agree: one pass
    assert len(scales) == 1
    true_size = 1e9  # no red cell at any scale: the first pass stands, after a few probes
    scales.clear()
    predict.detect_field(det, np.zeros((480, 640, 3), np.uint8))
    assert len(scales) <= 1 + predict.MAX_PROBES


def test_gradient_aspect_measures_a_stretch():
    """Round cells lying every which way: gradients say 'square'; the same field stretched
    along x says how much; a flat field says 1."""
    import cv2

    from hemascope.detect.predict import gradient_aspect

    field = make_smear(40, seed=3, size=(480, 640), n_wbc=2, n_platelets=3).image
    plain = gradient_aspect(field)
    assert 0.9 < plain < 1.1
    squeezed = cv2.resize(field, (480, 480), interpolation=cv2.INTER_AREA)  # cells 0.75 wide
    widened = cv2.resize(field, (640, 360), interpolation=cv2.INTER_AREA)  # cells 1.33 wide
    for stretched, truth in ((squeezed, 0.75), (widened, 4 / 3), (squeezed[::2, ::2], 0.75)):
        follows = np.log(gradient_aspect(stretched) / plain) / np.log(truth)
        assert 0.5 < follows < 1.1  # sharp synthetic edges: about 0.7 of the way
    assert gradient_aspect(np.full((50, 60, 3), 200, np.uint8)) == 1.0


def test_auto_scale_undoes_a_stretched_field(monkeypatch, tmp_path):
    """A field squeezed along x (an export resized to a square): red-cell boxes come out
    narrower than tall, the field is re-run widened by the gradients' measure, and a field
    that is not stretched runs once."""
    import cv2

    from hemascope.detect import predict

    runs = []

    def fake_run(model, image, s, aspect=1.0):  # 12 red cells, 0.9 as wide as the field says
        runs.append(aspect)
        h, w = image.shape[:2]
        box_w = 40.0 * predict.gradient_aspect(image) ** 0.4 / aspect ** 0.6
        boxes = np.array([[10 + 45 * i, 10 + 40 * j, 10 + 45 * i + box_w, 50 + 40 * j]
                          for i in range(4) for j in range(3)], float)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 2)
        return Detections(boxes, np.full(12, 0.9), np.full(12, 2))

    monkeypatch.setattr(predict, "_run", fake_run)
    config = {"classes": CLASSES, "test_size": 480, "max_size": 640,
              "size_reference": {"class": "RBC", "size": 40.0}}
    det = predict.LoadedDetector(None, config, tmp_path)
    field = make_smear(40, seed=3, size=(480, 640), n_wbc=2, n_platelets=3).image
    squeezed = cv2.resize(field, (480, 480), interpolation=cv2.INTER_AREA)
    predict.detect_field(det, squeezed)
    widen = np.exp(-np.log(predict.gradient_aspect(squeezed)) / predict.ASPECT_GAIN)
    assert len(runs) == 2 and runs[-1] == pytest.approx(widen) and runs[-1] > 1.2
    runs.clear()
    predict.detect_field(det, field)
    assert runs == [1.0]


def test_detect_field_white_balances_onto_the_training_background(monkeypatch, tmp_path):
    from hemascope.detect import predict
    from hemascope.stain.background import background_colour

    seen = []
    monkeypatch.setattr(predict, "_run", lambda model, image, s, aspect=1.0: seen.append(image)
                        or Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)))
    field = make_smear(20, seed=2, size=(240, 320)).image
    tinted = np.clip(field * np.array([1.2, 0.9, 0.8]), 0, 255).astype(np.uint8)
    config = {"classes": CLASSES, "test_size": 240, "max_size": 320,
              "background": background_colour(field).tolist()}
    det = predict.LoadedDetector(None, config, tmp_path)
    predict.detect_field(det, tinted)
    assert np.abs(background_colour(seen[-1]) - config["background"]).max() <= 2
    for d, kw in ((det, {"balance": False}),
                  (predict.LoadedDetector(None, {**config, "background": None}, tmp_path), {})):
        predict.detect_field(d, tinted, **kw)
        assert seen[-1] is tinted
    seen.clear()
    predict.predict_ensemble([det], tinted, views=2)  # mirror views: balanced alike
    assert len(seen) == 2 and all(np.abs(background_colour(v) - config["background"]).max() <= 2
                                  for v in seen)


def test_load_detector_errors(tmp_path, tiny_model):
    from hemascope.detect.predict import load_detector

    with pytest.raises(ModelError, match="does not exist"):
        load_detector(tmp_path / "nope")
    with pytest.raises(ModelError, match="not a detector"):
        load_detector(tiny_model)


def test_backbone_starts_from_the_default_classifier():
    from hemascope.train.detector import init_backbone

    model = build_detector("fcos_resnet18", 3)
    before = model.backbone.body.layer1[0].conv1.weight.clone()
    n = init_backbone(model, "default")
    assert n > 100
    assert not torch.equal(before, model.backbone.body.layer1[0].conv1.weight)
    with pytest.raises(ModelError):
        init_backbone(build_detector("fcos_resnet18", 3), "/nonexistent")


def test_fine_tuning_starts_from_a_detector_with_its_own_class_list():
    from hemascope.detect.predict import load_detector
    from hemascope.models.artifact import default_model_dir
    from hemascope.train.detector import init_weights

    shipped = load_detector("default").model.state_dict()
    model = build_detector("fcos_resnet18", 5)  # other classes: only the class logits differ
    fresh_logits = model.state_dict()["head.classification_head.cls_logits.bias"].clone()
    line = init_weights(model, str(default_model_dir("detector")))
    assert "from the detector" in line and "left at their initialisation" in line
    got = model.state_dict()
    for k in ("backbone.body.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight",
              "head.regression_head.bbox_reg.weight"):
        assert torch.equal(got[k], shipped[k].float()), k
    assert torch.equal(got["head.classification_head.cls_logits.bias"], fresh_logits)
    assert "from the classifier" in init_weights(build_detector("fcos_resnet18", 3), "default")


@pytest.mark.parametrize("name", ["fcos_resnet18", "fasterrcnn_resnet18"])
def test_fields_without_cells_train(name):
    from hemascope.detect.data import Field
    from hemascope.train.config import DetectorTrainConfig
    from hemascope.train.detector import _batch

    torch.manual_seed(0)
    f = make_smear(5, seed=2, size=(128, 160))
    b = np.array([i.box for i in f.annotation.instances], np.float32)
    lab = np.array([CLASSES.index(i.label) + 1 for i in f.annotation.instances])
    fields = [Field("a", f.image, b, lab),
              Field("empty", np.full((128, 160, 3), 230, np.uint8), np.zeros((0, 4), np.float32),
                    np.zeros(0, np.int64))]
    images, targets = _batch(fields, [0, 1], np.random.default_rng(0), DetectorTrainConfig())
    model = build_detector(name, 3, min_size=128, max_size=160, fpn_channels=64).train()
    loss = sum(model(images, targets).values())
    assert torch.isfinite(loss)


@pytest.mark.parametrize("seed", range(8))
def test_masks_follow_the_geometry(seed):
    from hemascope.detect.masks import render_masks

    img, b, lab = _painted(60, 80, (10, 5, 30, 25))
    crops = [np.ones((20, 20), bool)]
    stacked = np.concatenate([img, render_masks(crops, b, 60, 80)], 2)
    cfg = FieldAugment(hsv_p=0.0, interference_p=0.0, zoom_range=(0.7, 1.0))
    out, ob, ol = augment_field(stacked, b, lab, rng=np.random.default_rng(seed), cfg=cfg)
    assert out.shape[2] == 3 + len(ob)
    for k, box in enumerate(ob):
        ys, xs = np.nonzero(out[..., 3 + k])
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1)


def test_mask_crops_from_polygons_classical_and_ellipse():
    from hemascope.detect.masks import ellipse, mask_crops, render_masks

    f = make_smear(6, seed=4, size=(160, 200), n_wbc=1)
    boxes = np.array([i.box for i in f.annotation.instances])
    polys = [i.polygons for i in f.annotation.instances]
    crops, src = mask_crops(f.image, boxes, polys)
    assert src == ["polygon"] * len(boxes) and all(c.any() for c in crops)
    crops, src = mask_crops(f.image, boxes)  # no polygons: pseudo-labels
    assert set(src) <= {"classical", "ellipse"} and len(crops) == len(boxes)
    full = render_masks(crops, boxes, 160, 200)
    assert full.shape == (160, 200, len(boxes)) and full.max() == 1
    e = ellipse(10, 20)
    assert e[5, 10] and not e[0, 0]


def test_mask_rcnn_trains_on_pseudo_masks(voc_smears, tmp_path):
    code = main(["train", "detector", "--data", str(voc_smears), "--out", str(tmp_path / "m"),
                 "--arch", "maskrcnn_resnet18", "--epochs", "1", "--min-sizes", "128",
                 "--test-size", "128", "--max-size", "160", "--fpn-channels", "64",
                 "--batch-size", "3"])
    assert code == 0
    from hemascope.detect.predict import load_detector

    assert load_detector(tmp_path / "m").config["arch"] == "maskrcnn_resnet18"


def test_train_configs_round_trip_through_json():
    from hemascope.train.config import ClassifierTrainConfig, DetectorTrainConfig

    for cfg in (DetectorTrainConfig(min_sizes=(200, 300), init="default"),
                ClassifierTrainConfig(arch="tinycnn")):
        back = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg
    with pytest.raises(ValueError, match="unknown training options"):
        DetectorTrainConfig.from_dict({"epochs": 3, "colour": "blue"})


def test_evaluate_on_a_yolo_set_from_another_source(tmp_path):
    """Other labs' sets come as YOLO with data.yaml; labels map onto the model's classes."""
    from hemascope.io.yolo import write_yolo
    from hemascope.models.artifact import save_artifact

    images = []
    for seed in range(3):
        f = make_smear(6, seed=seed, size=(200, 260), n_wbc=1, n_platelets=1)
        write_image(tmp_path / "src" / f.annotation.file_name, f.image)
        a = f.annotation
        images.append(ImageAnnotation(a.file_name, a.width, a.height, a.instances, split="val"))
    write_yolo(images, ["Platelets", "RBC", "WBC"], tmp_path / "yolo", image_root=tmp_path / "src")
    model = build_detector("fcos_resnet18", 3, min_size=160, max_size=220, fpn_channels=64)
    save_artifact(tmp_path / "det", model, {"task": "detection", "arch": "fcos_resnet18",
                                            "classes": CLASSES, "test_size": 160, "max_size": 220,
                                            "fpn_channels": 64})
    out = tmp_path / "e.json"
    assert main(["evaluate", "detector", "--data", str(tmp_path / "yolo"), "--model",
                 str(tmp_path / "det"), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["n_images"] == 3 and rep["n_objects"] == {"WBC": 3, "RBC": 18, "Platelets": 3}
