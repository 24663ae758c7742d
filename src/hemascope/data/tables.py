"""Label tables: a CSV that names image files and their classes (and maybe attributes).

Three shapes are recognised from the header:

* **WBCAtt** (Tsutsui et al. 2023): ``img_name,label,<11 attributes>,path`` with ``path``
  relative to the folder that holds ``PBC_dataset_normal_DIB``.
* **CellaVision** (Zheng et al. 2018): ``image ID,class`` (or ``image ID,class label``, as
  published) with numeric classes 1-5 and images ``NNN.bmp`` plus masks ``NNN.png``: beside
  the CSV (``labels.csv``), or, in the published layout, in the folder ``Dataset 1/`` beside
  ``Class Labels of Dataset 1.csv`` (the same for ``Dataset 2``, the CellaVision cells).
* **generic**: any CSV with a path-like column (``path``, ``file``, ``filename``,
  ``image``...) and a label-like column (``label``, ``class``, ``category``...).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Sequence

from hemascope import taxonomy
from hemascope.data.labels import LabelMapper
from hemascope.data.samples import ClassificationSet, Sample
from hemascope.io.atomic import note_input
from hemascope.errors import AnnotationError, DatasetError, UnknownLabelError
from hemascope.problems import Problem

#: CellaVision ``labels.csv`` class codes (Zheng et al. 2018, Micron 107).
CELLAVISION_CLASSES = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil",
                       5: "basophil"}
PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "img_path",
                "img_name", "image_name", "name")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "cell_type", "type", "target")
_MAX_CSV_BYTES = 200 * 1024 * 1024
_CELLAVISION_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
#: The published name of a Zheng et al. table, beside the folder of its images
#: (github.com/zxaoyou/segmentation_WBC: ``Class Labels of Dataset 1.csv`` + ``Dataset 1/``).
_ZHENG_TABLE = re.compile(r"class labels of (.+)\.csv", re.IGNORECASE)
_CELLAVISION_CLASS_COLUMNS = ("class", "class label")


def read_table(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV into its header and rows; malformed files raise :class:`AnnotationError`.

    Rows with a wrong number of fields are errors (the CSV module would silently pad them).
    """
    p = Path(path)
    if not p.is_file():
        raise AnnotationError(p, "CSV file does not exist")
    note_input(p)
    if p.stat().st_size > _MAX_CSV_BYTES:
        raise AnnotationError(p, f"CSV is larger than {_MAX_CSV_BYTES // 2**20} MiB")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(p, f"CSV is not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise AnnotationError(p, "CSV file is empty")
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as e:
        raise AnnotationError(p, f"malformed CSV: {e}") from None
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        raise AnnotationError(p, f"CSV header has empty or duplicate column names: {header}")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise AnnotationError(p, f"line {i} has {len(row)} fields, the header has {len(header)}")
        out.append({h: v.strip() for h, v in zip(header, row)})
    return header, out


def table_kind(header: Sequence[str]) -> str:
    """``wbcatt``, ``cellavision`` or ``generic`` from a CSV header."""
    cols = {h.strip().lower() for h in header}
    if {"label", "path"} <= cols and set(taxonomy.ATTRIBUTES) <= cols:
        return "wbcatt"
    if "image id" in cols and cols & set(_CELLAVISION_CLASS_COLUMNS):
        return "cellavision"
    return "generic"


def read_label_csv(path: str | Path, *, image_root: str | Path | None = None,
                   vocabulary: str | None = None, path_column: str | None = None,
                   label_column: str | None = None) -> ClassificationSet:
    """Read any supported label table (kind detected from the header).

    Args:
        path: the CSV file.
        image_root: folder the image paths are relative to (default: found automatically
            for WBCAtt, else the CSV's folder).
        vocabulary: map labels into this vocabulary.
        path_column, label_column: override the column detection of generic tables.

    Raises:
        AnnotationError: malformed CSV or no usable columns.
    """
    header, rows = read_table(path)
    kind = table_kind(header)
    if kind == "wbcatt":
        return read_wbcatt(path, image_root=image_root, vocabulary=vocabulary, _rows=rows)
    if kind == "cellavision":
        return read_cellavision(_cellavision_images(Path(path)), vocabulary=vocabulary,
                                csv_path=path, _rows=rows)
    return _read_generic(Path(path), header, rows, image_root=image_root, vocabulary=vocabulary,
                         path_column=path_column, label_column=label_column)


def cellavision_table(folder: str | Path) -> Path | None:
    """The label table of a folder of ``NNN.bmp`` + ``NNN.png`` cells, if it has one: its own
    ``labels.csv``, or the published ``Class Labels of <folder name>.csv`` beside it (or in
    it)."""
    folder = Path(folder)
    published = f"Class Labels of {folder.name}.csv"
    return next((p for p in (folder / "labels.csv", folder.parent / published, folder / published)
                 if p.is_file()), None)


def zheng_sets(folder: str | Path) -> list[Path]:
    """Folders of the published Zheng et al. layout inside ``folder``: each ``X/`` with a
    ``Class Labels of X.csv`` beside it (the repository's root holds ``Dataset 1`` and
    ``Dataset 2``)."""
    folder = Path(folder)
    found = []
    for table in sorted(folder.glob("*.csv")):
        m = _ZHENG_TABLE.fullmatch(table.name)
        if m and (folder / m[1]).is_dir():
            found.append(folder / m[1])
    return found


def _cellavision_images(csv_path: Path) -> Path:
    """Where a CellaVision table's images are: the folder ``X/`` beside a published
    ``Class Labels of X.csv``, else the table's own folder."""
    m = _ZHENG_TABLE.fullmatch(csv_path.name)
    if m and (csv_path.parent / m[1]).is_dir():
        return csv_path.parent / m[1]
    return csv_path.parent


def read_cellavision(root: str | Path, *, vocabulary: str | None = None,
                     csv_path: str | Path | None = None, _rows=None) -> ClassificationSet:
    """CellaVision folder: ``NNN.bmp`` images + ``NNN.png`` masks, labelled by a table.

    The table is ``csv_path``, else the folder's :func:`cellavision_table` (``labels.csv``,
    or the published ``Class Labels of <folder>.csv`` beside it).
    """
    root = Path(root)
    csv_path = Path(csv_path) if csv_path else cellavision_table(root) or root / "labels.csv"
    if _rows is None:
        header, _rows = read_table(csv_path)
        if table_kind(header) != "cellavision":
            raise AnnotationError(csv_path, "not a CellaVision label table (expected columns "
                                  "'image ID' and 'class' or 'class label')")
    mapper = LabelMapper(vocabulary)
    samples, problems, seen = [], [], set()
    for i, row in enumerate(_rows, start=2):
        row = {k.lower(): v for k, v in row.items()}
        where = f"{csv_path.name}:{i}"
        cls = next(row[c] for c in _CELLAVISION_CLASS_COLUMNS if c in row)
        try:
            ident, code = int(row["image id"]), int(cls)
        except ValueError:
            problems.append(Problem(where, "malformed_annotation",
                                    f"image ID / class must be integers, got {row['image id']!r}, "
                                    f"{cls!r}"))
            continue
        if code not in CELLAVISION_CLASSES:
            problems.append(Problem(where, "unknown_label", f"unknown CellaVision class code "
                                    f"{code} (known: 1-5)"))
            continue
        # images are NNN.bmp (or .jpg/.tif if converted); NNN.png is always the mask
        image = next((root / f"{ident:03d}{s}" for s in _CELLAVISION_SUFFIXES
                      if (root / f"{ident:03d}{s}").is_file()), None)
        if image is None:
            problems.append(Problem(f"{ident:03d}.bmp", "missing_image",
                                    f"{csv_path.name} line {i} names image {ident:03d}, "
                                    f"which is not in {root}"))
            continue
        label = mapper(CELLAVISION_CLASSES[code], path=image.name)
        if label is None:
            continue
        mask = root / f"{ident:03d}.png"
        seen.add(label)
        samples.append(Sample(path=image.name, label=label, source_label=str(code),
                              mask=mask.name if mask.is_file() else None))
    samples.sort(key=lambda s: s.path)
    return ClassificationSet(root=root, samples=samples, classes=mapper.classes(seen),
                             problems=problems + mapper.problems, unmapped=mapper.unmapped,
                             vocabulary=mapper.vocabulary, format="cellavision")


def read_wbcatt(path: str | Path, *, image_root: str | Path | None = None,
                vocabulary: str | None = None, _rows=None) -> ClassificationSet:
    """One WBCAtt CSV (``pbc_attr_v1_{train,val,test}.csv``) with its 11 attributes.

    The split is taken from the file name (``..._train.csv`` -> ``train``). Images are
    looked up as ``image_root/<path column>``; by default ``image_root`` is the first of the
    CSV's folder, ``../pbc`` beside it, or its parent that holds the first image.
    """
    p = Path(path)
    if _rows is None:
        header, _rows = read_table(p)
        if table_kind(header) != "wbcatt":
            raise AnnotationError(p, "not a WBCAtt CSV (expected label, path and the 11 "
                                  "attribute columns)")
    root = Path(image_root) if image_root else _find_root(p, [r["path"] for r in _rows[:20]])
    split = next((s for s in ("train", "val", "test") if p.stem.lower().endswith(s)), None)
    mapper = LabelMapper(vocabulary)
    samples, problems, seen = [], [], set()
    for i, row in enumerate(_rows, start=2):
        rel = row["path"].replace("\\", "/")
        attrs, bad = {}, None
        for name in taxonomy.ATTRIBUTES:
            try:
                attrs[name] = taxonomy.attribute_value(name, row[name])
            except UnknownLabelError as e:
                bad = str(e)
                break
        if bad:
            problems.append(Problem(rel, "unknown_attribute_value", f"line {i}: {bad}"))
            continue
        if not (root / rel).is_file():
            problems.append(Problem(rel, "missing_image", f"line {i}: image not found under {root}"))
            continue
        label = mapper(row["label"], path=rel)
        if label is None:
            continue
        seen.add(label)
        samples.append(Sample(path=rel, label=label, source_label=row["label"],
                              subclass=taxonomy.refining_subclass(rel, label), attributes=attrs, split=split))
    return ClassificationSet(root=root, samples=samples, classes=mapper.classes(seen),
                             problems=problems + mapper.problems, unmapped=mapper.unmapped,
                             vocabulary=mapper.vocabulary, format="wbcatt")


def _read_generic(p: Path, header, rows, *, image_root, vocabulary, path_column, label_column):
    pcol = path_column or _pick(header, PATH_COLUMNS)
    lcol = label_column or _pick(header, LABEL_COLUMNS)
    if pcol is None or lcol is None or pcol not in header or lcol not in header:
        raise AnnotationError(p, f"cannot tell which columns hold image paths and labels in "
                              f"{header}; expected one of {PATH_COLUMNS} and one of {LABEL_COLUMNS}")
    root = Path(image_root) if image_root else _find_root(p, [r[pcol] for r in rows[:20]])
    mapper = LabelMapper(vocabulary)
    samples, problems, seen = [], [], set()
    for i, row in enumerate(rows, start=2):
        rel = row[pcol].replace("\\", "/")
        if not rel:
            problems.append(Problem(f"{p.name}:{i}", "malformed_annotation", f"line {i}: empty path"))
            continue
        if not (root / rel).is_file():
            problems.append(Problem(rel, "missing_image", f"line {i}: image not found under {root}"))
            continue
        label = mapper(row[lcol], path=rel)
        if label is None:
            continue
        seen.add(label)
        samples.append(Sample(path=rel, label=label, source_label=row[lcol],
                              subclass=taxonomy.refining_subclass(rel, label)))
    samples.sort(key=lambda s: s.path)
    return ClassificationSet(root=root, samples=samples, classes=mapper.classes(seen),
                             problems=problems + mapper.problems, unmapped=mapper.unmapped,
                             vocabulary=mapper.vocabulary, format="csv")


def _pick(header: Sequence[str], names: Sequence[str]) -> str | None:
    low = {h.lower(): h for h in header}
    return next((low[n] for n in names if n in low), None)


def _find_root(csv_path: Path, rels: list[str]) -> Path:
    here = csv_path.parent
    candidates = [here, here.parent / "pbc", here.parent, here.parent.parent]
    # the folder where most of the first rows' images are: one missing image (reported as
    # a problem later) must not hide the right root
    found = [sum((cand / r).is_file() for r in rels[:20]) for cand in candidates]
    if rels and max(found) > 0:
        return candidates[found.index(max(found))]
    if rels:
        raise DatasetError(f"cannot find the images named in {csv_path} (e.g. {rels[0]!r}) "
                           f"under {', '.join(str(c) for c in candidates)}; give the folder they "
                           "are relative to (--images, or image_root= in Python)")
    return here



def read_wbcatt_folder(folder: str | Path, *, image_root: str | Path | None = None,
                       vocabulary: str | None = None) -> ClassificationSet:
    """The three official WBCAtt split files of a folder, merged, with ``split`` set."""
    folder = Path(folder)
    parts = []
    for split in ("train", "val", "test"):
        found = sorted(folder.glob(f"*_{split}.csv"))
        if len(found) > 1:
            raise DatasetError(f"{folder} holds several {split} tables: {[f.name for f in found]}")
        if found:
            parts.append(read_wbcatt(found[0], image_root=image_root, vocabulary=vocabulary))
    if not parts:
        raise DatasetError(f"{folder} holds no WBCAtt tables (*_train.csv, *_val.csv, *_test.csv)")
    first = parts[0]
    classes = sorted({c for p in parts for c in p.classes}) if vocabulary is None else first.classes
    unmapped: dict[str, int] = {}
    for p in parts:
        for k, v in p.unmapped.items():
            unmapped[k] = unmapped.get(k, 0) + v
    return ClassificationSet(root=first.root, samples=[s for p in parts for s in p.samples],
                             classes=classes, problems=[q for p in parts for q in p.problems],
                             unmapped=unmapped, vocabulary=first.vocabulary, format="wbcatt")


def read_wbcatt_any(path: str | Path, *, image_root: str | Path | None = None,
                    vocabulary: str | None = None) -> ClassificationSet:
    """One WBCAtt CSV, or a folder of the official split tables (merged)."""
    p = Path(path)
    if p.is_dir():
        return read_wbcatt_folder(p, image_root=image_root, vocabulary=vocabulary)
    return read_wbcatt(p, image_root=image_root, vocabulary=vocabulary)
