"""Few-shot adaptation on a synthetic "new lab": the same cell kinds with another colour cast."""

import json

import numpy as np
import pytest

from hemascope.adapt.ablation import run_ablation
from hemascope.adapt.fewshot import FewShotConfig, load_target, run_fewshot
from hemascope.adapt.stats import wilcoxon_signed_rank
from hemascope.cli import main
from hemascope.errors import DatasetError
from hemascope.io.image import write_image
from hemascope.models.artifact import load_classifier
from hemascope.synthetic import make_cell


@pytest.fixture(scope="module")
def new_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("new_lab")
    for folder, kind in (("Neutrophil", "neutrophil"), ("LYMPHOCYTE", "lymphocyte"),
                         ("monocytes", "monocyte")):
        for i in range(8):
            img = make_cell(kind, seed=500 + i, size=48).image.astype(float)
            write_image(root / folder / f"{i}.png",
                        np.clip(img * [0.85, 0.95, 1.1] + [0, 10, 0], 0, 255).astype(np.uint8))
    return root


@pytest.fixture
def graph_spy(monkeypatch):
    """The embeddings every label propagation of the test builds its graph from, in order."""
    import hemascope.adapt.propagate as propagate

    seen = []
    real = propagate.transductive_probs

    def spy(probs, emb, labelled, labels, **kw):
        seen.append(emb.copy())
        return real(probs, emb, labelled, labels, **kw)

    monkeypatch.setattr(propagate, "transductive_probs", spy)
    return seen


