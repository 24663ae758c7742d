from collections import Counter

import pytest

from hemascope.data.splits import (SplitFile, check_covers, few_shot, kfold_parts, load_split,
                                   save_split, stratified_kfold, stratified_split)
from hemascope.errors import SplitError


def _toy(n_per=(50, 30, 7)):
    keys, labels = [], []
    for c, n in zip("abc", n_per):
        keys += [f"{c}/{i:03d}.png" for i in range(n)]
        labels += [c] * n
    return keys, labels


def test_stratified_split_proportions_and_determinism():
    keys, labels = _toy()
    a = stratified_split(keys, labels, val=0.1, test=0.2, seed=3)
    b = stratified_split(list(reversed(keys)), list(reversed(labels)), val=0.1, test=0.2, seed=3)
    assert a == b  # listing order never matters
    assert a != stratified_split(keys, labels, val=0.1, test=0.2, seed=4)
    per = Counter((lbl, a[k]) for k, lbl in zip(keys, labels))
    assert per[("a", "test")] == 10 and per[("a", "val")] == 5 and per[("a", "train")] == 35
    assert per[("c", "test")] == 1 and per[("c", "train")] >= 1


def test_tiny_class_keeps_a_training_image():
    a = stratified_split(["x", "y"], ["c", "c"], val=0.5, test=0.49)
    assert "train" in a.values()


def test_kfold_balanced_and_disjoint():
    keys, labels = _toy()
    f = stratified_kfold(keys, labels, k=5, seed=0)
    sizes = Counter(f.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    for c in "abc":
        per = Counter(f[k] for k, lbl in zip(keys, labels) if lbl == c)
        assert max(per.values()) - min(per.values()) <= 1
    parts = kfold_parts(f, 2, val=0.2, labels=dict(zip(keys, labels)))
    assert {k for k, v in parts.items() if v == "test"} == {k for k, v in f.items() if v == "fold2"}
    assert Counter(parts.values())["val"] > 0
    with pytest.raises(SplitError):
        stratified_kfold(keys, labels, k=1)


@pytest.mark.parametrize("shots", [3, 10, 25, 87])
def test_few_shot_counts(shots):
    keys, labels = _toy()
    chosen = few_shot(keys, labels, shots=shots, seed=1)
    assert len(chosen) == len(set(chosen)) == shots
    per = Counter(k.split("/")[0] for k in chosen)
    assert set(per) == {"a", "b", "c"}  # at least one of each class
    if shots == 87:
        assert per == {"a": 50, "b": 30, "c": 7}
    assert chosen == few_shot(keys, labels, shots=shots, seed=1)


def test_few_shot_fewer_shots_than_classes_and_errors():
    keys, labels = _toy()
    assert len(few_shot(keys, labels, shots=2, seed=0)) == 2
    with pytest.raises(SplitError, match="only 87"):
        few_shot(keys, labels, shots=88)
    with pytest.raises(SplitError, match="duplicate"):
        few_shot(["a", "a"], ["x", "x"], shots=1)


def test_split_file_round_trip(tmp_path):
    keys, labels = _toy()
    s = SplitFile(stratified_split(keys, labels), method="stratified", seed=0,
                  params={"val": 0.1, "test": 0.2}, dataset="toy")
    p = save_split(tmp_path / "s.json", s)
    back = load_split(p)
    assert back.assignments == s.assignments and back.counts() == s.counts()
    check_covers(back, keys)
    with pytest.raises(SplitError, match="not in the split"):
        check_covers(back, keys + ["new.png"])


_OK = '"format": "hemascope-split/1", "assignments": {"a.png": "train"}'


@pytest.mark.parametrize("text, match", [
    ("{", "not valid JSON"), ('{"a": 1}', "not a hemascope"),
    ('{"format": "hemascope-split/1", "assignments": {"a.png": "bogus"}}', "unknown part"),
    ("{" + _OK + ', "seed": "abc"}', "seed"), ("{" + _OK + ', "seed": null}', "seed"),
    ("{" + _OK + ', "params": [1]}', "params"),
])
def test_bad_split_files(tmp_path, text, match):
    p = tmp_path / "s.json"
    p.write_text(text)
    with pytest.raises(SplitError, match=match):
        load_split(p)
