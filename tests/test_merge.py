"""Sharded analysis: `analyze --shard k/n` parts merged by `report merge` give the same
outputs as one run over everything; parts that do not belong together are refused."""

import json

import pytest

from hemascope.cli import main
from hemascope.io.image import write_image
from hemascope.synthetic import make_cell

KINDS = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


@pytest.fixture
def cells(tmp_path):
    src = tmp_path / "in"
    for i in range(7):
        write_image(src / ("a" if i % 2 else "b") / f"c{i}.png",
                    make_cell(KINDS[i % 4], seed=40 + i, size=64).image)
    write_image(src / "b" / "c0_.png", make_cell("monocyte", seed=9, size=64).image)
    (src / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    return src


def _analyze(src, out, model, *extra):
    return main(["analyze", str(src), "--out", str(out), "--classifier", str(model),
                 "--mode", "cells", *extra])


def test_shards_merged_equal_one_run(cells, tmp_path, tiny_model, capsys):
    assert _analyze(cells, tmp_path / "all", tiny_model) == 0
    for k in (1, 2, 3):
        assert _analyze(cells, tmp_path / f"s{k}", tiny_model, "--shard", f"{k}/3") == 0
    sizes = [len(list((tmp_path / f"s{k}" / "images").glob("*.json"))) for k in (1, 2, 3)]
    assert sum(sizes) == 8 and max(sizes) - min(sizes) <= 1  # the bad file is one shard's error
    capsys.readouterr()
    assert main(["report", "merge", *(str(tmp_path / f"s{k}") for k in (3, 1, 2)),
                 "--out", str(tmp_path / "m")]) == 0
    assert "merged 3 runs: 8 images, 1 unreadable" in capsys.readouterr().out
    a, m = tmp_path / "all", tmp_path / "m"
    for name in ("cells.csv", "differential.csv", "errors.csv"):
        assert (m / name).read_text() == (a / name).read_text(), name
    for sub in ("images", "overlays", "geojson"):
        assert sorted(p.name for p in (m / sub).iterdir()) == sorted(p.name for p in (a / sub).iterdir())
    coco_a, coco_m = (json.loads((d / "coco.json").read_text()) for d in (a, m))
    assert coco_a["images"] == coco_m["images"] and len(coco_a["annotations"]) == len(coco_m["annotations"])
    manifest = json.loads((m / "manifest.json").read_text())
    assert manifest["complete"] and manifest["missing_shards"] == [] and manifest["inputs"] == 9
    assert [p["shard"] for p in manifest["merged_from"]] == [[3, 3], [1, 3], [2, 3]]
    assert "report.html" in {p.name for p in m.iterdir()}


def test_merge_refuses_parts_that_do_not_belong_together(cells, tmp_path, tiny_model, capsys):
    for k in (1, 2):
        assert _analyze(cells, tmp_path / f"s{k}", tiny_model, "--shard", f"{k}/2") == 0
    s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    capsys.readouterr()
    assert main(["report", "merge", s1, "--out", str(tmp_path / "m")]) == 1
    assert "shards 2/2 are missing" in capsys.readouterr().err
    assert main(["report", "merge", s1, "--out", str(tmp_path / "m"), "--allow-missing"]) == 0
    assert "shards 2/2 are missing from this merge" in capsys.readouterr().err
    # other options in one part
    assert _analyze(cells, tmp_path / "x2", tiny_model, "--shard", "2/2", "--review-below", "0.9") == 0
    capsys.readouterr()
    assert main(["report", "merge", s1, str(tmp_path / "x2"), "--out", str(tmp_path / "m2")]) == 1
    assert "review_below 0.6 -> 0.9" in capsys.readouterr().err
    # a shard twice, a folder twice, the output inside a part, no run at all
    assert _analyze(cells, tmp_path / "again", tiny_model, "--shard", "1/2") == 0
    capsys.readouterr()
    assert main(["report", "merge", s1, str(tmp_path / "again"), "--out", str(tmp_path / "m3")]) == 1
    assert "shard 1/2 is given twice" in capsys.readouterr().err
    assert main(["report", "merge", s1, s1, "--out", str(tmp_path / "m3")]) == 1
    assert main(["report", "merge", s1, s2, "--out", str(tmp_path / "s1" / "m")]) == 1
    assert "must not contain each other" in capsys.readouterr().err
    assert main(["report", "merge", str(cells), "--out", str(tmp_path / "m4")]) == 1
    assert "not an analyze output folder" in capsys.readouterr().err
    # an unfinished part
    manifest = tmp_path / "s2" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "complete": False}))
    assert main(["report", "merge", s1, s2, "--out", str(tmp_path / "m5")]) == 1
    assert "did not finish" in capsys.readouterr().err
    assert not (tmp_path / "m3").exists() and not (tmp_path / "m5").exists()


def test_shard_option_is_checked(cells, tmp_path, tiny_model, capsys):
    for bad in ("0/2", "3/2", "2", "a/b"):
        with pytest.raises(SystemExit) as e:
            _analyze(cells, tmp_path / "o", tiny_model, "--shard", bad)
        assert e.value.code == 2
    assert _analyze(cells, tmp_path / "o", tiny_model, "--shard", "12/12") == 1
    assert "fewer images than shards" in capsys.readouterr().err
    assert _analyze(cells, tmp_path / "o", tiny_model, "--shard", "1/2", "--adapt", "bn") == 1
    assert "--shard with --adapt" in capsys.readouterr().err
