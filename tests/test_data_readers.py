import numpy as np
import pytest

from hemascope.data.folder import read_class_folders
from hemascope.data.tables import read_cellavision, read_label_csv, read_table, read_wbcatt
from hemascope.errors import AnnotationError, DatasetError
from hemascope.io.image import write_image
from hemascope.synthetic import make_cell


def test_class_folders_map_spellings_and_subclasses(cell_folder):
    ds = read_class_folders(cell_folder)
    assert len(ds) == 12
    assert ds.class_counts() == {"eosinophil": 4, "lymphocyte": 4, "neutrophil": 4}
    assert ds.subclass_counts() == {"band_neutrophil": 2, "segmented_neutrophil": 2}
    assert all(s.path == s.path.strip("/") and "\\" not in s.path for s in ds.samples)
    assert ds.samples == sorted(ds.samples, key=lambda s: s.path)


def test_unknown_class_folder_is_a_problem_not_a_crash(cell_folder):
    write_image(cell_folder / "mystery_cells" / "a.png", make_cell("basophil", size=16).image)
    (cell_folder / "README.txt").write_text("hello")
    ds = read_class_folders(cell_folder)
    assert len(ds) == 12
    [prob] = ds.problems
    assert prob.kind == "unknown_label" and "mystery_cells" in prob.message
    assert "README.txt" in ds.ignored


def test_vocabulary_leaves_out_unmappable(cell_folder):
    write_image(cell_folder / "platelet" / "p.png", make_cell("platelet", size=16).image)
    ds = read_class_folders(cell_folder, vocabulary="wbc5")
    assert ds.classes == ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert ds.unmapped == {"platelet": 1}
    assert not ds.problems


def test_split_layout_and_nested_folders(tmp_path):
    img = make_cell("lymphocyte", size=16).image
    write_image(tmp_path / "Train" / "Lymphocyte" / "a.png", img)
    write_image(tmp_path / "TestA" / "Neutrophil" / "b.png", img)
    write_image(tmp_path / "Train" / "NGS" / "0001-1000" / "NGS_00001.png", img)  # Munich style
    ds = read_class_folders(tmp_path)
    assert ds.split_counts() == {"train": 2, "test_a": 1}
    munich = next(s for s in ds.samples if "NGS_" in s.path)
    assert munich.label == "segmented_neutrophil"


@pytest.mark.parametrize("make", ["missing", "empty", "no_images"])
def test_folder_errors(tmp_path, make):
    if make == "empty":
        (tmp_path / "d").mkdir()
        target = tmp_path / "d"
    elif make == "no_images":
        (tmp_path / "d" / "neutrophil").mkdir(parents=True)
        (tmp_path / "d" / "neutrophil" / "notes.txt").write_text("x")
        target = tmp_path / "d"
    else:
        target = tmp_path / "nope"
    with pytest.raises(DatasetError):
        read_class_folders(target)


