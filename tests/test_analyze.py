"""`hemascope analyze`: outputs, modes, resume, bad input (detector boxes faked from truth)."""

import csv
import json
import os

import numpy as np
import pytest

from hemascope.cli import main
from hemascope.detect.ensemble import Detections
from hemascope.io.image import write_image
from hemascope.pipeline import analyze
from hemascope.model_classes import restrict
from hemascope.pipeline.analyzer import crop_cell, image_key, nucleated_classes
from hemascope.synthetic import make_cell, make_smear

CLASSES = ["WBC", "RBC", "Platelets"]


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    """A detector folder with random weights (its boxes are replaced by the truth below)."""
    from hemascope.detect.registry import build_detector
    from hemascope.models.artifact import save_artifact

    out = tmp_path_factory.mktemp("det")
    model = build_detector("fcos_resnet18", 3, min_size=160, max_size=200, fpn_channels=64)
    save_artifact(out, model, {"task": "detection", "arch": "fcos_resnet18", "classes": CLASSES,
                               "test_size": 160, "max_size": 200, "fpn_channels": 64,
                               "count_thresholds": dict.fromkeys(CLASSES, 0.3)})
    return out


@pytest.fixture
def truth_detector(monkeypatch):
    """Make the detector return each synthetic field's true boxes (score 0.9)."""
    from hemascope.pipeline import analyzer as mod

    fields = {"views": [], "balance": []}

    def fake(det, image, scale, views=1, *, balance=True):
        fields["views"].append(views)
        fields["balance"].append(balance)
        inst = fields[image.tobytes()[:4096]]
        boxes = np.array([i.box for i in inst], float)
        labels = np.array([CLASSES.index(i.label) + 1 for i in inst])
        return Detections(boxes, np.full(len(boxes), 0.9), labels)

    monkeypatch.setattr(mod, "_detect", fake)
    return fields


def _smears(folder, truth, n=3):
    for seed in range(n):
        f = make_smear(10, seed=seed, size=(420, 560), n_wbc=2, n_platelets=2)
        write_image(folder / f"field_{seed}.png", f.image)
        truth[f.image.tobytes()[:4096]] = f.annotation.instances


def test_fields_and_cells_end_to_end(tmp_path, detector_dir, tiny_model, truth_detector):
    src = tmp_path / "in"
    _smears(src / "smears", truth_detector)
    write_image(src / "cells" / "one.png", make_cell("lymphocyte", seed=3, size=96).image)
    (src / "cells" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "notes.txt").write_text("not an image")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    code = main(["analyze", str(src), "--out", str(out), "--detector", str(detector_dir),
                 "--classifier", str(tiny_model), "--json", str(tmp_path / "s.json")])
    assert code == 0
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # inputs untouched
    for name in ("cells.csv", "differential.csv", "coco.json", "cvat.xml", "errors.csv",
                 "manifest.json", "report.html"):
        assert (out / name).is_file(), name
    per = json.loads((out / "images" / "smears__field_0.json").read_text())
    assert per["mode"] == "fields" and per["width"] == 560 and per["height"] == 420
    kinds = [c["kind"] for c in per["cells"]]
    assert kinds.count("WBC") == 2 and kinds.count("RBC") == 10 and kinds.count("Platelets") == 2
    wbc = [c for c in per["cells"] if c["kind"] == "WBC"]
    assert all(c["label"] in ("eosinophil", "lymphocyte", "monocyte", "neutrophil") for c in wbc)
    assert all(len(c["top2"]) == 2 and c["top2"][0][1] >= c["top2"][1][1] for c in wbc)
    cell = json.loads((out / "images" / "cells__one.json").read_text())
    assert cell["mode"] == "cells" and len(cell["cells"]) == 1 and cell["cells"][0]["polygon"]
    rows = list(csv.reader((out / "differential.csv").open()))
    overall = dict(zip(rows[0], rows[-1]))
    assert overall["image"] == "ALL" and int(overall["WBC_total"]) == 7
    assert int(overall["RBC_total"]) == 30 and int(overall["Platelets_total"]) == 6
    pct = sum(float(overall[k]) for k in rows[0] if k.endswith("_percent"))
    assert pct == pytest.approx(100, abs=0.5)
    errors = list(csv.reader((out / "errors.csv").open()))
    assert [r[0].endswith("broken.jpg") for r in errors[1:]] == [True]
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 4 and len(coco["annotations"]) == 3 * 14 + 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["detector"]["weights_sha256"] and manifest["errors"] == 1
    assert set(manifest["seconds"]) >= {"read", "detect", "classify", "outline", "write", "total"}
    assert len(list((out / "overlays").glob("*.png"))) == 4
    html = (out / "report.html").read_text()
    assert "hemascope differential" in html and "broken.jpg" in html and "<svg" in html


