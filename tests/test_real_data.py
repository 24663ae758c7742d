"""Short checks on the real sets in ../shared/data (skipped when it is absent)."""

import pytest

from hemascope.data import detect_format, load_dataset
from hemascope.data.info import inspect_dataset
from hemascope.io.masks import read_part_mask

pytestmark = pytest.mark.realdata

PBC_COUNTS = {"basophil": 1218, "eosinophil": 3117, "erythroblast": 1551,
              "immature_granulocyte": 2895, "lymphocyte": 1214, "monocyte": 1420,
              "neutrophil": 3329, "platelet": 2348}


def test_pbc_counts(shared_data):
    info = inspect_dataset(shared_data / "pbc" / "PBC_dataset_normal_DIB", check="none")
    assert info.n_images == 17092
    assert info.class_counts == PBC_COUNTS
    assert info.subclass_counts["band_neutrophil"] == 1633
    assert info.subclass_counts["segmented_neutrophil"] == 1646
    assert not info.problems


def test_pbc_as_wbc5_leaves_out_three_classes(shared_data):
    ds = load_dataset(shared_data / "pbc" / "PBC_dataset_normal_DIB", vocabulary="wbc5")
    assert len(ds) == 10298
    assert ds.unmapped == {"erythroblast": 1551, "immature_granulocyte": 2895, "platelet": 2348}


def test_cellavision_images_masks_labels(shared_data):
    root = shared_data / "cellavision"
    assert detect_format(root) == "csv"
    info = inspect_dataset(root, check="header")
    assert info.n_images == 100 and info.n_masks == 100 and not info.problems
    assert info.class_counts == {"basophil": 3, "eosinophil": 12, "lymphocyte": 37,
                                 "monocyte": 15, "neutrophil": 33}
    mask = read_part_mask(root / "001.png")
    assert mask.shape == (300, 300) and set(mask.ravel().tolist()) <= {0, 1, 2}


def test_pseudo_red_cells_join_cellavision_masks_off_the_white_cell(shared_data):
    import numpy as np

    from hemascope.segment.data import find_mask_pairs, load_pair
    from hemascope.segment.parts import add_pseudo_parts

    pairs, _ = find_mask_pairs(shared_data / "cellavision")
    with_rbc = 0
    for pair in pairs[:10]:
        image, mask = load_pair(pair)
        out = add_pseudo_parts(image, mask, ["rbc", "platelet"])
        assert np.array_equal(out[mask > 0], mask[mask > 0])  # the expert's cell untouched
        with_rbc += bool((out == 5).any())
    assert with_rbc >= 6, with_rbc  # red cells surround most CellaVision cells


def test_adapt_boxes_fits_offsets_on_cbc_val(shared_data, tmp_path):
    import json

    from hemascope.cli import main

    out = tmp_path / "cal"
    assert main(["adapt", "boxes", "--data", str(shared_data / "cbc"), "--split", "val",
                 "--out", str(out), "--json", str(tmp_path / "s.json")]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg["box_offsets"]) == {"WBC", "RBC", "Platelets"}
    assert cfg["box_offsets"]["RBC"]["matches"] > 500  # most of the val red cells matched
    assert all(abs(v) < 0.2 for o in cfg["box_offsets"].values() for v in o["offsets"])
    assert main(["adapt", "boxes", "--data", str(shared_data / "cbc"), "--split", "nope",
                 "--out", str(tmp_path / "x")]) == 1


def test_wbcatt_official_split(shared_data):
    info = inspect_dataset(shared_data / "wbcatt", check="none")
    assert info.split_counts == {"train": 6169, "val": 1030, "test": 3099}
    assert len(info.attribute_counts) == 11
    assert info.attribute_counts["cytoplasm_vacuole"] == {"no": 9509, "yes": 789}
    assert not info.problems


def test_committed_pbc_splits_are_reproducible(shared_data):
    from pathlib import Path

    from hemascope.data.splits import check_covers, load_split, stratified_kfold, stratified_split

    ds = load_dataset(shared_data / "pbc" / "PBC_dataset_normal_DIB")
    keys, labels = [s.path for s in ds.samples], ds.labels()
    splits = Path(__file__).resolve().parents[1] / "splits"
    fixed = load_split(splits / "pbc8_seed0.json")
    check_covers(fixed, keys)
    assert fixed.assignments == stratified_split(keys, labels, val=0.1, test=0.2, seed=0)
    folds = load_split(splits / "pbc8_kfold5_seed0.json")
    assert folds.assignments == stratified_kfold(keys, labels, k=5, seed=0)


def test_analyze_adapts_to_another_lab(shared_data, tmp_path):
    """The main job on CellaVision's cells (another lab) with the shipped classifier: AdaBN
    on the run's own cells types more of them right than the model as it is (0.63 against
    0.57 within the five leukocyte types, benchmarks/results/analyze_crosslab.md)."""
    import csv

    from hemascope.pipeline import analyze

    root = shared_data / "cellavision"
    names = {"1": "neutrophil", "2": "lymphocyte", "3": "monocyte", "4": "eosinophil", "5": "basophil"}
    with open(root / "labels.csv", newline="") as fh:
        truth = {f"{int(r['image ID']):03d}": names[r["class"]] for r in csv.DictReader(fh)}
    files = [root / f"{k}.bmp" for k in sorted(truth)]
    acc = {}
    for adapt in ("none", "bn"):
        r = analyze(files, out_dir=tmp_path / adapt, mode="cells", classes=list(names.values()),
                    adapt=adapt, overlays=False)
        acc[adapt] = sum(i.cells[0].label == truth[i.key] for i in r.images) / len(truth)
    assert len(r.images) == 100
    assert acc["bn"] >= 0.60 and acc["bn"] > acc["none"] + 0.03, acc
