"""The classifier shipped inside the package."""

import json

import pytest

from hemascope.models.artifact import default_model_dir, load_classifier
from hemascope.taxonomy import vocabulary


def test_default_loads_with_its_card_and_split():
    d = default_model_dir()
    assert (d / "model.safetensors").stat().st_size < 25 * 2**20
    assert (d / "MODEL_CARD.md").is_file() and (d / "split.json").is_file()
    m = load_classifier("default")
    assert m.classes == list(vocabulary("pbc8").classes)
    assert m.config["source_style"]["method"] == "reinhard"
    assert m.config["stain_reference"] is None  # PBC images are used as they are
    test = m.config["metrics"]["test"]
    assert test["n_images"] == 3419 and set(test) >= {"accuracy", "macro_f1", "ci95"}


@pytest.mark.realdata
def test_default_on_held_out_pbc_images(shared_data):
    from hemascope.data.splits import load_split
    from hemascope.evaluate.classifier import evaluate_classifier

    pbc = shared_data / "pbc" / "PBC_dataset_normal_DIB"
    test_keys = set(load_split(default_model_dir() / "split.json").keys("test"))
    # 10 held-out images per class, a quick check that the shipped weights work
    from hemascope.data.folder import read_class_folders

    ds = read_class_folders(pbc, vocabulary="pbc8")
    picked = set()
    for c in ds.classes:
        picked |= set([s.path for s in ds.samples if s.label == c and s.path in test_keys][:10])
    ev = evaluate_classifier(ds.subset(paths=picked), model="default", n_bootstrap=0)
    assert ev.report.n_images == 80
    assert ev.report.accuracy >= 0.9, json.dumps(ev.report.to_dict()["per_class"])


_NO_DETECTOR = pytest.mark.skipif(not default_model_dir("detector").is_dir(),
                                  reason="default detector not shipped yet")


@_NO_DETECTOR
def test_default_detector_loads_with_its_card():
    from hemascope.detect.predict import load_detector

    d = default_model_dir("detector")
    assert (d / "model.safetensors").stat().st_size < 25 * 2**20
    assert (d / "MODEL_CARD.md").is_file()
    det = load_detector("default")
    assert det.classes == ["WBC", "RBC", "Platelets"]
    assert det.config["size_reference"]["class"] == "RBC"
    assert set(det.config["count_thresholds"]) == set(det.classes)
    test = det.config["metrics"]["test"]
    assert test["n_images"] == 60 and 0 < test["map50"] <= 1


@_NO_DETECTOR
@pytest.mark.realdata
def test_default_detector_and_analyze_on_cbc_test_fields(shared_data, tmp_path):
    from hemascope.data import load_dataset
    from hemascope.evaluate.detection import GroundTruth, detection_report
    from hemascope.evaluate.detector import load_fields
    from hemascope.detect.predict import detect_field, load_detector
    from hemascope.pipeline import analyze

    det = load_detector("default")
    ds = load_dataset(shared_data / "cbc").subset("test")
    ds.images = ds.images[:6]
    fs = load_fields(ds, det.classes)
    preds = [detect_field(det, f.image) for f in fs.fields]
    rep = detection_report([GroundTruth(f.boxes, f.labels) for f in fs.fields], preds, det.classes)
    assert rep.per_class["WBC"]["ap50"] >= 0.8 and rep.map50 >= 0.6, rep.per_class
    res = analyze([f"{ds.image_root}/{im.file_name}" for im in ds.images[:2]], out_dir=tmp_path)
    assert len(res.images) == 2 and not res.errors
    for r, im in zip(res.images, ds.images[:2]):
        true_wbc = sum(1 for i in im.instances if i.label == "WBC")
        assert abs(sum(c.kind == "WBC" for c in r.cells) - true_wbc) <= 1


_NO_ATTRIBUTES = pytest.mark.skipif(not default_model_dir("attributes").is_dir(),
                                    reason="default attribute model not shipped yet")


@_NO_ATTRIBUTES
def test_default_attribute_model_loads_with_its_card():
    from hemascope import taxonomy
    from hemascope.attributes import load_attribute_model, predict_attributes
    from hemascope.synthetic import make_cell

    d = default_model_dir("attributes")
    assert (d / "model.safetensors").stat().st_size < 25 * 2**20
    assert (d / "MODEL_CARD.md").is_file()
    m = load_attribute_model("default")
    assert {k: list(v) for k, v in m.model.attributes.items()} == \
        {k: list(v) for k, v in taxonomy.ATTRIBUTES.items()}
    test = m.config["metrics"]["test"]
    assert test["n_images"] > 3000 and 0 < test["average_macro_f1"] <= 1
    [pred] = predict_attributes(m, [make_cell("neutrophil", seed=0, size=96).image])
    assert set(pred.values) == set(taxonomy.ATTRIBUTES)


@_NO_ATTRIBUTES
@pytest.mark.realdata
def test_default_attribute_model_on_wbcatt_test_cells(shared_data, tmp_path):
    """40 official test cells: the shipped weights read attributes far above chance."""
    from hemascope.evaluate.attributes import evaluate_attributes

    rows = (shared_data / "wbcatt" / "pbc_attr_v1_test.csv").read_text().splitlines()
    (tmp_path / "pbc_attr_v1_test.csv").write_text("\n".join(rows[:41]) + "\n")
    ev = evaluate_attributes(tmp_path / "pbc_attr_v1_test.csv", model="default",
                             images=shared_data / "pbc")
    assert ev.report.n_images == 40
    assert ev.report.average_accuracy >= 0.75, ev.report.to_dict()


@pytest.mark.skipif(not default_model_dir("segmentation").is_dir(),
                    reason="default part segmenter not shipped yet")
def test_default_segmenter_loads_with_its_card_and_finds_the_nucleus():
    """On a synthetic cell (dark nucleus inside pale cytoplasm) the nucleus is found inside."""
    from hemascope.segment.predict import load_segmenter, segment_arrays
    from hemascope.synthetic import make_cell

    d = default_model_dir("segmentation")
    assert (d / "MODEL_CARD.md").is_file()
    m = load_segmenter("default")
    cv = m.config["metrics"]["cross_validation"]
    assert cv["k"] == 5 and cv["per_class"]["nucleus"]["iou"]["mean"] > 0.5
    cell = make_cell("lymphocyte", seed=0, size=96)
    [parts] = segment_arrays(m, [cell.image])
    assert parts.shape == cell.image.shape[:2]
    nucleus = parts == m.config["classes"].index("nucleus")
    assert nucleus.any() and not nucleus[0, :].any() and not nucleus[:, 0].any()


@_NO_ATTRIBUTES
def test_default_concept_bottleneck_reads_the_default_attribute_model():
    from hemascope.explain.concept_model import load_concept_model
    from hemascope.synthetic import make_cell

    cm = load_concept_model("default")
    assert cm.config["attributes_model"] == "default"
    assert cm.bottleneck.classes == ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert cm.config["metrics"]["test"]["n_images"] > 3000
    x = cm.features([make_cell("neutrophil", seed=1, size=96).image])
    p = cm.bottleneck.predict_proba(x)
    assert p.shape == (1, 5) and abs(p.sum() - 1) < 1e-6