def test_resume_skips_done_images(tmp_path, detector_dir, tiny_model, truth_detector):
    src = tmp_path / "in"
    _smears(src, truth_detector, n=2)
    out = tmp_path / "out"
    first = analyze(src, out_dir=out, detector=detector_dir, classifier=tiny_model)
    assert first.resumed == 0 and len(first.images) == 2
    (out / "images" / "field_1.json").unlink()
    again = analyze(src, out_dir=out, detector=detector_dir, classifier=tiny_model, resume=True)
    assert again.resumed == 1 and len(again.images) == 2
    assert again.differential() == first.differential()


def test_resume_never_takes_another_files_result(tmp_path, tiny_model):
    """A result is reused only for the very file it was made from, and only with the
    same models and options; a run without --resume replaces an earlier one."""
    from hemascope.errors import HemascopeError

    for day, cls in (("day1", "eosinophil"), ("day2", "lymphocyte")):
        write_image(tmp_path / day / "IMG_1.png", make_cell(cls, seed=3, size=64).image)
    out = tmp_path / "out"
    first = analyze(tmp_path / "day1", out_dir=out, classifier=tiny_model, mode="cells")
    again = analyze(tmp_path / "day2", out_dir=out, classifier=tiny_model, mode="cells", resume=True)
    assert again.resumed == 0  # same key, other file: analysed, not reused
    assert again.images[0].source.endswith("day2/IMG_1.png")
    assert first.images[0].source.endswith("day1/IMG_1.png")
    with pytest.raises(HemascopeError, match="other settings.*review_below"):
        analyze(tmp_path / "day2", out_dir=out, classifier=tiny_model, mode="cells",
                review_below=0.9, resume=True)
    same = analyze(tmp_path / "day2", out_dir=out, classifier=tiny_model, mode="cells", resume=True)
    assert same.resumed == 1
    assert [c.box for c in same.images[0].cells] == [c.box for c in again.images[0].cells]
    # a fresh run on other inputs leaves no result of the earlier one behind
    write_image(tmp_path / "day3" / "other.png", make_cell("monocyte", seed=4, size=64).image)
    analyze(tmp_path / "day3", out_dir=out, classifier=tiny_model, mode="cells")
    assert sorted(p.name for p in (out / "images").glob("*.json")) == ["other.json"]
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["other.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["fingerprint"]["options"]["mode"] == "cells"


def test_earlier_runs_inside_an_input_folder_are_left_out(tmp_path, tiny_model):
    src = tmp_path / "in"
    write_image(src / "c.png", make_cell("monocyte", seed=1, size=64).image)
    analyze(src, out_dir=src / "run1", classifier=tiny_model)
    second = analyze(src, out_dir=src / "run2", classifier=tiny_model)
    assert [r.key for r in second.images] == ["c"]  # not run1's overlays and crops
    # named directly, a run folder's images are analysed
    assert len(analyze(src / "run1" / "overlays", out_dir=tmp_path / "o", classifier=tiny_model).images) == 1


def test_detector_tta_reaches_the_detector(tmp_path, detector_dir, tiny_model, truth_detector):
    _smears(tmp_path / "in", truth_detector, n=1)
    code = main(["analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--detector",
                 str(detector_dir), "--classifier", str(tiny_model), "--detector-tta", "4"])
    assert code == 0 and truth_detector["views"] == [4] and truth_detector["balance"] == [True]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["options"]["detector_tta"] == 4 and manifest["options"]["balance"] is True
    code = main(["analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out2"), "--detector",
                 str(detector_dir), "--classifier", str(tiny_model), "--no-balance"])
    assert code == 0 and truth_detector["balance"] == [True, False]