def test_wilcoxon_exact_values():
    assert wilcoxon_signed_rank([1, 2, 3], [1, 2, 3]) == 1.0
    # 5 positive differences: the most extreme of 2^5 patterns on each side
    assert wilcoxon_signed_rank([2, 3, 4, 5, 6], [1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    assert 0.05 < wilcoxon_signed_rank([1, 2, 3, 4], [2, 1, 4, 3]) <= 1


def test_fewshot_run_writes_everything(tiny_model, new_lab, tmp_path):
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    assert target.classes == ["lymphocyte", "monocyte", "neutrophil"]  # base order, subset
    res = run_fewshot(target, base, FewShotConfig(shots=6, seed=1, epochs=3, threads=1,
                                                  stain="reinhard"), run_dir=tmp_path / "run")
    assert len(res.shots) == 6 and res.report.n_images == 24 - 6
    shots = (tmp_path / "run" / "shots.txt").read_text().split()
    assert shots == res.shots and len({s.split("/")[0] for s in shots}) == 3
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == target.classes
    adapted = load_classifier(tmp_path / "run" / "model")
    assert adapted.classes == target.classes and adapted.config["stain_reference"]["method"] == "reinhard"
    # every image once: the shots with their given label, the rest with what was scored
    import csv
    rows = list(csv.DictReader((tmp_path / "run" / "predictions.csv").open()))
    assert [r["path"] for r in rows[:6]] == sorted(shots, key=target.keys.index)
    assert sorted(r["path"] for r in rows) == sorted(target.keys)
    assert all(r["split"] == "shot" and r["predicted"] == r["true"] for r in rows[:6])
    test = rows[6:]
    assert {r["split"] for r in test} == {"test"}
    for r in test:
        assert r["true"] == next(c for c in target.classes if c in r["path"].lower())
        assert r["second"] in target.classes and r["second"] != r["predicted"]
        assert 1 >= float(r["probability"]) >= float(r["second_probability"]) >= 0
    right = sum(r["predicted"] == r["true"] for r in test)
    assert right / len(test) == pytest.approx(metrics["accuracy"])


def test_same_seed_same_shots_and_scores(tiny_model, new_lab):
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    cfg = FewShotConfig(shots=6, seed=3, epochs=2, threads=1)
    a, b = run_fewshot(target, base, cfg), run_fewshot(target, base, cfg)
    assert a.shots == b.shots and a.report.accuracy == b.report.accuracy


def test_ablation_all_conditions(tiny_model, new_lab):
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    rows = run_ablation(target, base, FewShotConfig(shots=6, epochs=2, threads=1), seeds=[0, 1],
                        source=target)
    names = [r.condition for r in rows]
    assert len(names) == 6 and names[-1] == "full workflow"
    assert rows[-1].p_accuracy is None and all(r.p_accuracy is not None for r in rows[:-1])
    assert all(0 <= a <= 1 for r in rows for a in r.accuracy)


def test_bad_target_sets(tiny_model, tmp_path):
    base = load_classifier(tiny_model)
    write_image(tmp_path / "t" / "platelet" / "a.png", make_cell("platelet", size=48).image)
    with pytest.raises(DatasetError, match=r"\['platelet'\].*map to none.*learns such classes"):
        load_target(tmp_path / "t", base, new_classes=False)
    for i in range(2):
        write_image(tmp_path / "u" / "monocyte" / f"{i}.png", make_cell("monocyte", size=48).image)
    target = load_target(tmp_path / "u", base)
    with pytest.raises(DatasetError, match="only 2 readable images"):
        run_fewshot(target, base, FewShotConfig(shots=5))


def test_cli_fewshot(tiny_model, new_lab, tmp_path, capsys):
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "r"),
                 "--base", str(tiny_model), "--epochs", "2", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_images"] == 18 and set(out) >= {"accuracy", "macro_f1", "ci95"}
    assert main(["classify", str(new_lab / "Neutrophil" / "0.png"), "--model",
                 str(tmp_path / "r" / "model")]) == 0


def test_shot_start_sees_only_images_and_shots(tiny_model, new_lab, tmp_path, capsys,
                                               monkeypatch):
    import hemascope.adapt.shot as shot

    seen = []
    real = shot.adapt_source_free

    def spy(target, base, cfg, **kw):
        shots = kw.get("shots")
        seen.append((len(target.images), len(target.labels), cfg.epochs, kw["target_labelled"],
                     None if shots is None else len(shots[1])))
        return real(target, base, cfg, **kw)

    monkeypatch.setattr(shot, "adapt_source_free", spy)
    common = ["--base", str(tiny_model), "--epochs", "1", "--pseudo-rounds", "0", "--threads", "1"]
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "r"),
                 "--shot-epochs", "2", "--json", *common]) == 0
    # the default: every target image without its label, plus the 6 shots, once per run
    assert seen == [(24, 0, 2, False, 6)]
    assert json.loads(capsys.readouterr().out)["n_images"] == 18
    model = load_classifier(tmp_path / "r" / "model")
    assert model.config["training"]["fewshot"]["shot_epochs"] == 2
    assert model.config["training"]["fewshot"]["shot_labels"] is True
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "s"),
                 "--shot-epochs", "1", "--no-shot-labels", *common]) == 0
    assert seen[-1] == (24, 0, 1, False, None)  # no label at all
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "t"),
                 "--shot-epochs", "0", *common]) == 0
    assert len(seen) == 2  # off
    with pytest.raises(SystemExit, match="2"):  # a usage error
        main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "x"),
              "--base", str(tiny_model), "--shot-epochs", "-1"])
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "x"),
                 "--base", str(tiny_model), "--shot-epochs", "0", "--shot-labels"]) != 0
    assert "--shot-epochs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_tuning_uses_only_the_shots(tiny_model, new_lab, tmp_path):
    pytest.importorskip("optuna")
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    res = run_fewshot(target, base, FewShotConfig(shots=9, seed=0, threads=1), run_dir=tmp_path,
                      tune_trials=2)
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    assert len(tuning["trials"]) == 2
    assert tuning["best"]["epochs"] in (10, 20, 30, 40, 50, 60)
    assert res.report.n_images == 24 - 9


def test_empty_class_folder_is_a_clear_error(tiny_model, new_lab, tmp_path):
    import shutil

    t = tmp_path / "t"
    shutil.copytree(new_lab, t)
    (t / "eosinophil").mkdir()
    with pytest.raises(DatasetError, match="'eosinophil' holds no images"):
        load_target(t, load_classifier(tiny_model))


