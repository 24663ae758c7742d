"""Train a tiny model on synthetic cells; load, classify, evaluate; break model folders."""

import json
import shutil

import pytest

from hemascope.cli import main
from hemascope.data.folder import read_class_folders
from hemascope.errors import DatasetError, HemascopeError
from hemascope.evaluate.classifier import evaluate_classifier
from hemascope.io.image import write_image
from hemascope.models.artifact import ModelError, load_classifier
from hemascope.synthetic import make_cell
from hemascope.train.classifier import train_classifier
from hemascope.train.config import ClassifierTrainConfig


def test_trained_model_learns_and_records_everything(tiny_model):
    cfg = json.loads((tiny_model / "config.json").read_text())
    assert cfg["classes"] == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert cfg["image_size"] == 32 and len(cfg["mean"]) == 3
    test = cfg["metrics"]["test"]
    assert test["n_images"] == 12  # 20 % of 16 per class
    assert test["accuracy"] >= 0.75, test  # chance is 0.25
    assert (tiny_model / "split.json").is_file() and (tiny_model / "history.jsonl").is_file()
    rows = [json.loads(x) for x in (tiny_model / "history.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_evaluate_split_test_reproduces_training_score(tiny_model, synthetic_cells):
    ev = evaluate_classifier(synthetic_cells, model=tiny_model, split="test", n_bootstrap=0)
    recorded = json.loads((tiny_model / "metrics.json").read_text())
    assert ev.report.n_images == recorded["n_images"]
    assert ev.report.accuracy == pytest.approx(recorded["accuracy"])


def test_resume_continues_from_checkpoint(synthetic_cells, tmp_path):
    ds = read_class_folders(synthetic_cells)
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=24, epochs=2, batch_size=32, threads=1)
    train_classifier(ds, cfg, tmp_path, log=lambda s: None)
    lines = []
    cfg.epochs = 3
    train_classifier(ds, cfg, tmp_path, resume=True, log=lines.append)
    assert lines[0] == "resuming at epoch 3"
    assert "schedule has already ended" in lines[1]  # the cosine of 2 epochs had reached 0
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3
    other = ClassifierTrainConfig(arch="resnet10t", image_size=24, epochs=4, batch_size=32, threads=1)
    with pytest.raises(HemascopeError, match="written for another model"):
        train_classifier(ds, other, tmp_path, resume=True, log=lambda s: None)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(HemascopeError, match="not a readable checkpoint"):
        train_classifier(ds, cfg, tmp_path, resume=True, log=lambda s: None)


def test_fresh_run_in_used_folder_starts_a_fresh_history(synthetic_cells, tmp_path):
    ds = read_class_folders(synthetic_cells)
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=24, epochs=2, batch_size=32, threads=1)
    train_classifier(ds, cfg, tmp_path, log=lambda s: None)
    train_classifier(ds, cfg, tmp_path, log=lambda s: None)  # no resume: a new run
    rows = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    # a row written after the last checkpoint (a crash between the two) is dropped on resume
    with open(tmp_path / "history.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 3, "val_accuracy": 0.0}) + "\n" + '{"epoch": 4, "val_')
    cfg.epochs = 3
    train_classifier(ds, cfg, tmp_path, resume=True, log=lambda s: None)
    rows = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and "train_loss" in rows[2]


def test_a_label_table_with_images_elsewhere(tiny_model, synthetic_cells, tmp_path):
    rows = [f"{p.relative_to(synthetic_cells)},{p.parent.name}"
            for p in sorted(synthetic_cells.rglob("*.png"))[:6]]
    (tmp_path / "t.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", "classifier", "--data", str(tmp_path / "t.csv"), "--images",
                 str(synthetic_cells), "--model", str(tiny_model), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n_images"] == 6


def test_a_class_folder_the_taxonomy_does_not_know_is_an_error(synthetic_cells, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_cells, data)
    shutil.copytree(synthetic_cells / "monocyte", data / "foobar")
    assert main(["train", "classifier", "--data", str(data), "--out", str(tmp_path / "m"),
                 "--arch", "tinycnn", "--image-size", "24", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "unknown to the taxonomy" in err and "foobar" in err
    assert "move a folder of mixed or unlabelled cells out" in " ".join(err.split())
    assert not (tmp_path / "m").exists()


def test_cli_classify_json_and_bad_files(tiny_model, synthetic_cells, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    args = ["classify", str(synthetic_cells / "monocyte"), str(bad), "--model", str(tiny_model),
            "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert len(out["predictions"]) == 16 and str(bad) in out["errors"]
    top = out["predictions"][0]
    assert top["top2"][0][1] >= top["top2"][1][1]
    assert sum(top["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    monocytes = sum(p["class"] == "monocyte" for p in out["predictions"])
    assert monocytes >= 10


def test_cli_evaluate_writes_contract_json(tiny_model, synthetic_cells, tmp_path, capsys):
    out = tmp_path / "m.json"
    preds = tmp_path / "p.csv"
    assert main(["evaluate", "classifier", "--model", str(tiny_model), "--data",
                 str(synthetic_cells), "--json", str(out), "--predictions", str(preds),
                 "--bootstrap", "20"]) == 0
    d = json.loads(out.read_text())
    assert d["n_images"] == 64 and set(d["ci95"]) == {"accuracy", "macro_f1"}
    assert len(preds.read_text().splitlines()) == 65


def test_evaluation_maps_synonym_folders(tiny_model, tmp_path):
    for folder, kind in (("NEUTROPHIL", "neutrophil"), ("Lymphocytes", "lymphocyte")):
        for i in range(3):
            write_image(tmp_path / folder / f"{i}.png", make_cell(kind, seed=i, size=48).image)
    ev = evaluate_classifier(tmp_path, model=tiny_model, n_bootstrap=0)
    assert ev.report.per_class["neutrophil"].support == 3


def test_scoring_on_the_classes_a_lab_shares_with_the_model(tiny_model, synthetic_cells, tmp_path):
    lab = tmp_path / "lab"  # another lab that labels only two of the model's four classes
    for kind in ("lymphocyte", "neutrophil"):
        shutil.copytree(synthetic_cells / kind, lab / kind.upper())
    everything = evaluate_classifier(lab, model=tiny_model, n_bootstrap=0)
    shared = evaluate_classifier(lab, model=tiny_model, n_bootstrap=0, classes="data")
    assert list(shared.report.classes) == ["lymphocyte", "neutrophil"]
    assert shared.report.n_images == everything.report.n_images == 32
    # the true class stays among the choices, so restricting can only turn errors right
    assert shared.report.accuracy >= everything.report.accuracy
    assert {p.label for p in shared.predictions} <= {"lymphocyte", "neutrophil"}
    assert set(shared.truth.values()) == {"lymphocyte", "neutrophil"}
    named = evaluate_classifier(lab, model=tiny_model, n_bootstrap=0,
                                classes=["Lymphocytes", "NEUTROPHIL", "monocyte"])
    assert list(named.report.classes) == ["lymphocyte", "monocyte", "neutrophil"]
    with pytest.raises(DatasetError, match=r"\['neutrophil'\].*leave out"):
        evaluate_classifier(lab, model=tiny_model, classes=["lymphocyte", "monocyte"])
    with pytest.raises(HemascopeError, match="basophil"):
        evaluate_classifier(lab, model=tiny_model, classes=["basophil"])
    shutil.copytree(synthetic_cells / "lymphocyte", tmp_path / "one" / "Lymphocytes")
    one = evaluate_classifier(tmp_path / "one", model=tiny_model, n_bootstrap=0,
                              classes="lymphocyte")  # a single name, not its letters
    assert list(one.report.classes) == ["lymphocyte"] and one.report.accuracy == 1.0


def test_cli_classify_and_evaluate_within_classes(tiny_model, synthetic_cells, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["classify", str(synthetic_cells / "monocyte"), "--model", str(tiny_model),
                 "--classes", "lymphocyte", "neutrophil", "--json", str(out)]) == 0
    preds = json.loads(out.read_text())["predictions"]
    assert len(preds) == 16 and {p["class"] for p in preds} <= {"lymphocyte", "neutrophil"}
    assert all(p["probabilities"]["monocyte"] == 0 for p in preds)
    ev = tmp_path / "e.json"
    assert main(["evaluate", "classifier", "--model", str(tiny_model), "--data",
                 str(synthetic_cells), "--classes", "data", "--bootstrap", "0",
                 "--json", str(ev)]) == 0
    assert json.loads(ev.read_text())["classes"] == ["eosinophil", "lymphocyte", "monocyte",
                                                     "neutrophil"]
    assert main(["classify", str(synthetic_cells), "--model", str(tiny_model),
                 "--classes", "platelet"]) == 1
    assert "platelet" in capsys.readouterr().err


def test_unmappable_class_folder_is_named(tiny_model, tmp_path):
    write_image(tmp_path / "basophil" / "a.png", make_cell("basophil", size=48).image)
    write_image(tmp_path / "monocyte" / "a.png", make_cell("monocyte", size=48).image)
    with pytest.raises(DatasetError, match=r"\['basophil'\].*do not map"):
        evaluate_classifier(tmp_path, model=tiny_model)


def test_broken_model_folders(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_classifier(tmp_path / "nope")
    broken = tmp_path / "m"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="lacks model.safetensors"):
        load_classifier(broken)
    shutil.copy(tiny_model / "model.safetensors", broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["classes"] = cfg["classes"][:3]
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="does not match"):
        load_classifier(broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="cannot read"):
        load_classifier(broken)
    good = json.loads((tiny_model / "config.json").read_text())
    for key, value in (("mean", [0.5]), ("std", [0, 0, 0]), ("image_size", -5), ("image_size", "big"),
                       ("classes", "basophil"), ("classes", ["a", "a"]), ("task", "segmentation")):
        (broken / "config.json").write_text(json.dumps({**good, key: value}))
        with pytest.raises(ModelError, match=f"{key}|classifier"):
            load_classifier(broken)
    (broken / "config.json").write_text("{")
    with pytest.raises(ModelError, match="cannot read"):
        load_classifier(broken)


def test_cli_train_smoke(synthetic_cells, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "classifier", "--data", str(synthetic_cells), "--out", str(out),
                 "--arch", "tinycnn", "--image-size", "24", "--epochs", "1", "--threads", "1",
                 "--augment", "bone-marrow", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best_epoch"] == 1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["config"]["augment"]["scale"] == [0.08, 1.0]
    assert cfg["training"]["command"].startswith("hemascope ")


def test_lr_find_suggests_a_rate_below_divergence(synthetic_cells, capsys):
    import numpy as np

    from hemascope.train.lr_find import suggest_lr

    lrs = np.logspace(-5, 0, 6)
    assert suggest_lr(lrs, np.array([2.0, 1.5, 0.8, 0.5, 0.9, 5.0])) == pytest.approx(1e-2 / 10)  # lowest loss at 1e-2
    assert main(["train", "lr-find", "--data", str(synthetic_cells), "--arch", "tinycnn",
                 "--image-size", "24", "--batch-size", "16", "--steps", "30", "--threads", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 1e-6 <= out["suggested_lr"] <= 1.0 and len(out["lrs"]) == len(out["losses"]) <= 30


def test_cross_validation_and_init(synthetic_cells, tiny_model, tmp_path, capsys):
    assert main(["train", "classifier", "--data", str(synthetic_cells), "--out", str(tmp_path / "cv"),
                 "--arch", "tinycnn", "--image-size", "24", "--epochs", "1", "--threads", "1",
                 "--cv", "3", "--json"]) == 0
    cv = json.loads(capsys.readouterr().out)
    assert cv["k"] == 3 and 0 <= cv["accuracy"]["std"] <= cv["accuracy"]["mean"] <= 1
    folds = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())["folds"]
    assert sum(f["n_images"] for f in folds) == 64  # every image tested exactly once
    # in-domain init: start from the tiny model's weights
    ds = read_class_folders(synthetic_cells)
    lines = []
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=32, epochs=1, threads=1,
                                init=str(tiny_model))
    train_classifier(ds, cfg, tmp_path / "init", log=lines.append)
    assert lines[0].startswith("initialised") and "0 kept random" in lines[0]
    with pytest.raises(ModelError, match="cannot initialise a resnet18"):
        cfg = ClassifierTrainConfig(arch="resnet18", image_size=32, epochs=1, init=str(tiny_model))
        train_classifier(ds, cfg, tmp_path / "bad", log=lines.append)


def test_ssl_pretraining_initialises_a_classifier(synthetic_cells, tmp_path, capsys):
    import torch

    from hemascope.train.ssl import nt_xent

    z = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    assert nt_xent(z, z, 0.2) < nt_xent(z, z.roll(1, 0), 0.2)  # matching views score better
    assert main(["train", "ssl", "--data", str(synthetic_cells), "--out", str(tmp_path / "ssl"),
                 "--arch", "tinycnn", "--image-size", "24", "--epochs", "1", "--batch-size", "16",
                 "--threads", "1"]) == 0
    assert "--init" in capsys.readouterr().out
    lines = []
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=24, epochs=1, threads=1,
                                init=str(tmp_path / "ssl"))
    train_classifier(read_class_folders(synthetic_cells), cfg, tmp_path / "clf", log=lines.append)
    assert lines[0].startswith("initialised")


def test_float16_artifact_reproduces_its_recorded_score(synthetic_cells, tmp_path):
    ds = read_class_folders(synthetic_cells)
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=24, epochs=2, threads=1,
                                weights_dtype="float16")
    train_classifier(ds, cfg, tmp_path, log=lambda s: None)
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    ev = evaluate_classifier(synthetic_cells, model=tmp_path, split="test", n_bootstrap=0)
    assert ev.report.accuracy == recorded["accuracy"]
    assert ev.report.to_dict()["confusion_matrix"] == recorded["confusion_matrix"]


def test_tta_views_and_probabilities(tiny_model, synthetic_cells):
    import numpy as np
    import torch

    from hemascope.classify import dihedral_views, predict_arrays
    from hemascope.io.image import read_image

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = dihedral_views(x, 8)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # all distinct
    model = load_classifier(tiny_model)
    imgs = [read_image(p) for p in sorted((synthetic_cells / "monocyte").glob("*.png"))[:4]]
    p1, p8 = predict_arrays(model, imgs, tta=1), predict_arrays(model, imgs, tta=8)
    assert p8.shape == p1.shape and np.allclose(p8.sum(1), 1, atol=1e-5)
    assert not np.allclose(p1, p8)
    with pytest.raises(ValueError):
        predict_arrays(model, imgs, tta=3)


def test_time_limit_stops_after_one_epoch_and_still_ships(synthetic_cells, tmp_path):
    ds = read_class_folders(synthetic_cells)
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=24, epochs=5, batch_size=32, threads=1,
                                max_minutes=1e-6, device="cpu")
    lines = []
    r = train_classifier(ds, cfg, tmp_path, log=lines.append)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1
    assert any(s.startswith("time limit: stopping after epoch 1/5") for s in lines)
    cfg_out = json.loads((tmp_path / "config.json").read_text())
    assert r.test is not None and cfg_out["training"]["device"].endswith("threads")


def test_epochs_that_fit_a_time_box():
    from hemascope.train.classifier import epochs_that_fit

    assert epochs_that_fit(1.0, 30.0, 10.0, 3) == 6  # 30 s left, 10 s an epoch
    assert epochs_that_fit(1.0, 59.0, 10.0, 3) == 4  # always at least one more
    assert epochs_that_fit(1.0, 90.0, 10.0, 3) == 4  # already over the box


def test_fit_to_time_shortens_the_cosine_and_survives_a_resume():
    import time

    import torch

    from hemascope.train.classifier import _scheduler, fit_to_time, fitted_epochs

    cfg = ClassifierTrainConfig(epochs=100, max_minutes=1.0, fit_to_time=True, warmup_epochs=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = _scheduler(opt, cfg, 10)
    lines = []
    fit_to_time(cfg, sched, 10, time.time() - 30, [20.0, 10.0], lines.append, done=2)  # wait
    assert cfg.epochs == 100 and not lines
    fit_to_time(cfg, sched, 10, time.time() - 25, [20.0, 10.0, 10.0], lines.append, done=3)
    assert cfg.epochs == 6 and lines == ["fit to time: 100 -> 6 epochs (10.0 s each, 1 min)"]
    lam = sched.lr_lambdas[0]
    assert lam(59) < 0.01 and lam(30) > 0.3  # the decay now ends with the 6th epoch
    # later epochs re-time the pace: still 10 s an epoch -> nothing changes, nothing logged
    fit_to_time(cfg, sched, 10, time.time() - 35, [20.0, 10.0, 10.0, 10.0], lines.append, done=4)
    assert cfg.epochs == 6 and len(lines) == 1
    # faster epochs never lengthen the run
    fit_to_time(cfg, sched, 10, time.time() - 35, [20.0, 10.0, 10.0, 10.0, 1.0, 1.0], lines.append,
                done=4)
    assert cfg.epochs == 6 and len(lines) == 1
    # epochs got slower (15 s over the last 5): 25 s left holds one more, not two
    fit_to_time(cfg, sched, 10, time.time() - 35, [20.0, 10.0] + [15.0] * 5, lines.append, done=4)
    assert cfg.epochs == 5 and lines[-1] == "fit to time: 6 -> 5 epochs (15.0 s each, 1 min)"
    assert sched.lr_lambdas[0].total == 50
    cfg.epochs, lam.total = 6, 60  # back to the first fit for the resume check
    # resumed: the length comes back from the checkpointed scheduler state
    again = ClassifierTrainConfig(epochs=100, max_minutes=1.0, fit_to_time=True, warmup_epochs=1)
    sched2 = _scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), again, 10)
    sched2.load_state_dict(sched.state_dict())
    fitted_epochs(again, sched2, 10)
    assert again.epochs == 6 and sched2.lr_lambdas[0].total == 60
    # never lengthens a run that already fits
    short = ClassifierTrainConfig(epochs=5, max_minutes=60.0, fit_to_time=True)
    fit_to_time(short, _scheduler(opt, short, 10), 10, time.time(), [1.0, 1.0, 1.0], lines.append,
                done=3)
    assert short.epochs == 5 and lines[-1].startswith("fit to time: 5 epochs fit")
    # a resumed session counts the epochs already done: 40 done, 35 s left at 10 s -> 43
    late = ClassifierTrainConfig(epochs=96, max_minutes=1.0, fit_to_time=True)
    fit_to_time(late, _scheduler(opt, late, 10), 10, time.time() - 25, [20.0, 10.0, 10.0],
                lines.append, done=40)
    assert late.epochs == 43


def test_device_names_are_checked():
    import torch

    from hemascope.errors import HemascopeError
    from hemascope.train.device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(HemascopeError, match="unknown device"):
        resolve_device("gpu0")
    with pytest.raises(HemascopeError, match="not supported"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(HemascopeError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_lineage_lists_the_fine_tuning_chain_oldest_first():
    from hemascope.models.artifact import lineage

    assert lineage({"command": "scratch"}) == []
    training = {"command": "c", "initialised_from": {
        "command": "b", "initialised_from": {"command": "a"}}}
    assert [r["command"] for r in lineage(training)] == ["a", "b"]


def test_a_models_own_views_are_the_default(tiny_model, synthetic_cells, tmp_path):
    """config 'views' (chosen on val when a model is shipped) is what classify, evaluate and
    analyze use when no --tta is given; derived models (fine-tuned, exported) start at 1."""
    import numpy as np

    from hemascope.classify import classify_paths, model_views, predict_arrays
    from hemascope.io.image import read_image

    viewed = tmp_path / "viewed"
    shutil.copytree(tiny_model, viewed)
    cfg = json.loads((viewed / "config.json").read_text())
    (viewed / "config.json").write_text(json.dumps({**cfg, "views": 4}))
    plain, own = load_classifier(tiny_model), load_classifier(viewed)
    assert model_views(plain) == 1 and model_views(own) == 4 and model_views(own, 2) == 2
    files = sorted((synthetic_cells / "monocyte").glob("*.png"))[:4]
    imgs = [read_image(p) for p in files]
    p4 = predict_arrays(own, imgs, tta=4)
    assert np.allclose(predict_arrays(own, imgs, tta=None), p4)
    assert not np.allclose(predict_arrays(own, imgs), p4)  # the low-level default stays 1
    got = classify_paths(files, model=own).predictions
    assert np.allclose([p.probability for p in got], p4.max(1), atol=1e-5)
    a = evaluate_classifier(synthetic_cells, model=own, n_bootstrap=0).report
    b = evaluate_classifier(synthetic_cells, model=own, n_bootstrap=0, tta=4).report
    assert a.to_dict() == b.to_dict()
    (viewed / "config.json").write_text(json.dumps({**cfg, "views": 3}))
    with pytest.raises(ModelError, match="'views' must be 1, 2, 4 or 8"):
        load_classifier(viewed)
