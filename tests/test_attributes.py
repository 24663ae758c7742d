"""Morphology attributes: scoring, the multi-head model, train/evaluate round trip, bad tables."""

import csv
import json

import numpy as np
import pytest
import torch

from hemascope import taxonomy
from hemascope.attributes import AttributeModel, attribute_loss, load_attribute_model
from hemascope.cli import main
from hemascope.evaluate.attributes import attribute_report
from hemascope.io.image import write_image
from hemascope.models.artifact import ModelError
from hemascope.synthetic import make_cell

HEADER = ["img_name", "label", *taxonomy.ATTRIBUTES, "path"]
#: attribute values that follow the (synthetic) cell type, so a model can learn them
BY_KIND = {"neutrophil": ("segmented-multilobed", "pink", "no"),
           "lymphocyte": ("unsegmented-round", "nil", "no"),
           "eosinophil": ("segmented-bilobed", "red", "yes"),
           "monocyte": ("unsegmented-indented", "nil", "yes")}


def _row(kind, rel):
    nucleus, granule, vacuole = BY_KIND[kind]
    attrs = {a: v[0] for a, v in taxonomy.ATTRIBUTES.items()}
    attrs.update(nucleus_shape=nucleus, granule_colour=granule, cytoplasm_vacuole=vacuole,
                 cell_size="small" if kind == "lymphocyte" else "big")
    return {"img_name": rel.split("/")[-1], "label": kind.capitalize(), **attrs, "path": rel}