def test_propagated_predictions_see_only_the_shot_labels(tiny_model, new_lab, tmp_path, capsys,
                                                         monkeypatch):
    import hemascope.adapt.propagate as propagate
    from hemascope.errors import HemascopeError

    seen = []
    real = propagate.transductive_probs

    def spy(probs, emb, labelled, labels, **kw):
        seen.append((probs.shape, emb.shape, np.asarray(labelled).copy(), np.asarray(labels).copy()))
        return real(probs, emb, labelled, labels, **kw)

    monkeypatch.setattr(propagate, "transductive_probs", spy)
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    cfg = FewShotConfig(shots=6, seed=2, mode="none", shot_epochs=0, predict="propagate", threads=1)
    res = run_fewshot(target, base, cfg, run_dir=tmp_path / "r")
    # every target image is in the graph; only the 6 shots carry labels, the true ones
    (probs_shape, emb_shape, labelled, labels), = seen
    assert probs_shape == (24, 3) and emb_shape[0] == 24 and list(labelled) == list(range(6))
    shot_labels = [target.classes.index(next(c for c in target.classes if c in s.lower()))
                   for s in res.shots]
    assert sorted(labels) == sorted(shot_labels)
    assert res.head_only is not None and res.head_only.n_images == res.report.n_images == 18
    saved = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert saved["metrics"]["test_head_only"]["accuracy"] == pytest.approx(res.head_only.accuracy)
    assert saved["training"]["fewshot"]["predict"] == "propagate"
    # the head alone, with the same model, is what predict="head" scores
    head = run_fewshot(target, base, FewShotConfig(shots=6, seed=2, mode="none", shot_epochs=0,
                                                   predict="head", threads=1))
    assert head.head_only is None and head.report.accuracy == pytest.approx(res.head_only.accuracy)
    # the default; the study's ablation conditions have no propagation
    from hemascope.adapt.fewshot import conditions
    assert FewShotConfig().predict == "propagate"
    assert {c.predict for c in conditions(FewShotConfig()).values()} == {"head"}
    with pytest.raises(HemascopeError, match="predict"):
        run_fewshot(target, base, FewShotConfig(shots=6, predict="vote", threads=1))
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "c"),
                 "--base", str(tiny_model), "--mode", "none", "--shot-epochs", "0",
                 "--predict", "propagate", "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 18
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "d"),
                 "--base", str(tiny_model), "--mode", "none", "--shot-epochs", "0",
                 "--threads", "1"]) == 0
    assert "model alone, as it will classify new cells" in capsys.readouterr().out


def test_views_average_the_transductive_embeddings_over_flips(tiny_model, new_lab, tmp_path,
                                                             graph_spy):
    from hemascope.adapt.shot import embed_all
    from hemascope.errors import HemascopeError

    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    mean, std = base.normalisation
    imgs = target.images[:5]
    flipped = np.ascontiguousarray(imgs[:, :, ::-1])  # left-right
    one, one_f = (embed_all(base.model, im, mean, std)[0] for im in (imgs, flipped))
    four, four_f = (embed_all(base.model, im, mean, std, views=4) for im in (imgs, flipped))
    assert not np.allclose(one, one_f, atol=1e-4)  # one view sees the flip
    assert np.allclose(four[0], four_f[0], atol=1e-4)  # the average over flips does not
    assert np.allclose(four[1], four_f[1], atol=1e-4)
    assert np.allclose(np.exp(four[1].numpy()).sum(1), 1, atol=1e-5)  # log of mean softmax
    seen = graph_spy
    for views in (1, 4):
        run_fewshot(target, base, FewShotConfig(shots=6, seed=2, mode="none", shot_epochs=0,
                                                views=views, threads=1))
    assert seen[0].shape == seen[1].shape == (len(target.images), seen[0].shape[1])
    assert not np.allclose(seen[0], seen[1], atol=1e-4)  # the graph reads the averaged views
    with pytest.raises(HemascopeError, match="--views"):
        FewShotConfig(views=3)