def test_detector_views_are_fused_on_a_real_detector(detector_dir):
    from hemascope.detect.predict import detect_field, load_detector
    from hemascope.pipeline.analyzer import _detect

    field = make_smear(8, seed=1, size=(240, 320)).image
    det = load_detector(detector_dir)
    one, four = _detect(det, field, "auto"), _detect(det, field, "auto", 4)
    np.testing.assert_allclose(one.boxes, detect_field(det, field).boxes)  # one view: unchanged
    for d in (one, four):
        assert d.boxes.reshape(-1, 4).shape[1] == 4 and (d.boxes.reshape(-1, 4)[:, 2] <= 320 + 1e-6).all()


def test_output_inside_input_folder_is_not_read_back(tmp_path, detector_dir, tiny_model,
                                                     truth_detector):
    _smears(tmp_path, truth_detector, n=1)
    r1 = analyze(tmp_path, out_dir=tmp_path / "out", detector=detector_dir, classifier=tiny_model)
    r2 = analyze(tmp_path, out_dir=tmp_path / "out", detector=detector_dir, classifier=tiny_model)
    assert len(r1.images) == len(r2.images) == 1


def test_refiner_types_shared_classes_again(tmp_path, tiny_model):
    from hemascope.pipeline.analyzer import shared_classes

    assert shared_classes(["neutrophil", "platelet"], ["NEUTROPHIL", "lymphocyte"]) == {"neutrophil": 0}
    write_image(tmp_path / "in" / "c.png", make_cell("eosinophil", seed=2, size=64).image)
    r = analyze(tmp_path / "in", out_dir=tmp_path / "out", classifier=tiny_model, refiner=tiny_model)
    cell = r.images[0].cells[0]
    assert cell.refined and cell.label in ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
    saved = json.loads((tmp_path / "out" / "images" / "c.json").read_text())
    assert saved["cells"][0]["refined"] is True


def test_clear_errors(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                 "--classifier", str(tiny_model)]) == 1
    write_image(tmp_path / "c.png", make_cell("monocyte", seed=1, size=64).image)
    assert main(["analyze", str(tmp_path / "no_such_folder"), "--out", str(tmp_path / "o2"),
                 "--classifier", str(tiny_model)]) == 1
    assert not (tmp_path / "o2").exists()
    assert main(["analyze", str(tmp_path / "c.png"), "--out", str(tmp_path / "o3"),
                 "--classifier", str(tmp_path / "no_model")]) == 1
    assert not (tmp_path / "o3").exists()  # models load before any output is made
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("x")
    assert main(["analyze", str(tmp_path / "c.png"), "--out", str(blocker / "sub"),
                 "--classifier", str(tiny_model)]) == 1
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert main(["analyze", str(tmp_path / "c.png"), "--out", str(ro / "o"),
                     "--classifier", str(tiny_model)]) == 1


def test_helpers():
    img = np.arange(100 * 120 * 3, dtype=np.uint8).reshape(100, 120, 3)
    c = crop_cell(img, (0, 0, 20, 10), context=1.5)
    assert c.shape == (30, 30, 3)
    assert crop_cell(img, (40, 40, 60, 60), context=1.0).tolist() == img[40:60, 40:60].tolist()
    assert nucleated_classes(["neutrophil", "platelet", "erythroblast", "ig"]) == [0, 2, 3]
    assert nucleated_classes(["a", "b"]) == [0, 1]
    p = restrict(np.array([[0.2, 0.6, 0.2]]), [0, 2])
    np.testing.assert_allclose(p, [[0.5, 0.0, 0.5]])
    from pathlib import Path

    assert image_key(Path("/x/a b/c.png"), Path("/x")) == "a_b__c"