def _cellavision(tmp_path, rows, *, table="labels.csv", header="image ID,class"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i in (1, 2, 3):
        cell = make_cell("neutrophil", seed=i, size=16)
        write_image(tmp_path / f"{i:03d}.bmp", cell.image)
        write_image(tmp_path / f"{i:03d}.png", np.where(cell.mask == 1, 255,
                                                        np.where(cell.mask == 2, 128, 0)).astype(np.uint8))
    (tmp_path / table).write_text(f"{header}\n" + rows)
    return tmp_path


def test_cellavision_reader(tmp_path):
    ds = read_cellavision(_cellavision(tmp_path, "1,1\n2,2\n3,5\n"))
    assert ds.class_counts() == {"basophil": 1, "lymphocyte": 1, "neutrophil": 1}
    assert all(s.mask and s.mask.endswith(".png") for s in ds.samples)


def test_zheng_published_layout(tmp_path):
    """github.com/zxaoyou/segmentation_WBC: ``Dataset 1/`` (NNN.bmp + NNN.png) with ``Class
    Labels of Dataset 1.csv`` (``image ID,class label``) beside it, found from the folder,
    the table or the root; a root with two sets asks for one."""
    from hemascope.classify import expand_paths
    from hemascope.data import detect_format, load_dataset

    rows = "1,2\n2,1\n3,5\n"
    folder = tmp_path / "Dataset 1"
    _cellavision(folder, rows, header="image ID,class label")
    (folder / "labels.csv").rename(tmp_path / "Class Labels of Dataset 1.csv")
    for given in (folder, tmp_path / "Class Labels of Dataset 1.csv", tmp_path):
        assert detect_format(given) == "csv"
        ds = load_dataset(given)
        assert ds.format == "cellavision" and ds.root == folder
        assert ds.class_counts() == {"basophil": 1, "lymphocyte": 1, "neutrophil": 1}
        assert all(s.mask for s in ds.samples)
    # the masks beside the images are not cells to classify
    assert [f.name for f in expand_paths([tmp_path])] == ["001.bmp", "002.bmp", "003.bmp"]
    _cellavision(tmp_path / "Dataset 2", rows, table="../Class Labels of Dataset 2.csv",
                 header="image ID,class label")
    with pytest.raises(DatasetError, match="2 labelled sets"):
        load_dataset(tmp_path)
    assert len(load_dataset(tmp_path / "Dataset 2")) == 3


def test_expand_paths_leaves_out_paired_masks(tmp_path):
    from hemascope.classify import expand_paths

    img = make_cell("lymphocyte", size=16).image
    write_image(tmp_path / "a" / "001.bmp", img)
    write_image(tmp_path / "a" / "001.png", np.zeros((16, 16), np.uint8))  # its mask
    write_image(tmp_path / "a" / "002.jpg", img)
    write_image(tmp_path / "a" / "002.png", img)  # a colour copy, not a mask: kept
    write_image(tmp_path / "b" / "images" / "c.png", img)
    write_image(tmp_path / "b" / "masks" / "c.png", np.zeros((16, 16), np.uint8))
    write_image(tmp_path / "b" / "masks" / "lonely.png", np.zeros((16, 16), np.uint8))
    names = [f.relative_to(tmp_path).as_posix() for f in expand_paths([tmp_path])]
    assert names == ["a/001.bmp", "a/002.jpg", "a/002.png", "b/images/c.png", "b/masks/lonely.png"]
    # a mask named as a file is read as given
    assert expand_paths([tmp_path / "a" / "001.png"]) == [tmp_path / "a" / "001.png"]


def test_cellavision_bad_rows_reported(tmp_path):
    ds = read_cellavision(_cellavision(tmp_path, "1,1\n2,9\n3,x\n7,2\n"))
    assert len(ds) == 1
    assert sorted(p.kind for p in ds.problems) == ["malformed_annotation", "missing_image",
                                                   "unknown_label"]


WBCATT_HEADER = ("img_name,label,cell_size,cell_shape,nucleus_shape,nuclear_cytoplasmic_ratio,"
                 "chromatin_density,cytoplasm_vacuole,cytoplasm_texture,cytoplasm_colour,"
                 "granule_type,granule_colour,granularity,path\n")


def test_wbcatt_reader_validates_attributes(tmp_path):
    img = make_cell("neutrophil", size=16).image
    write_image(tmp_path / "pbc" / "PBC" / "neutrophil" / "SNE_1.jpg", img)
    write_image(tmp_path / "pbc" / "PBC" / "neutrophil" / "SNE_2.jpg", img)
    attrs = "big,round,segmented-bilobed,low,densely,no,clear,light blue,small,pink,yes"
    bad = "big,round,segmented-bilobed,low,densely,no,clear,green,small,pink,yes"
    csv = tmp_path / "tables" / "att_train.csv"
    csv.parent.mkdir()
    csv.write_text(WBCATT_HEADER + f"SNE_1.jpg,Neutrophil,{attrs},PBC/neutrophil/SNE_1.jpg\n"
                   f"SNE_2.jpg,Neutrophil,{bad},PBC/neutrophil/SNE_2.jpg\n")
    ds = read_wbcatt(csv)  # finds ../pbc on its own
    assert len(ds) == 1 and ds.samples[0].split == "train"
    assert ds.samples[0].attributes["nucleus_shape"] == "segmented-bilobed"
    assert ds.samples[0].subclass == "segmented_neutrophil"
    [prob] = ds.problems
    assert prob.kind == "unknown_attribute_value" and "'green'" in prob.message


def test_generic_csv_with_unknown_label(tmp_path):
    img = make_cell("monocyte", size=16).image
    write_image(tmp_path / "a.png", img)
    write_image(tmp_path / "b.png", img)
    (tmp_path / "labels.txt.csv").write_text("file,class\na.png,Monocyte\nb.png,unicorn\n")
    ds = read_label_csv(tmp_path / "labels.txt.csv")
    assert [s.label for s in ds.samples] == ["monocyte"]
    [prob] = ds.problems
    assert prob.kind == "unknown_label" and "unicorn" in prob.message


def test_a_missing_image_in_the_first_rows_is_one_problem(tmp_path):
    img = make_cell("monocyte", size=16).image
    for n in ("a", "b", "c"):
        write_image(tmp_path / "imgs" / f"{n}.png", img)
    (tmp_path / "t.csv").write_text("path,label\nimgs/a.png,monocyte\nimgs/gone.png,monocyte\n"
                                    "imgs/b.png,monocyte\nimgs/c.png,monocyte\n")
    ds = read_label_csv(tmp_path / "t.csv")
    assert len(ds.samples) == 3
    [prob] = ds.problems
    assert "gone.png" in prob.path


@pytest.mark.parametrize("text, match", [
    ("", "empty"), ("a,b\n1,2,3\n", "line 2 has 3 fields"), ("a,a\n1,2\n", "duplicate"),
    ('a,b\n"1,2\n', "malformed CSV"),
])
def test_malformed_csv(tmp_path, text, match):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=match):
        read_table(p)


def test_csv_without_usable_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("foo,bar\n1,2\n")
    with pytest.raises(AnnotationError, match="cannot tell which columns"):
        read_label_csv(p)


def test_lisc_folder_names(tmp_path):
    """LISC's 'Main Dataset' folders: abbreviations resolve, 'mixt' is reported as unknown."""
    img = make_cell("monocyte", size=16).image
    for name in ("Baso", "eosi", "lymp", "mono", "neut", "mixt"):
        write_image(tmp_path / "Main Dataset" / name / "1.bmp", img)
    ds = read_class_folders(tmp_path / "Main Dataset", vocabulary="wbc5")
    assert ds.class_counts() == dict.fromkeys(
        ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"], 1)
    [prob] = ds.problems
    assert "'mixt'" in prob.message and "wbc5" in prob.message


def test_empty_class_folder_reported(cell_folder):
    (cell_folder / "monocyte").mkdir()
    ds = read_class_folders(cell_folder)
    assert [p.kind for p in ds.problems] == ["empty_class"] and len(ds) == 12