def test_pseudo_labels_can_come_from_propagation(tiny_model, new_lab, tmp_path, monkeypatch):
    from dataclasses import replace

    import hemascope.adapt.fewshot as fewshot
    import hemascope.adapt.propagate as propagate
    from hemascope.errors import HemascopeError

    scores, ranked = [], []
    real_tp, real_select = propagate.transductive_probs, fewshot.select_pseudo_labels

    def spy_tp(probs, emb, labelled, labels, **kw):
        scores.append(real_tp(probs, emb, labelled, labels, **kw))
        return scores[-1]

    def spy_select(probs, fraction):
        ranked.append(np.asarray(probs).copy())
        return real_select(probs, fraction)

    monkeypatch.setattr(propagate, "transductive_probs", spy_tp)
    monkeypatch.setattr(fewshot, "select_pseudo_labels", spy_select)
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    cfg = FewShotConfig(shots=6, seed=1, mode="head", epochs=1, shot_epochs=0, pseudo_rounds=1,
                        predict="propagate", pseudo_from="propagate", threads=1)
    res = run_fewshot(target, base, cfg)
    # the round ranks the 18 unlabelled cells by the transductive scores, then the final
    # labels are propagated again from the retrained model
    assert len(scores) == 2 and len(ranked) == 1
    np.testing.assert_allclose(ranked[0], scores[0][6:])
    assert res.report.n_images == 18
    scores.clear()
    ranked.clear()
    run_fewshot(target, base, replace(cfg, pseudo_from="head"))
    assert len(scores) == 1 and ranked[0].shape == (18, 3)  # the head's softmax, not propagated
    # the default; the study's ablation conditions rank by the head
    assert FewShotConfig().pseudo_from == "propagate"
    assert {c.pseudo_from for c in fewshot.conditions(FewShotConfig()).values()} == {"head"}
    with pytest.raises(HemascopeError, match="pseudo_from"):
        run_fewshot(target, base, FewShotConfig(shots=6, pseudo_from="vote", threads=1))
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "r"),
                 "--base", str(tiny_model), "--mode", "head", "--epochs", "1", "--shot-epochs",
                 "0", "--pseudo-from", "head", "--threads", "1", "--json"]) == 0
    saved = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert saved["training"]["fewshot"]["pseudo_from"] == "head"
    assert len(ranked) == 2 and len(scores) == 2  # the flag reached the run: one propagation


@pytest.fixture(scope="module")
def lab_with_new_class(tmp_path_factory, new_lab):
    """The new lab plus a class the tiny base model has no output for (basophils)."""
    import shutil

    root = tmp_path_factory.mktemp("lab_with_new_class") / "lab"
    shutil.copytree(new_lab, root)
    for i in range(8):
        write_image(root / "Basophils" / f"{i}.png", make_cell("basophil", seed=700 + i, size=48).image)
    return root


def test_new_classes_are_imprinted_from_their_shots(tiny_model, lab_with_new_class, tmp_path,
                                                     capsys):
    import torch

    from hemascope.adapt.imprint import hidden_features, imprint_classes

    base = load_classifier(tiny_model)
    assert "basophil" not in base.classes
    with pytest.raises(DatasetError, match=r"\['basophil'\].*map to none"):
        load_target(lab_with_new_class, base, new_classes=False)
    target = load_target(lab_with_new_class, base)
    assert target.classes == ["lymphocyte", "monocyte", "neutrophil", "basophil"]
    # imprinting: old rows kept, the new row points along the mean hidden feature of its shots
    y = target.labels
    shots = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(4)])
    ext = imprint_classes(base, target.classes, target.images[shots], y[shots], target.images)
    assert ext.classes == base.classes + ["basophil"] and base.model.num_classes == 4
    old, new = base.model.head[-1], ext.model.head[-1]
    assert torch.equal(new.weight[:4], old.weight) and torch.equal(new.bias[:4], old.bias)
    assert float(new.weight[4].detach().norm()) == pytest.approx(float(old.weight.detach().norm(dim=1).mean()),
                                                         rel=1e-5)
    from hemascope.adapt.batchnorm import reestimate_batchnorm
    probe = ext.model
    reestimate_batchnorm(probe, target.images, torch.tensor(base.config["mean"]),
                         torch.tensor(base.config["std"]))
    h = hidden_features(probe, target.images[shots[y[shots] == 3]], torch.tensor(base.config["mean"]),
                        torch.tensor(base.config["std"])).mean(0)
    assert float(torch.cosine_similarity(h, new.weight[4].detach(), dim=0)) == pytest.approx(1.0, abs=1e-4)
    # with no shot of it (a CV fold), the new class gets a row it never wins with
    none = imprint_classes(base, target.classes, target.images[shots[:6]], y[shots[:6]], target.images)
    assert float(none.model.head[-1].weight[4].detach().abs().sum()) == 0
    assert float(none.model.head[-1].bias[4].detach()) < float(old.bias.detach().min())
    assert imprint_classes(base, ["lymphocyte", "monocyte"], target.images[:2], y[:2],
                           target.images) is base
    # a whole run: the imprinted class alone (no training) already finds the basophils
    res = run_fewshot(target, base, FewShotConfig(shots=8, seed=0, mode="none", shot_epochs=0,
                                                  predict="head", threads=1))
    assert res.report.per_class["basophil"].recall >= 0.5
    # the default recipe keeps and saves it
    res = run_fewshot(target, base, FewShotConfig(shots=8, seed=1, epochs=3, shot_epochs=1,
                                                  threads=1), run_dir=tmp_path / "run")
    saved = load_classifier(tmp_path / "run" / "model")
    assert saved.classes == target.classes and saved.model.num_classes == 4
    assert saved.config["training"]["new_classes"] == ["basophil"]
    assert res.report.per_class["basophil"].support == 8 - 2
    # the study's "no source training" condition trains all classes from scratch
    run_fewshot(target, base, FewShotConfig(shots=8, mode="scratch", epochs=1, threads=1))
    # a new class needs a shot of its own
    from hemascope.data.splits import few_shot
    names = [target.classes[i] for i in y]
    seed = next(s for s in range(50)
                if not any("Basophils" in k for k in few_shot(target.keys, names, shots=2, seed=s)))
    with pytest.raises(DatasetError, match=r"\['basophil'\] are new.*--shots >= 4"):
        run_fewshot(target, base, FewShotConfig(shots=2, seed=seed, threads=1))
    assert main(["fewshot", "--data", str(lab_with_new_class), "--shots", "8", "--out",
                 str(tmp_path / "c"), "--base", str(tiny_model), "--no-new-classes",
                 "--threads", "1"]) != 0
    assert "map to none" in capsys.readouterr().err


