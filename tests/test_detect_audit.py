"""Box audit: a detector's confident disagreements with annotations (hemascope.detect.audit)."""

from __future__ import annotations

import numpy as np
import pytest

from hemascope.detect.audit import detector_thresholds, find_box_issues, score_thresholds
from hemascope.detect.ensemble import Detections


def _det(rows):
    """Detections from ``(x0, y0, x1, y1, score, label)`` rows."""
    a = np.array(rows, float).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def test_thresholds_are_mean_best_scores_of_annotated_boxes():
    pred = _det([(0, 0, 10, 10, 0.9, 1), (20, 20, 30, 30, 0.5, 1), (40, 40, 50, 50, 0.8, 2)])
    truth = (np.array([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70], [40, 40, 50, 50]], float),
             np.array([1, 1, 1, 2]))
    t = score_thresholds([pred], [truth], 3)
    # class 1: 0.9, 0.5 and 0 (the third box has no detection); class 2: 0.8; class 3: no box
    assert t[1:].tolist() == pytest.approx([(0.9 + 0.5) / 3, 0.8, 1.0])


def test_three_kinds_of_issue():
    truth = (np.array([[0, 0, 10, 10],      # a cell of class 1, found
                       [20, 0, 30, 10],     # labelled 1, the detector is sure it is 2
                       [60, 60, 70, 70],    # nothing there
                       [40, 0, 50, 10]],    # class 2, found
                      float), np.array([1, 1, 2, 2]))
    pred = _det([(0, 0, 10, 10, 0.9, 1),
                 (20, 0, 30, 10, 0.95, 2), (20, 0, 30, 10, 0.2, 1),
                 (41, 0, 50, 10, 0.9, 2),
                 (80, 80, 90, 90, 0.9, 1),   # a cell nobody boxed
                 (100, 100, 110, 110, 0.1, 1)])  # unsure: not an issue
    issues, t = find_box_issues([pred], [truth], 2)
    got = sorted((x.kind, x.label, x.suggested) for x in issues)
    assert got == [("class", 1, 2), ("missing", 0, 1), ("unmatched", 2, 0)]
    missing = next(x for x in issues if x.kind == "missing")
    assert missing.box == (80.0, 80.0, 90.0, 90.0) and missing.score == pytest.approx(0.9)
    # the same annotations with the right class raise no class issue
    fixed = (truth[0], np.array([1, 2, 2, 2]))
    assert not [x for x in find_box_issues([pred], [fixed], 2)[0] if x.kind == "class"]


def test_empty_fields_and_given_thresholds():
    none = Detections.empty()
    issues, _ = find_box_issues([none], [(np.zeros((0, 4)), np.zeros(0, np.int64))], 3)
    assert issues == []
    pred = _det([(0, 0, 10, 10, 0.4, 1)])
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    # no annotated box of class 1 anywhere: its threshold is 1, so nothing is confident
    assert find_box_issues([pred], [empty], 1)[0] == []
    issues, _ = find_box_issues([pred], [empty], 1, thresholds=np.array([1.0, 0.3]))
    assert [x.kind for x in issues] == ["missing"]
    with pytest.raises(ValueError, match="one prediction"):
        find_box_issues([pred, pred], [empty], 1)


def test_thresholds_from_a_detector_config():
    config = {"count_thresholds": {"WBC": 0.5, "RBC": 0.6}}
    assert detector_thresholds(config, ["WBC", "RBC"]).tolist() == [1.0, 0.5, 0.6]
    assert detector_thresholds(config, ["WBC", "RBC"], "mean") is None
    assert detector_thresholds(config, ["WBC", "RBC", "Platelets"]) is None  # incomplete
    with pytest.raises(ValueError, match="thresholds"):
        detector_thresholds(config, ["WBC"], "median")
    # "absent": a weak detection touching a box is enough to keep it
    truth = (np.array([[0, 0, 10, 10]], float), np.array([1]))
    weak = _det([(0, 0, 10, 10, 0.1, 1), (50, 50, 60, 60, 0.9, 1)])
    t = np.array([1.0, 0.5])
    kinds = lambda absent: sorted(x.kind for x in find_box_issues(  # noqa: E731
        [weak], [truth], 1, thresholds=t, absent=absent)[0])
    assert kinds(None) == ["missing", "unmatched"] and kinds(0.05) == ["missing"]


@pytest.mark.realdata
@pytest.mark.slow
def test_audit_cli_finds_a_deleted_white_cell(shared_data, tmp_path, capsys):
    """Six CBC test fields copied as a VOC set, one white cell's box deleted: the shipped
    detector (trained on CBC's train split) reports it missing."""
    import csv
    import json
    import re
    import shutil

    from hemascope.cli import main

    src = shared_data / "cbc" / "Testing"
    names = sorted(p.stem for p in (src / "Annotations").glob("*.xml"))[:6]
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    deleted = None
    for n in names:
        shutil.copy(src / "Images" / f"{n}.jpg", root / "JPEGImages" / f"{n}.jpg")
        xml = (src / "Annotations" / f"{n}.xml").read_text()
        if deleted is None:
            obj = next(m for m in re.finditer(r"<object>.*?</object>", xml, re.S)
                       if "<name>WBC</name>" in m.group(0))
            deleted = [float(re.search(f"<{k}>([0-9.]+)</{k}>", obj.group(0)).group(1))
                       for k in ("xmin", "ymin", "xmax", "ymax")]
            xml = xml.replace(obj.group(0), "")
            deleted_in = n
        (root / "Annotations" / f"{n}.xml").write_text(xml)
    out = tmp_path / "boxes.csv"
    assert main(["audit", "--what", "boxes", "--data", str(root), "--out", str(out),
                 "--gallery", str(tmp_path / "g.png"), "--json", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    rows = list(csv.DictReader(out.open()))
    found = [r for r in rows if r["kind"] == "missing" and r["suggested"] == "WBC"
             and deleted_in in r["image"]]
    assert found
    box = [float(found[0][k]) for k in ("x0", "y0", "x1", "y1")]
    from hemascope.detect.ensemble import iou_matrix
    assert iou_matrix(np.array([box]), np.array([deleted]))[0, 0] >= 0.5
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["fields"] == 6 and sum(summary["issues"].values()) == len(rows)
    assert "WBC" in summary["thresholds"]