def _write_table(path, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, HEADER)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def wbcatt(tmp_path_factory):
    """WBCAtt-shaped tables over synthetic cells: 12 train, 4 val, 4 test per type."""
    root = tmp_path_factory.mktemp("wbcatt")
    rows = {"train": [], "val": [], "test": []}
    for kind in BY_KIND:
        for i in range(20):
            rel = f"PBC_dataset_normal_DIB/{kind}/{kind[:3]}_{i}.jpg"
            write_image(root / "pbc" / rel, make_cell(kind, seed=i, size=48).image)
            part = "train" if i < 12 else "val" if i < 16 else "test"
            rows[part].append(_row(kind, rel))
    (root / "wbcatt").mkdir()
    for part, rs in rows.items():
        with open(root / "wbcatt" / f"pbc_attr_v1_{part}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, HEADER)
            w.writeheader()
            w.writerows(rs)
    return root


def test_attribute_report_perfect_partial_and_errors():
    values = {"cell_size": ("big", "small"), "granularity": ("no", "yes")}
    truth = {"cell_size": ["big", "small", "big", "small"], "granularity": ["no", "no", "yes", ""]}
    perfect = attribute_report(truth, {"cell_size": truth["cell_size"],
                                       "granularity": ["no", "no", "yes", "yes"]}, values)
    assert perfect.average_macro_f1 == 1.0 and perfect.average_accuracy == 1.0
    assert perfect.attributes["granularity"].n_images == 3  # the unknown value is left out
    half = attribute_report(truth, {"cell_size": ["big", "big", "big", "big"],
                                    "granularity": ["no", "no", "yes", "no"]}, values)
    assert half.attributes["cell_size"].accuracy == 0.5
    d = half.to_dict()
    assert {"attributes", "average_macro_f1", "average_accuracy"} <= set(d)
    assert d["average_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="granularity.*'maybe'"):
        attribute_report(truth, {"cell_size": truth["cell_size"],
                                 "granularity": ["no", "maybe", "yes", "no"]}, values)
    with pytest.raises(ValueError, match="no predictions"):
        attribute_report(truth, {"cell_size": truth["cell_size"]}, values)


def test_model_heads_split_and_loss_ignores_unknown():
    torch.manual_seed(0)
    attrs = {"a": ("x", "y"), "b": ("p", "q", "r")}
    m = AttributeModel("tinycnn", attrs, image_size=32)
    logits = m(torch.rand(4, 3, 32, 32))
    assert logits.shape == (4, 5)
    parts = m.split(logits)
    assert parts["a"].shape == (4, 2) and parts["b"].shape == (4, 3)
    t = torch.tensor([[0, -1], [1, -1], [0, -1], [1, -1]])
    only_a = attribute_loss(m, logits, t)
    expect = torch.nn.functional.cross_entropy(parts["a"], t[:, 0])
    assert torch.allclose(only_a, expect)
    with pytest.raises(ValueError):
        AttributeModel("tinycnn", {"a": ("x",)})


@pytest.fixture(scope="module")
def att_model(wbcatt, tmp_path_factory):
    out = tmp_path_factory.mktemp("att")
    code = main(["train", "attributes", "--data", str(wbcatt / "wbcatt"), "--images",
                 str(wbcatt / "pbc"), "--out", str(out), "--arch", "tinycnn", "--image-size", "32",
                 "--epochs", "6", "--batch-size", "16", "--lr", "0.003", "--threads", "1",
                 "--fit-to-time", "--max-minutes", "600"])
    assert code == 0
    return out


def test_train_evaluate_round_trip(wbcatt, att_model, tmp_path):
    out = att_model
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"] == "attributes" and list(cfg["attributes"]) == list(taxonomy.ATTRIBUTES)
    assert cfg["training"]["split_method"] == "official"
    assert cfg["training"]["n_images"] == {"test": 16, "train": 48, "val": 16}
    # a generous time box fits all 6 planned epochs: --fit-to-time never lengthens a run
    assert cfg["training"]["config"]["fit_to_time"] is True
    assert cfg["training"]["config"]["epochs"] == 6
    assert len((out / "history.jsonl").read_text().splitlines()) == 6
    code = main(["evaluate", "attributes", "--model", str(out), "--csv",
                 str(wbcatt / "wbcatt" / "pbc_attr_v1_test.csv"), "--images", str(wbcatt / "pbc"),
                 "--json", str(tmp_path / "e.json")])
    assert code == 0
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["n_images"] == 16 and set(rep["attributes"]) == set(taxonomy.ATTRIBUTES)
    # attributes that follow the cell type are learnt above chance
    assert rep["attributes"]["cell_size"]["accuracy"] > 0.6, rep["attributes"]["cell_size"]
    assert 0 <= rep["average_macro_f1"] <= 1
    loaded = load_attribute_model(out)
    from hemascope.attributes import predict_attributes

    pred = predict_attributes(loaded, [make_cell("lymphocyte", seed=99, size=48).image])[0]
    assert set(pred.values) == set(taxonomy.ATTRIBUTES)
    assert all(pred.values[k] in v for k, v in taxonomy.ATTRIBUTES.items())
    assert all(0 < p <= 1 for p in pred.probabilities.values())


def test_bad_tables_and_models(wbcatt, tmp_path, tiny_model):
    bad = tmp_path / "bad.csv"
    rows = list(csv.DictReader(open(wbcatt / "wbcatt" / "pbc_attr_v1_test.csv")))
    rows[1]["nucleus_shape"] = "triangular"
    _write_table(bad, rows)
    with pytest.raises(Exception, match="triangular"):
        from hemascope.evaluate.attributes import evaluate_attributes

        evaluate_attributes(bad, model=tiny_model, images=wbcatt / "pbc")
    missing = tmp_path / "missing_cols.csv"
    missing.write_text("img_name,label,path\na.jpg,Neutrophil,a.jpg\n")
    assert main(["evaluate", "attributes", "--csv", str(missing), "--model", str(tiny_model)]) == 1
    with pytest.raises(ModelError, match="not an attribute model"):
        load_attribute_model(tiny_model)
    with pytest.raises(ModelError, match="does not exist|not a folder|no such"):
        load_attribute_model(tmp_path / "nowhere")
    empty = tmp_path / "empty_tables"
    empty.mkdir()
    assert main(["train", "attributes", "--data", str(empty), "--out", str(tmp_path / "o")]) == 1


def test_analyze_reports_attributes_per_white_cell(att_model, tiny_model, tmp_path):
    from hemascope.pipeline import analyze

    write_image(tmp_path / "in" / "c.png", make_cell("neutrophil", seed=5, size=64).image)
    r = analyze(tmp_path / "in", out_dir=tmp_path / "out", classifier=tiny_model,
                attributes=att_model)
    saved = json.loads((tmp_path / "out" / "images" / "c.json").read_text())
    attrs = saved["cells"][0]["attributes"]
    assert set(attrs) == set(taxonomy.ATTRIBUTES)
    assert attrs["nucleus_shape"]["value"] in taxonomy.ATTRIBUTES["nucleus_shape"]
    assert r.images[0].cells[0].attributes == attrs
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["models"]["attributes"]["classes"] == list(taxonomy.ATTRIBUTES)
    # resumed records keep their attributes
    again = analyze(tmp_path / "in", out_dir=tmp_path / "out", classifier=tiny_model,
                    attributes=att_model, resume=True)
    assert again.resumed == 1 and again.images[0].cells[0].attributes == attrs


def test_classify_adds_attributes(att_model, tiny_model, tmp_path):
    write_image(tmp_path / "c.png", make_cell("eosinophil", seed=1, size=48).image)
    assert main(["classify", str(tmp_path / "c.png"), "--model", str(tiny_model), "--attributes",
                 str(att_model), "--json", str(tmp_path / "p.json")]) == 0
    pred = json.loads((tmp_path / "p.json").read_text())["predictions"][0]
    assert set(pred["attributes"]) == set(taxonomy.ATTRIBUTES) and pred["class"]


def test_agreement_and_kappa():
    from hemascope.evaluate.attributes import agreement

    values = {"granularity": ("no", "yes")}
    same = agreement({"granularity": ["no", "yes", "no", "yes"]},
                     {"granularity": ["no", "yes", "no", "yes"]}, values)
    assert same["granularity"] == {"agreement": 1.0, "kappa": 1.0, "n": 4}
    # agreement no better than chance -> kappa 0
    chance = agreement({"granularity": ["no", "no", "yes", "yes"]},
                       {"granularity": ["no", "yes", "no", "yes"]}, values)
    assert chance["granularity"]["agreement"] == 0.5
    assert chance["granularity"]["kappa"] == pytest.approx(0.0)


def test_gradcam_on_an_attribute_head(att_model, tmp_path):
    write_image(tmp_path / "c.png", make_cell("monocyte", seed=3, size=48).image)
    assert main(["explain", "gradcam", str(tmp_path / "c.png"), "--model", str(att_model),
                 "--attribute", "nucleus_shape", "--out", str(tmp_path / "cam"),
                 "--json", str(tmp_path / "g.json")]) == 0
    row = json.loads((tmp_path / "g.json").read_text())["explanations"][0]
    assert row["class"] in taxonomy.ATTRIBUTES["nucleus_shape"] and 0 < row["probability"] <= 1
    assert (tmp_path / "cam" / "c_nucleus_shape_gradcam.png").is_file()
    assert main(["explain", "gradcam", str(tmp_path / "c.png"), "--model", str(att_model),
                 "--attribute", "hair_colour", "--out", str(tmp_path / "cam")]) == 1


def test_concept_bottleneck_fit_save_explain_intervene(wbcatt, att_model, tmp_path, capsys):
    out = tmp_path / "cbm"
    assert main(["train", "concepts", "--attributes", str(att_model), "--data",
                 str(wbcatt / "wbcatt"), "--images", str(wbcatt / "pbc"), "--out", str(out),
                 "--json", str(tmp_path / "c.json")]) == 0
    saved = json.loads((out / "concepts.json").read_text())
    assert saved["classes"] == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert len(saved["concepts"]) == sum(len(v) for v in taxonomy.ATTRIBUTES.values())
    assert saved["metrics"]["test"]["n_images"] == 16
    assert saved["metrics"]["test_gradient_boosting"]["n_images"] == 16
    write_image(tmp_path / "c.png", make_cell("lymphocyte", seed=7, size=48).image)
    assert main(["explain", "concepts", str(tmp_path / "c.png"), "--concepts", str(out),
                 "--set", "nucleus_shape=segmented-multilobed", "--json", str(tmp_path / "x.json")]) == 0
    cell = json.loads((tmp_path / "x.json").read_text())["cells"][0]
    assert set(cell["attributes"]) == set(taxonomy.ATTRIBUTES)
    after = cell["after_intervention"]
    assert after["set"] == {"nucleus_shape": "segmented-multilobed"}
    assert sum(after["probabilities"].values()) == pytest.approx(1.0)
    assert main(["explain", "concepts", str(tmp_path / "c.png"), "--concepts", str(out),
                 "--set", "nucleus_shape=square"]) == 1
    assert main(["explain", "concepts", str(tmp_path / "c.png"), "--concepts", str(out),
                 "--set", "Nucleus Shape=Segmented-Multilobed", "--json", str(tmp_path / "y.json")]) == 0
    again = json.loads((tmp_path / "y.json").read_text())["cells"][0]["after_intervention"]
    assert again == after  # matched whatever the case and spacing
    assert main(["explain", "concepts", str(tmp_path / "c.png"), "--concepts", str(out),
                 "--set", "nucleus_shape=irregular", "--set", "nucleus_shape=segmented-multilobed"]) == 1
    assert "twice" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "concepts.json").write_text("{not json")
    assert main(["explain", "concepts", str(tmp_path / "c.png"), "--concepts",
                 str(tmp_path / "broken")]) == 1


def test_counterfactual_retrieval_cli(wbcatt, att_model, tmp_path):
    """Returned cells differ from the query in the asked attribute; bad names are errors."""
    write_image(tmp_path / "q.png", make_cell("neutrophil", seed=3, size=48).image)
    csvp = wbcatt / "wbcatt" / "pbc_attr_v1_train.csv"
    args = ["explain", "counterfactual", str(tmp_path / "q.png"), "--attributes", str(att_model),
            "--gallery", str(csvp), "--images", str(wbcatt / "pbc"), "--attribute", "nucleus_shape"]
    assert main(args + ["-k", "3", "--out", str(tmp_path / "cf.png"),
                        "--json", str(tmp_path / "cf.json")]) == 0
    res = json.loads((tmp_path / "cf.json").read_text())
    q = res["query"]["attributes"]["nucleus_shape"]
    assert res["n_gallery"] == 48 and 1 <= len(res["results"]) <= 3
    assert all(r["value"] != q for r in res["results"])
    ranks = [(r["other_differences"], r["distance"]) for r in res["results"]]
    assert ranks == sorted(ranks)
    assert (tmp_path / "cf.png").stat().st_size > 0
    other = next(v for v in ("segmented-multilobed", "unsegmented-round") if v != q)
    assert main(args + ["--value", other, "--json", str(tmp_path / "v.json")]) == 0
    res = json.loads((tmp_path / "v.json").read_text())
    assert res["results"] and all(r["value"] == other for r in res["results"])
    assert main(args + ["--value", q, "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["results"] == []
    assert main(args[:-1] + ["hair_colour"]) == 1
    assert main(args + ["--value", "square"]) == 1


def test_bias_study_splits_errors_by_attribute(wbcatt, att_model, tiny_model, tmp_path):
    csvp = wbcatt / "wbcatt" / "pbc_attr_v1_train.csv"
    assert main(["explain", "bias", "--csv", str(csvp), "--images", str(wbcatt / "pbc"), "--model",
                 str(tiny_model), "--min-support", "3", "--flag-gap", "0", "--json",
                 str(tmp_path / "b.json")]) == 0
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["n_images"] == 48 and res["source"] == "table"
    for f in res["findings"]:
        assert f["worst_error"] >= f["best_error"] and f["gap"] >= 0
        assert f["attribute"] in taxonomy.ATTRIBUTES
    from hemascope.explain.bias_study import bias_study

    read = bias_study(csvp, model=tiny_model, images=wbcatt / "pbc", attributes=att_model,
                      min_support=3, flag_gap=0)
    assert read["source"] == "attribute model" and read["n_images"] == 48


def test_structure_aware_model_trains_with_predicted_masks(wbcatt, tmp_path):
    """Part masks from a (tiny) segmenter travel with the attribute model and feed it."""
    from hemascope.attributes.model import AGGREGATIONS, PartAwareAttributeModel

    for agg in AGGREGATIONS:
        m = PartAwareAttributeModel("tinycnn", {"a": ("x", "y")}, aggregate=agg, image_size=32)
        assert m(torch.rand(2, 5, 32, 32)).shape == (2, 2)
    seg_data = tmp_path / "segdata"
    for i, kind in enumerate(["neutrophil", "lymphocyte", "monocyte", "eosinophil"]):
        c = make_cell(kind, seed=i, size=48)
        write_image(seg_data / f"{i}.bmp", c.image)
        write_image(seg_data / f"{i}.png", c.mask)
    seg = tmp_path / "seg"
    assert main(["train", "segmentation", "--data", str(seg_data), "--out", str(seg),
                 "--epochs", "2", "--image-size", "32", "--width", "4", "--batch-size", "2",
                 "--threads", "1"]) == 0
    out = tmp_path / "sa"
    assert main(["train", "attributes", "--data", str(wbcatt / "wbcatt"), "--images",
                 str(wbcatt / "pbc"), "--out", str(out), "--arch", "tinycnn", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "16", "--threads", "1", "--segmenter", str(seg),
                 "--aggregate", "mean"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["segmenter"] == "segmenter" and (out / "segmenter" / "model.safetensors").is_file()
    loaded = load_attribute_model(out)
    assert type(loaded.model).__name__ == "PartAwareAttributeModel"
    from hemascope.attributes import predict_attributes

    pred = predict_attributes(loaded, [make_cell("monocyte", seed=9, size=48).image])[0]
    assert set(pred.values) == set(taxonomy.ATTRIBUTES)


def test_attribute_tta_averages_dihedral_views(att_model, wbcatt, tmp_path):
    """TTA probabilities are the mean of the per-view ones; bad view counts are refused."""
    from hemascope.attributes.predict import attribute_probabilities
    from hemascope.classify import dihedral_views

    loaded = load_attribute_model(att_model)
    imgs = [make_cell(k, seed=i, size=40).image for i, k in enumerate(["monocyte", "eosinophil"])]
    p1 = attribute_probabilities(loaded, imgs)
    p8 = attribute_probabilities(loaded, imgs, tta=8)
    flipped = [np.ascontiguousarray(im[:, ::-1]) for im in imgs]
    by_hand = attribute_probabilities(loaded, flipped)
    p2 = attribute_probabilities(loaded, imgs, tta=2)
    for k in p1:
        assert np.allclose(p8[k].sum(1), 1, atol=1e-5)
        assert np.allclose(p2[k], (p1[k] + by_hand[k]) / 2, atol=1e-4)
    assert len(dihedral_views(torch.zeros(1, 3, 4, 4), 8)) == 8
    with pytest.raises(ValueError, match="tta"):
        attribute_probabilities(loaded, imgs, tta=3)
    code = main(["evaluate", "attributes", "--model", str(att_model), "--csv",
                 str(wbcatt / "wbcatt" / "pbc_attr_v1_test.csv"), "--images", str(wbcatt / "pbc"),
                 "--tta", "4", "--json", str(tmp_path / "t.json")])
    assert code == 0 and json.loads((tmp_path / "t.json").read_text())["n_images"] == 16


def test_adapt_attributes_to_another_lab(wbcatt, att_model, shifted, tiny_model, tmp_path, capsys):
    """adapt attributes: MMD / DANN learn from the annotated source while aligning features
    with the unlabelled target; AdaBN takes the target's batch statistics; bad calls say why."""
    from hemascope.adapt.uda import mmd2
    from hemascope.attributes.adapt import adapt_attributes, attribute_uda_config, source_cells
    from hemascope.errors import HemascopeError
    from hemascope.classify import preprocess

    base = load_attribute_model(att_model)
    src, labels, errors = source_cells(wbcatt / "wbcatt", base, images=wbcatt / "pbc",
                                       max_cells=30)
    assert src.shape == (30, 32, 32, 3) and labels.shape == (30, len(taxonomy.ATTRIBUTES))
    assert not errors and (labels >= 0).all()
    from hemascope.adapt.uda import load_unlabelled

    lab = load_unlabelled([shifted], base)
    tgt = lab.images
    assert len(tgt) == 12 and not lab.errors

    def gap(model) -> float:
        with torch.no_grad():
            return float(mmd2(model.eval().encoder(preprocess(list(src[:12]), base.config)),
                              model.encoder(preprocess(list(tgt), base.config))))

    cfg = attribute_uda_config(method="mmd", epochs=2, steps_per_epoch=15, batch_size=8,
                               lr=3e-3, domain_weight=5.0, threads=1)
    res = adapt_attributes(base, tgt, cfg, source=src, source_targets=labels)
    assert len(res.history) == 2 and res.n_source == 30 and res.n_target == 12
    assert gap(res.model) < gap(base.model)  # the colour-cast lab moved towards the source
    with pytest.raises(HemascopeError, match="annotated source"):
        adapt_attributes(base, tgt, cfg)
    with pytest.raises(HemascopeError, match="unknown method"):
        adapt_attributes(base, tgt, attribute_uda_config(method="shot"))

    out = tmp_path / "adapted"
    assert main(["adapt", "attributes", "--method", "dann", "--base", str(att_model),
                 "--target", str(shifted),
                 "--source", str(wbcatt / "wbcatt"), "--images", str(wbcatt / "pbc"),
                 "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size",
                 "4", "--max-source", "20", "--threads", "1"]) == 0
    cfg_out = json.loads((out / "config.json").read_text())
    assert cfg_out["task"] == "attributes" and cfg_out["training"]["adaptation"] == "DANN"
    assert cfg_out["training"]["n_source"] == 20 and cfg_out["training"]["n_target"] == 12
    adapted = load_attribute_model(out)  # loads wherever an attribute model does
    assert adapted.model.attributes == base.model.attributes
    assert main(["classify", str(shifted / "lymphocyte" / "0.png"), "--model", str(tiny_model),
                 "--attributes", str(out), "--json", str(tmp_path / "c.json")]) == 0
    pred = json.loads((tmp_path / "c.json").read_text())["predictions"][0]
    assert set(pred["attributes"]) == set(taxonomy.ATTRIBUTES)
    bn_out = tmp_path / "bn"
    assert main(["adapt", "attributes", "--method", "bn", "--base", str(att_model), "--target",
                 str(shifted), "--out", str(bn_out)]) == 0
    bn = load_attribute_model(bn_out).model
    from hemascope.adapt.batchnorm import encoder_batchnorms

    moved = [not torch.allclose(a.running_mean, b.running_mean)
             for a, b in zip(encoder_batchnorms(bn), encoder_batchnorms(base.model))]
    assert moved and all(moved)
    capsys.readouterr()
    assert main(["adapt", "attributes", "--target", str(shifted), "--out",
                 str(tmp_path / "x")]) == 1
    assert "--source" in capsys.readouterr().err
    assert main(["adapt", "attributes", "--method", "bn", "--target", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "y")]) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.realdata
def test_unlabelled_cells_of_a_folder_with_a_label_table(shared_data, att_model):
    from hemascope.adapt.uda import load_unlabelled

    cells = load_unlabelled([shared_data / "cellavision"], load_attribute_model(att_model))
    assert len(cells.images) == 100 and not cells.errors  # its 100 mask PNGs are not cells


def test_value_offsets_move_boundaries_for_macro_f1():
    from hemascope.attributes.bias import (apply_value_bias, fit_offsets, fit_prior_tau,
                                           fit_value_bias, log_prior_from_counts, macro_f1)

    # the head under-calls value 1: its true cells get p(1) of 0.30-0.45, the others 0.05-0.25
    rng = np.random.default_rng(0)
    t = np.array([0] * 80 + [1] * 20 + [-1] * 5)
    p1 = np.where(t == 1, rng.uniform(0.30, 0.45, len(t)), rng.uniform(0.05, 0.25, len(t)))
    probs = np.stack([1 - p1, p1], 1)
    known = t >= 0
    assert macro_f1(t[known], probs[known].argmax(1), 2) < 0.5
    bias = fit_value_bias(probs, t)
    assert bias[0] == 0 and bias[1] > 0
    adjusted = apply_value_bias(probs, bias)
    assert np.allclose(adjusted.sum(1), 1)
    assert macro_f1(t[known], adjusted[known].argmax(1), 2) == 1.0
    # logit adjustment moves towards the rare value too
    tau = fit_prior_tau(probs, t, log_prior_from_counts([80, 20]))
    assert tau > 0
    # a head that is already right keeps its boundaries (ties go to the smallest offset)
    right = np.stack([t[known] == 0, t[known] == 1], 1) * 0.8 + 0.1
    assert np.all(fit_value_bias(right, t[known]) == 0)
    assert apply_value_bias(probs, None) is probs
    with pytest.raises(ValueError, match="offsets"):
        apply_value_bias(probs, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="labels"):
        fit_value_bias(probs, t[:10])
    with pytest.raises(ValueError, match="method"):
        fit_offsets("median", {"a": probs}, {"a": t})
    with pytest.raises(ValueError, match="training counts"):
        fit_offsets("prior", {"a": probs}, {"a": t})


def test_adapt_offsets_writes_a_copy_that_applies_them(wbcatt, att_model, tmp_path, capsys):
    """`adapt offsets` on a lab whose convention differs (it calls every cell 'small'):
    in-sample macro-F1 never falls, the weights are copied unchanged, the copy predicts with
    the offsets, and the input model is never overwritten."""
    from hemascope.attributes import attribute_probabilities

    with open(wbcatt / "wbcatt" / "pbc_attr_v1_val.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["label"] == "Monocyte":
            r["cell_size"] = "small"
    lab = tmp_path / "lab.csv"
    _write_table(lab, rows)
    out = tmp_path / "offsets"
    code = main(["adapt", "offsets", "--data", str(lab), "--images", str(wbcatt / "pbc"),
                 "--model", str(att_model), "--out", str(out), "--min-cells", "5",
                 "--json", str(tmp_path / "o.json")])
    assert code == 0
    res = json.loads((tmp_path / "o.json").read_text())
    assert all(res["macro_f1_after"][k] >= res["macro_f1_before"][k] - 1e-9 for k in res["offsets"])
    assert res["n_cells"]["cell_size"] == 16
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["value_bias"] == res["offsets"] and cfg["value_bias_source"] == str(lab)
    assert cfg["value_bias_tta"] == 1
    assert (out / "model.safetensors").read_bytes() == (att_model / "model.safetensors").read_bytes()
    # the copy applies its offsets; adjusted=False gives the heads' own softmax
    cfg["value_bias"] = {"cell_size": [0.0, 30.0]}
    (out / "config.json").write_text(json.dumps(cfg))
    loaded = load_attribute_model(out)
    imgs = [make_cell(k, seed=7, size=48).image for k in BY_KIND]
    assert (attribute_probabilities(loaded, imgs)["cell_size"].argmax(1) == 1).all()
    raw = attribute_probabilities(loaded, imgs, adjusted=False)["cell_size"]
    assert np.allclose(raw, attribute_probabilities(load_attribute_model(att_model), imgs)["cell_size"],
                       atol=1e-5)
    cfg["value_bias"] = {"cell_size": [0.0]}
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="value_bias"):
        load_attribute_model(out)
    # too few cells keep the boundaries; the model's own folder is refused before any work
    code = main(["adapt", "offsets", "--data", str(lab), "--images", str(wbcatt / "pbc"),
                 "--model", str(att_model), "--out", str(tmp_path / "kept")])
    assert code == 0 and "kept (fewer than 30 cells)" in capsys.readouterr().out
    kept = json.loads((tmp_path / "kept" / "config.json").read_text())["value_bias"]
    assert all(v == 0 for off in kept.values() for v in off)
    before = (att_model / "config.json").read_bytes()
    assert main(["adapt", "offsets", "--data", str(lab), "--images", str(wbcatt / "pbc"),
                 "--model", str(att_model), "--out", str(att_model)]) != 0
    assert "own folder" in capsys.readouterr().err
    assert (att_model / "config.json").read_bytes() == before


def test_audit_flags_wrong_attribute_labels(wbcatt, att_model, tmp_path, capsys):
    """hemascope audit --what attributes: nucleus shapes written against the cell type are
    the least probable labels of that attribute, and the CSV lists every known label."""
    rows = []
    for part in ("val", "test"):
        with open(wbcatt / "wbcatt" / f"pbc_attr_v1_{part}.csv", newline="") as fh:
            rows += list(csv.DictReader(fh))
    wrong = {}
    for r in rows:
        if r["label"] == "Lymphocyte" and len(wrong) < 3:
            r["nucleus_shape"] = "segmented-multilobed"
            wrong[r["path"]] = r
    table = tmp_path / "lab.csv"
    _write_table(table, rows)
    out = tmp_path / "audit.csv"
    assert main(["audit", "--what", "attributes", "--data", str(table), "--images",
                 str(wbcatt / "pbc"), "--attributes", str(att_model), "--out", str(out),
                 "--gallery", str(tmp_path / "g.png"), "--json", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    got = list(csv.DictReader(out.open()))
    assert len(got) == 32 * 11
    nucleus = sorted((r for r in got if r["attribute"] == "nucleus_shape"),
                     key=lambda r: float(r["label_probability"]))
    assert {r["path"] for r in nucleus[:3]} == set(wrong)
    suspects = [r for r in got if r["verdict"] == "suspect"]
    assert got[:len(suspects)] == suspects
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["cells"] == 32 and summary["suspects"] == len(suspects)
    # an unknown attribute value is an error naming the file
    rows[1]["nucleus_shape"] = "star-shaped"
    _write_table(table, rows)
    assert main(["audit", "--what", "attributes", "--data", str(table), "--images",
                 str(wbcatt / "pbc"), "--attributes", str(att_model), "--out",
                 str(tmp_path / "a2.csv")]) == 1
    assert "lab.csv" in capsys.readouterr().err
