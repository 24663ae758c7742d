"""Which cells to label first: spherical k-means, typicality, and the CLI round trip."""

import csv

import numpy as np
import pytest

from hemascope.adapt.suggest import kmeans, select_typical, suggest_cells, typicality
from hemascope.cli import main
from hemascope.models.artifact import load_classifier


def blobs(sizes=(50, 30, 10, 5, 3), seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), 16)) * 3
    x = np.concatenate([c + rng.normal(size=(n, 16)) for c, n in zip(centres, sizes)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


def test_kmeans_finds_separated_groups_and_keeps_every_cluster():
    x, y = blobs()
    assign, centres = kmeans(x, 5, seed=0)
    assert np.allclose(np.linalg.norm(centres, axis=1), 1)
    # every cluster is one group: the same partition up to renaming
    assert {tuple(sorted(set(y[assign == j]))) for j in range(5)} == {(g,) for g in range(5)}
    same = np.repeat(x[:1], 10, axis=0)  # identical rows cannot fill 10 clusters by distance
    assign, _ = kmeans(np.concatenate([same, x[:5]]), 12, seed=1)
    assert np.bincount(assign, minlength=12).min() == 1
    with pytest.raises(ValueError, match="k must lie"):
        kmeans(x[:3], 4)


def test_one_typical_cell_per_group_largest_first():
    x, y = blobs()
    picks = select_typical(x, 5, seed=0)
    assert list(y[picks]) == [0, 1, 2, 3, 4]  # one per group, groups by size
    typ = typicality(x)
    members = np.flatnonzero(y == 0)
    assert picks[0] == members[np.argmax(typ[members])]
    assert select_typical(x, 5, seed=0) == picks  # seeded


def test_suggest_then_label_then_adapt(tiny_model, tmp_path, capsys):
    from hemascope.io.image import write_image
    from hemascope.synthetic import make_cell

    lab = tmp_path / "lab"
    kinds = ("lymphocyte", "monocyte", "neutrophil")
    for kind in kinds:
        for i in range(6):
            write_image(lab / kind / f"{i}.png", make_cell(kind, seed=900 + i, size=48).image)
    base = load_classifier(tiny_model)
    from hemascope.adapt.uda import load_unlabelled
    cells = load_unlabelled(lab, base)
    picks = suggest_cells(base, cells.images, 4, seed=0)
    assert len(set(picks)) == 4 and all(0 <= i < 18 for i in picks)
    with pytest.raises(ValueError, match="1 to 18"):
        suggest_cells(base, cells.images, 19)
    out = tmp_path / "to_label.csv"
    assert main(["suggest", "--data", str(lab), "--n", "4", "--out", str(out),
                 "--base", str(tiny_model)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(cells.keys[i]).split("lab/", 1)[1] for i in picks]
    assert all((lab / r["path"]).is_file() for r in rows) and "4 of 18 cells" in capsys.readouterr().out
    assert main(["suggest", "--data", str(lab), "--n", "40", "--out", str(out),
                 "--base", str(tiny_model)]) != 0
    # the listed cells are the shots of a few-shot run on the labelled folder
    run = tmp_path / "run"
    assert main(["fewshot", "--data", str(lab), "--shots-from", str(out), "--out", str(run),
                 "--base", str(tiny_model), "--epochs", "1", "--shot-epochs", "0",
                 "--threads", "1"]) == 0
    assert (run / "shots.txt").read_text().split() == [r["path"] for r in rows]
    bad = tmp_path / "bad.txt"
    bad.write_text("lymphocyte/0.png\nnot/there.png\n")
    assert main(["fewshot", "--data", str(lab), "--shots-from", str(bad), "--out",
                 str(tmp_path / "r2"), "--base", str(tiny_model), "--threads", "1"]) != 0
    assert "not/there.png" in capsys.readouterr().err
    # labelled copies of the cells inside the unlabelled folder are not counted twice
    labelled = tmp_path / "labelled"
    for r in rows:
        (labelled / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        (labelled / r["path"]).write_bytes((lab / r["path"]).read_bytes())
    assert main(["fewshot", "--data", str(labelled), "--unlabelled", str(lab), "--out",
                 str(tmp_path / "r3"), "--base", str(tiny_model), "--epochs", "1",
                 "--shot-epochs", "0", "--threads", "1"]) == 0
    assert "4 unlabelled image(s) are copies of labelled ones" in capsys.readouterr().err
    with open(tmp_path / "r3" / "predictions.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 18