def _shifted_cells(folder, n, *, start=0):
    """Synthetic cells of another "lab": a colour cast the tiny model never saw."""
    kinds = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
    for i in range(start, start + n):
        img = make_cell(kinds[i % 4], seed=200 + i, size=48).image.astype(np.int16)
        img[..., 0] -= 40
        img[..., 2] += 30
        write_image(folder / f"c{i:02d}.png", np.clip(img, 0, 255).astype(np.uint8))


def test_adapt_bn_to_the_runs_own_cells(tmp_path, tiny_model):
    """--adapt bn re-estimates the classifier's batch-norm statistics on the run's cells,
    saves the adapted model, types the cells with it and records it in the manifest."""
    from hemascope.models.artifact import load_classifier

    src = tmp_path / "in"
    _shifted_cells(src, 20)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    before = {p: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "out"
    assert main(["analyze", str(src), "--out", str(out), "--classifier", str(tiny_model),
                 "--mode", "cells", "--adapt", "bn", "--no-overlays"]) == 0
    errors = list(csv.reader((out / "errors.csv").open()))
    assert [r[0].endswith("broken.png") for r in errors[1:]] == [True]  # skipped, reported once
    assert {p: p.read_bytes() for p in src.iterdir()} == before
    adapted = load_classifier(out / "adapted_classifier")
    base = load_classifier(tiny_model)
    stats = [k for k in base.model.state_dict() if k.endswith("running_mean")]
    assert stats and any(not np.allclose(base.model.state_dict()[k], adapted.model.state_dict()[k])
                         for k in stats)
    made = adapted.config["training"]["analyze_adaptation"]
    assert made["method"] == "bn" and len(made["inputs_sha256"]) == 64
    manifest = json.loads((out / "manifest.json").read_text())
    fp = manifest["fingerprint"]
    assert fp["options"]["adapt"] == "bn"
    assert fp["models"]["classifier"] == adapted.config["weights_sha256"] != base.config["weights_sha256"]
    assert "adapt" in manifest["seconds"]
    # the cells are typed by the adapted model: same probabilities as classifying them with it
    from hemascope.classify import predict_arrays
    from hemascope.io.image import read_image

    saved = json.loads((out / "images" / "c03.json").read_text())["cells"][0]
    p = predict_arrays(adapted, [read_image(src / "c03.png")])[0]
    assert saved["label"] == adapted.classes[int(p.argmax())]
    assert saved["probability"] == pytest.approx(float(p.max()), abs=1e-3)


def test_adapt_shot_within_classes_and_resume(tmp_path, tiny_model):
    """SHOT spreads the cells over --classes only; a resumed run with the same inputs
    re-uses the adapted model, and one with other inputs is refused before anything changes."""
    from hemascope.errors import HemascopeError

    src = tmp_path / "in"
    _shifted_cells(src, 20)
    out = tmp_path / "out"
    first = analyze(src, out_dir=out, classifier=tiny_model, mode="cells", adapt="shot",
                    classes=["Lymphocyte", "neutrophil"], overlays=False)
    cfg = json.loads((out / "adapted_classifier" / "config.json").read_text())
    assert cfg["classes"] == ["lymphocyte", "neutrophil"]
    assert {c.label for r in first.images for c in r.cells} <= {"lymphocyte", "neutrophil"}
    weights = (out / "adapted_classifier" / "model.safetensors").read_bytes()
    (out / "images" / "c05.json").unlink()
    said = []
    again = analyze(src, out_dir=out, classifier=tiny_model, mode="cells", adapt="shot",
                    classes=["Lymphocyte", "neutrophil"], overlays=False, resume=True, log=said.append)
    assert again.resumed == 19 and not any("adapting" in line for line in said)  # not again
    assert any("re-using" in line for line in said)
    assert (out / "adapted_classifier" / "model.safetensors").read_bytes() == weights
    assert again.differential() == first.differential()
    _shifted_cells(src, 1, start=20)
    results = sorted(p.name for p in (out / "images").iterdir())
    with pytest.raises(HemascopeError, match="adapted to other input files"):
        analyze(src, out_dir=out, classifier=tiny_model, mode="cells", adapt="shot",
                classes=["lymphocyte", "neutrophil"], overlays=False, resume=True)
    assert (out / "adapted_classifier" / "model.safetensors").read_bytes() == weights
    assert sorted(p.name for p in (out / "images").iterdir()) == results


def test_adapt_reuses_the_detections_of_fields(tmp_path, detector_dir, tiny_model, truth_detector):
    _smears(tmp_path / "in", truth_detector, n=8)  # 2 white cells each
    r = analyze(tmp_path / "in", out_dir=tmp_path / "out", detector=detector_dir,
                classifier=tiny_model, adapt="bn", overlays=False)
    assert len(truth_detector["views"]) == 8  # each field detected once
    assert sum(c.kind == "WBC" for c in r.cells) == 16


def test_adapt_and_classes_clear_errors(tmp_path, tiny_model):
    from hemascope.errors import HemascopeError

    _shifted_cells(tmp_path / "few", 3)
    (tmp_path / "few" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(HemascopeError, match=r"at least 16 white cells.*found 3 \(1 files could"):
        analyze(tmp_path / "few", out_dir=tmp_path / "o", classifier=tiny_model, adapt="bn")
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert main(["analyze", str(tmp_path / "few"), "--out", str(tmp_path / "o2"), "--classifier",
                 str(tiny_model), "--classes", "lymphocyte", "blast"]) == 1
    assert not (tmp_path / "o2").exists()
    with pytest.raises(HemascopeError, match="two or more classes; --classes names 1"):
        analyze(tmp_path / "few", out_dir=tmp_path / "o", classifier=tiny_model, adapt="shot",
                classes=["lymphocyte"])
    assert not (tmp_path / "o").exists()
    with pytest.raises(HemascopeError, match="adapt must be one of"):
        analyze(tmp_path / "few", out_dir=tmp_path / "o3", classifier=tiny_model, adapt="dann")
    # the adapted model of a run cannot be adapted again into the same folder
    _shifted_cells(tmp_path / "many", 16)
    analyze(tmp_path / "many", out_dir=tmp_path / "o4", classifier=tiny_model, adapt="bn")
    with pytest.raises(HemascopeError, match="is the one this run would adapt"):
        analyze(tmp_path / "many", out_dir=tmp_path / "o4",
                classifier=tmp_path / "o4" / "adapted_classifier", adapt="bn")
    # --classes alone restricts the labels (any spelling the taxonomy knows)
    r = analyze(tmp_path / "many", out_dir=tmp_path / "o5", classifier=tiny_model,
                classes=["EOSINOPHIL", "monocyte"])
    assert {c.label for c in r.cells} <= {"eosinophil", "monocyte"}


def test_adaptation_sample_is_bounded_and_seeded(tmp_path, tiny_model):
    from hemascope.pipeline import Analyzer, AnalysisOptions
    from hemascope.pipeline.adaptation import collect_white_cells, inputs_digest

    _shifted_cells(tmp_path, 12)
    files = sorted(tmp_path.glob("*.png"))
    an = Analyzer(AnalysisOptions(classifier=tiny_model, mode="cells"))
    a = collect_white_cells(an, files, max_cells=5, seed=1)
    b = collect_white_cells(an, files, max_cells=5, seed=1)
    c = collect_white_cells(an, files, max_cells=5, seed=2)
    assert a.n_found == 12 and a.images.shape == (5, 32, 32, 3) and a.modes == {"cells"}
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    assert len(a.found) == 12
    digest = inputs_digest(files)
    assert digest == inputs_digest(files[::-1])
    write_image(files[0], make_cell("monocyte", seed=1, size=48).image)  # a changed input
    assert inputs_digest(files) != digest


def test_many_uncertain_cells_suggest_adapting(tmp_path, tiny_model, capsys):
    _shifted_cells(tmp_path / "in", 4)
    args = ["analyze", str(tmp_path / "in"), "--classifier", str(tiny_model), "--mode", "cells"]
    assert main([*args, "--out", str(tmp_path / "a"), "--review-below", "1"]) == 0
    out = capsys.readouterr()
    assert "4 of 4 white cells flagged for review" in out.out and "--adapt shot" in out.err
    assert main([*args, "--out", str(tmp_path / "b"), "--review-below", "0"]) == 0
    out = capsys.readouterr()
    assert "0 of 4 white cells flagged" in out.out and "hint" not in out.err


def test_part_model_outlines_white_cells_and_gives_their_nc_ratio(tmp_path, detector_dir,
                                                                  tiny_model, truth_detector):
    src = tmp_path / "in"
    _smears(src, truth_detector, n=1)
    write_image(src / "cell.png", make_cell("neutrophil", seed=5, size=120).image)
    runs = {}
    for parts in ("default", "none"):
        out = tmp_path / parts
        assert main(["analyze", str(src), "--out", str(out), "--detector", str(detector_dir),
                     "--classifier", str(tiny_model), "--parts", parts]) == 0
        runs[parts] = out
    field = json.loads((runs["default"] / "images" / "field_0.json").read_text())
    wbc = [c for c in field["cells"] if c["kind"] == "WBC"]
    assert len(wbc) == 2 and all(c["polygon"] for c in wbc)
    for c in wbc:  # outline and nucleus lie on the field, around the detector's box
        xs = [x for x, _ in c["polygon"]]
        ys = [y for _, y in c["polygon"]]
        assert 0 <= min(xs) and max(xs) <= 560 and 0 <= min(ys) and max(ys) <= 420
        x0, y0, x1, y1 = c["box"]
        cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        assert x0 - 10 <= cx <= x1 + 10 and y0 - 10 <= cy <= y1 + 10
    outlined = [c for c in wbc if "nc_ratio" in c]
    assert outlined and all(0 < c["nc_ratio"] < 1 and c["nucleus"] for c in outlined)
    rows = list(csv.DictReader((runs["default"] / "cells.csv").open()))
    assert "nc_ratio" in rows[0]
    manifest = json.loads((runs["default"] / "manifest.json").read_text())
    assert manifest["fingerprint"]["models"]["parts"]
    plain = json.loads((runs["none"] / "images" / "field_0.json").read_text())
    assert all("nc_ratio" not in c and "nucleus" not in c for c in plain["cells"])
    assert json.loads((runs["none"] / "manifest.json").read_text())["fingerprint"]["models"]["parts"] is None


def test_resume_compares_the_views_the_classifier_ran(tmp_path, tiny_model):
    """The run fingerprint holds the classifier's views as run: its own default and the same
    number asked for resume each other; another number is refused, named."""
    import json
    import shutil

    from hemascope.errors import HemascopeError

    viewed = tmp_path / "viewed"
    shutil.copytree(tiny_model, viewed)
    cfg = json.loads((viewed / "config.json").read_text())
    (viewed / "config.json").write_text(json.dumps({**cfg, "views": 2}))
    src = tmp_path / "in"
    for i in range(2):
        write_image(src / f"c{i}.png", make_cell("monocyte", seed=60 + i, size=64).image)
    out = tmp_path / "out"
    analyze(src, out_dir=out, classifier=viewed, mode="cells")
    again = analyze(src, out_dir=out, classifier=viewed, mode="cells", tta=2, resume=True)
    assert again.resumed == 2
    with pytest.raises(HemascopeError, match="tta 2 -> 1"):
        analyze(src, out_dir=out, classifier=viewed, mode="cells", tta=1, resume=True)