def test_a_lab_with_a_few_labelled_cells_and_many_unlabelled(tiny_model, new_lab, tmp_path, capsys):
    """The lab's workflow (labelled shots + unlabelled cells) gives exactly the labels that
    the benchmark protocol (shots sampled from a labelled folder) gives for the same shots."""
    import csv
    import shutil

    from hemascope.adapt.uda import load_unlabelled

    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    cfg = FewShotConfig(shots=6, seed=2, epochs=2, shot_epochs=1, threads=1)
    bench = run_fewshot(target, base, cfg, run_dir=tmp_path / "bench")
    labelled, pool = tmp_path / "labelled", tmp_path / "pool"
    others = [k for k in target.keys if k not in set(bench.shots)]
    for k in bench.shots:
        (labelled / k).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(new_lab / k, labelled / k)
    pool.mkdir()
    for i, k in enumerate(others):  # names that keep the folder's order
        shutil.copy(new_lab / k, pool / f"{i:03d}.png")
    lab = run_fewshot(load_target(labelled, base), base, replace_shots(cfg, 6),
                      unlabelled=load_unlabelled(pool, base), run_dir=tmp_path / "lab")
    assert lab.report is None and sorted(lab.shots) == sorted(bench.shots)
    assert not (tmp_path / "lab" / "metrics.json").exists()
    rows = {r["path"]: r for r in csv.DictReader((tmp_path / "bench" / "predictions.csv").open())}
    mine = list(csv.DictReader((tmp_path / "lab" / "predictions.csv").open()))
    assert [r["split"] for r in mine] == ["shot"] * 6 + ["test"] * 18
    for i, k in enumerate(others):
        r = mine[6 + i]
        assert r["path"] == str(pool / f"{i:03d}.png") and r["true"] == ""
        assert (r["predicted"], r["probability"]) == (rows[k]["predicted"], rows[k]["probability"])
    saved = json.loads((tmp_path / "lab" / "model" / "config.json").read_text())
    assert saved["training"]["n_unlabelled"] == 18 and saved["metrics"] == {}
    # labelled images left over are still scored, the pool only labelled
    part = run_fewshot(target, base, cfg, unlabelled=load_unlabelled(pool, base))
    assert part.report.n_images == 18
    # the CLI: all of DATA are the shots when --unlabelled is given
    assert main(["fewshot", "--data", str(labelled), "--unlabelled", str(pool), "--out",
                 str(tmp_path / "cli"), "--base", str(tiny_model), "--epochs", "2",
                 "--shot-epochs", "1", "--seed", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "6 shots and 18 unlabelled images" in out
    assert (tmp_path / "cli" / "predictions.csv").read_text() == \
        (tmp_path / "lab" / "predictions.csv").read_text()
    assert main(["fewshot", "--data", str(labelled), "--unlabelled", str(pool), "--out",
                 str(tmp_path / "abl"), "--base", str(tiny_model), "--ablation"]) != 0
    assert "no --unlabelled" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="some must remain"):
        run_fewshot(load_target(labelled, base), base, replace_shots(cfg, 6))


def replace_shots(cfg, k):
    from dataclasses import replace
    return replace(cfg, shots=k)


def test_fine_tuning_epochs_shrink_to_the_image_budget(tiny_model, new_lab, tmp_path, monkeypatch):
    from hemascope.adapt import fewshot

    cfg = FewShotConfig(epochs=30, max_image_passes=6000)
    assert fewshot.fine_tune_epochs(cfg, 110) == 30  # CellaVision-sized runs are unchanged
    assert fewshot.fine_tune_epochs(cfg, 1100) == 5  # K = 100 plus 1000 pseudo-labels
    assert fewshot.fine_tune_epochs(cfg, 10 ** 6) == 1  # never below one epoch
    with pytest.raises(Exception, match="max-image-passes"):
        FewShotConfig(max_image_passes=0)
    seen = []
    real = fewshot.fine_tune_epochs
    monkeypatch.setattr(fewshot, "fine_tune_epochs", lambda c, n: seen.append((n, real(c, n)))
                        or real(c, n))
    assert main(["fewshot", "--data", str(new_lab), "--shots", "6", "--out", str(tmp_path / "r"),
                 "--base", str(tiny_model), "--epochs", "4", "--max-image-passes", "12",
                 "--shot-epochs", "0", "--threads", "1"]) == 0
    assert seen and seen[0] == (6, 2)  # 6 shots x 2 epochs = the budget of 12
    cfg = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert cfg["training"]["fewshot"]["max_image_passes"] == 12


def test_an_attribute_embedding_can_join_the_propagation_graph(tiny_model, new_lab, graph_spy):
    """--propagate-with: the graph reads the classifier's and the attribute model's embeddings
    side by side, each centred and of unit length; the shots' labels are all it is told."""
    from hemascope.adapt.fewshot import join_embeddings
    from hemascope.attributes.predict import attribute_embeddings, load_attribute_model

    a, b = np.random.default_rng(0).normal(size=(2, 7, 5)) + 3.0
    joined = join_embeddings(a, b[:, :3])
    assert joined.shape == (7, 8)
    assert np.allclose(np.linalg.norm(joined[:, :5], axis=1), 1)
    assert np.allclose(np.linalg.norm(joined[:, 5:], axis=1), 1)
    seen = graph_spy
    base = load_classifier(tiny_model)
    target = load_target(new_lab, base)
    for using in ("none", "default"):
        run_fewshot(target, base, FewShotConfig(shots=6, seed=1, mode="none", shot_epochs=0,
                                                views=1, threads=1, propagate_with=using))
    attr = attribute_embeddings(load_attribute_model("default"), list(target.images))
    assert seen[1].shape == (len(target.images), seen[0].shape[1] + attr.shape[1])
    block, expect = seen[1][:, seen[0].shape[1]:], join_embeddings(attr)
    gaps = np.linalg.norm(block[:, None] - expect[None], axis=2)  # rows: shots first, then the rest
    assert gaps.min(1).max() < 1e-4


def test_propagate_with_a_classifier_folder_fails_before_training(tiny_model, new_lab, monkeypatch):
    import hemascope.adapt.fewshot as fewshot
    from hemascope.models.artifact import ModelError

    monkeypatch.setattr(fewshot, "fit_and_predict", lambda *a, **k: pytest.fail("trained"))
    base = load_classifier(tiny_model)
    with pytest.raises(ModelError, match="not an attribute model"):
        run_fewshot(load_target(new_lab, base), base,
                    FewShotConfig(shots=6, threads=1, propagate_with=str(tiny_model)))
