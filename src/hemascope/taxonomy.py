"""Class vocabularies and the mapping between them.

One tree of *concepts* (canonical snake_case names such as ``segmented_neutrophil``) with a
parent for every fine concept, plus named *vocabularies*: the class lists of the data sets
and models we meet. A label from any source is first resolved to a concept (case- and
plural-insensitive, through synonyms such as ``SNE``, ``NGS``, ``Neutrophils``), then mapped
into a vocabulary by walking up the tree until a concept of that vocabulary is met:

>>> to_vocabulary("SNE", "wbc5")
'neutrophil'
>>> to_vocabulary("NGB", "pbc8")
'neutrophil'
>>> to_vocabulary("MMY", "pbc8")
'immature_granulocyte'

A label no concept knows raises :class:`~hemascope.errors.UnknownLabelError`; a concept that
has no ancestor in the target vocabulary (``platelet`` -> ``wbc5``) raises
:class:`~hemascope.errors.UnmappableLabelError`. Both name the label and the vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Iterable, Mapping

from hemascope.errors import UnknownLabelError, UnmappableLabelError

# --------------------------------------------------------------------------- concepts
#: concept -> parent concept (``None`` for roots). Order is irrelevant.
PARENT: Mapping[str, str | None] = MappingProxyType({
    # smear-field objects
    "wbc": None,
    "rbc": None,
    "platelet": None,
    # white cells
    "neutrophil": "wbc",
    "band_neutrophil": "neutrophil",
    "segmented_neutrophil": "neutrophil",
    "eosinophil": "wbc",
    "abnormal_eosinophil": "eosinophil",
    "basophil": "wbc",
    "lymphocyte": "wbc",
    "atypical_lymphocyte": "lymphocyte",
    "immature_lymphocyte": "lymphocyte",
    "hairy_cell": "lymphocyte",
    "monocyte": "wbc",
    "immature_granulocyte": "wbc",
    "promyelocyte": "immature_granulocyte",
    "promyelocyte_bilobed": "promyelocyte",
    "faggot_cell": "promyelocyte",
    "myelocyte": "immature_granulocyte",
    "metamyelocyte": "immature_granulocyte",
    "blast": "wbc",
    "myeloblast": "blast",
    "monoblast": "blast",
    "plasma_cell": "wbc",
    # red-cell lineage (nucleated; not an RBC for counting)
    "erythroblast": None,
    "proerythroblast": "erythroblast",
    # non-cells / unclassifiable (bone-marrow sets carry them as classes)
    "smudge_cell": None,
    "artefact": None,
    "not_identifiable": None,
    "other_cell": None,
    # cell parts (semantic segmentation)
    "background": None,
    "nucleus": None,
    "cytoplasm": None,
    "vacuole": None,
})

#: Extra spellings -> concept. Matching is case-insensitive; spaces, hyphens and dots
#: count as underscores and a trailing plural ``s``/``es`` is tolerated, so only
#: genuinely different words are listed here.
SYNONYMS: Mapping[str, str] = MappingProxyType({
    # PBC (Acevedo 2020) folder names and file-name prefixes
    "ig": "immature_granulocyte", "ba": "basophil", "eo": "eosinophil", "erb": "erythroblast",
    "ly": "lymphocyte", "mo": "monocyte", "bne": "band_neutrophil",
    "sne": "segmented_neutrophil", "my": "myelocyte", "mmy": "metamyelocyte",
    "pmy": "promyelocyte",
    # Munich bone marrow (Matek 2021) and AML (Matek 2019) codes
    "ngb": "band_neutrophil", "ngs": "segmented_neutrophil", "lyt": "lymphocyte",
    "mon": "monocyte", "eos": "eosinophil", "bas": "basophil", "mmz": "metamyelocyte",
    "myb": "myelocyte", "pmo": "promyelocyte", "bla": "blast", "plm": "plasma_cell",
    "ksc": "smudge_cell", "oth": "other_cell", "art": "artefact", "nif": "not_identifiable",
    "peb": "proerythroblast", "ebo": "erythroblast", "hac": "hairy_cell",
    "abe": "abnormal_eosinophil", "lyi": "immature_lymphocyte", "fgc": "faggot_cell",
    "lya": "atypical_lymphocyte", "mob": "monoblast", "myo": "myeloblast",
    "pmb": "promyelocyte_bilobed",
    # LISC folder names, Raabin and common English variants
    "baso": "basophil", "eosi": "eosinophil", "lymp": "lymphocyte", "mono": "monocyte",
    "neut": "neutrophil", "lympho": "lymphocyte", "neutro": "neutrophil",
    "band": "band_neutrophil", "band_cell": "band_neutrophil", "seg": "segmented_neutrophil",
    "segmented": "segmented_neutrophil", "stab": "band_neutrophil",
    "immature_granulocytes": "immature_granulocyte", "immature_granulocyte_ig": "immature_granulocyte",
    "nrbc": "erythroblast", "normoblast": "erythroblast", "nucleated_rbc": "erythroblast",
    "plasmocyte": "plasma_cell", "smudge": "smudge_cell", "artifact": "artefact",
    "large_lymphocyte": "lymphocyte", "small_lymphocyte": "lymphocyte",
    "variant_lymphocyte": "atypical_lymphocyte", "reactive_lymphocyte": "atypical_lymphocyte",
    # Raabin-WBC double-labelled subtypes, word orders and abbreviations seen in other sets
    "lymph": "lymphocyte", "large_lymph": "lymphocyte", "small_lymph": "lymphocyte",
    "meta": "metamyelocyte", "burst_cell": "smudge_cell", "neutrophil_band": "band_neutrophil",
    "neutrophil_segmented": "segmented_neutrophil", "band_form": "band_neutrophil",
    "pmn": "neutrophil", "polymorphonuclear": "neutrophil",
    "lymphocyte_reactive": "atypical_lymphocyte", "lymphocyte_atypical": "atypical_lymphocyte",
    "atypical_lymph": "atypical_lymphocyte", "reactive_lymph": "atypical_lymphocyte",
    "vly": "atypical_lymphocyte", "promyelo": "promyelocyte", "myelo": "myelocyte",
    "metamyelo": "metamyelocyte", "eosino": "eosinophil",
    # smear-field objects (BCCD / CBC / YOLO sets)
    "white_blood_cell": "wbc", "leukocyte": "wbc", "leucocyte": "wbc", "white_cell": "wbc",
    "red_blood_cell": "rbc", "erythrocyte": "rbc", "red_cell": "rbc",
    "thrombocyte": "platelet", "plt": "platelet",
    # segmentation
    "bg": "background", "nuclei": "nucleus", "cyto": "cytoplasm", "vacuoles": "vacuole",
})


# ------------------------------------------------------------------------ vocabularies
@dataclass(frozen=True)
class Vocabulary:
    """An ordered class list, each entry a concept.

    Attributes:
        name: registry key (``"pbc8"``).
        classes: concepts in the canonical order of this vocabulary (index = class id).
        display: how the source writes each class (``"NGS"``, ``"ig"``, ``"WBC"``).
        description: where the vocabulary comes from.
    """

    name: str
    classes: tuple[str, ...]
    display: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.display):
            raise ValueError(f"vocabulary {self.name}: classes and display differ in length")
        unknown = [c for c in self.classes if c not in PARENT]
        if unknown:
            raise ValueError(f"vocabulary {self.name}: unknown concepts {unknown}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"vocabulary {self.name}: duplicate classes")

    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, concept: object) -> bool:
        return concept in self.classes

    def index(self, label: str) -> int:
        """Class id of ``label`` (any spelling that maps into this vocabulary)."""
        return self.classes.index(to_vocabulary(label, self))

    def display_name(self, concept: str) -> str:
        return self.display[self.classes.index(concept)]


_VOCABS: dict[str, Vocabulary] = {}


def register_vocabulary(vocab: Vocabulary) -> Vocabulary:
    """Add a vocabulary to the registry; duplicate names are an error."""
    if vocab.name in _VOCABS:
        raise ValueError(f"vocabulary {vocab.name!r} is already registered")
    _VOCABS[vocab.name] = vocab
    return vocab


def _reg(name: str, pairs: Iterable[tuple[str, str]], description: str) -> Vocabulary:
    pairs = list(pairs)
    return register_vocabulary(Vocabulary(
        name, tuple(c for c, _ in pairs), tuple(d for _, d in pairs), description))


PBC8 = _reg("pbc8", [
    ("basophil", "basophil"), ("eosinophil", "eosinophil"), ("erythroblast", "erythroblast"),
    ("immature_granulocyte", "ig"), ("lymphocyte", "lymphocyte"), ("monocyte", "monocyte"),
    ("neutrophil", "neutrophil"), ("platelet", "platelet"),
], "PBC (Acevedo et al. 2020): 8 folders of peripheral blood cells")
WBC5 = _reg("wbc5", [
    ("basophil", "Basophil"), ("eosinophil", "Eosinophil"), ("lymphocyte", "Lymphocyte"),
    ("monocyte", "Monocyte"), ("neutrophil", "Neutrophil"),
], "The five mature white-cell types (WBCAtt, Raabin, LISC, CellaVision)")
CROSS6 = _reg("cross6", [
    ("basophil", "basophil"), ("eosinophil", "eosinophil"), ("erythroblast", "erythroblast"),
    ("lymphocyte", "lymphocyte"), ("monocyte", "monocyte"), ("neutrophil", "neutrophil"),
], "Six classes shared by ten public sets (Chossegros et al. 2024)")
MUNICH21 = _reg("munich21", [
    ("band_neutrophil", "NGB"), ("segmented_neutrophil", "NGS"), ("lymphocyte", "LYT"),
    ("monocyte", "MON"), ("eosinophil", "EOS"), ("basophil", "BAS"),
    ("metamyelocyte", "MMZ"), ("myelocyte", "MYB"), ("promyelocyte", "PMO"), ("blast", "BLA"),
    ("plasma_cell", "PLM"), ("smudge_cell", "KSC"), ("other_cell", "OTH"),
    ("artefact", "ART"), ("not_identifiable", "NIF"), ("proerythroblast", "PEB"),
    ("erythroblast", "EBO"), ("hairy_cell", "HAC"), ("abnormal_eosinophil", "ABE"),
    ("immature_lymphocyte", "LYI"), ("faggot_cell", "FGC"),
], "Munich bone-marrow cytomorphology (Matek et al. 2021): 21 classes")
RVPBS10 = _reg("rvpbs10", [
    ("band_neutrophil", "band"), ("basophil", "basophil"), ("blast", "blast"),
    ("eosinophil", "eosinophil"), ("lymphocyte", "lymphocyte"), ("myelocyte", "myelocyte"),
    ("metamyelocyte", "metamyelocyte"), ("monocyte", "monocyte"),
    ("neutrophil", "neutrophil"), ("promyelocyte", "promyelocyte"),
], "RV-PBS smear photographs (Pal et al.): 10 white-cell classes")
SMEAR3 = _reg("smear3", [("wbc", "WBC"), ("rbc", "RBC"), ("platelet", "Platelets")],
              "Smear-field objects (BCCD, CBC): white cells, red cells, platelets")
CELL_PARTS = _reg("cell_parts", [
    ("background", "background"), ("nucleus", "nucleus"), ("cytoplasm", "cytoplasm"),
    ("vacuole", "vacuole"), ("platelet", "platelet"), ("rbc", "RBC"),
], "Cell-part semantic segmentation (WBCAtt+): index = label value in mask images")


def vocabulary(name: str | Vocabulary) -> Vocabulary:
    """Look up a registered vocabulary by name (or pass one through)."""
    if isinstance(name, Vocabulary):
        return name
    try:
        return _VOCABS[name]
    except KeyError:
        raise UnknownLabelError(name, "vocabularies", tuple(_VOCABS)) from None


def vocabularies() -> tuple[str, ...]:
    return tuple(_VOCABS)


# ----------------------------------------------------------------------- resolution
_SEP = re.compile(r"[\s\-./]+")


def normalize(label: str) -> str:
    """Lower-case, separators to ``_``, trimmed: ``" Band-Neutrophil "`` -> ``band_neutrophil``."""
    return _SEP.sub("_", str(label).strip().lower()).strip("_")


@lru_cache(maxsize=4096)
def _lookup(key: str) -> str | None:
    if key in PARENT:
        return key
    if key in SYNONYMS:
        return SYNONYMS[key]
    for cut in ("s", "es"):  # plurals: neutrophils, platelets, nuclei are in SYNONYMS
        if key.endswith(cut) and len(key) > len(cut) + 1:
            base = key[: -len(cut)]
            if base in PARENT:
                return base
            if base in SYNONYMS:
                return SYNONYMS[base]
    return None


def resolve(label: str) -> str:
    """Canonical concept for a label written any known way.

    Raises:
        UnknownLabelError: no concept or synonym matches.
    """
    concept = _lookup(normalize(label))
    if concept is None:
        raise UnknownLabelError(str(label), "taxonomy")
    return concept


def is_known(label: str) -> bool:
    return _lookup(normalize(label)) is not None


def ancestors(concept: str) -> tuple[str, ...]:
    """The concept itself followed by its parents up to the root."""
    chain = [resolve(concept)]
    while (parent := PARENT[chain[-1]]) is not None:
        chain.append(parent)
    return tuple(chain)


def to_vocabulary(label: str, vocab: str | Vocabulary) -> str:
    """Map a label to the nearest class of ``vocab`` (the label itself or an ancestor).

    Raises:
        UnknownLabelError: the label is unknown (message names label and vocabulary).
        UnmappableLabelError: the label is known but has no class in ``vocab``.
    """
    v = vocabulary(vocab)
    try:
        chain = ancestors(label)
    except UnknownLabelError:
        raise UnknownLabelError(str(label), v.name, v.display) from None
    for concept in chain:
        if concept in v.classes:
            return concept
    raise UnmappableLabelError(str(label), v.name, v.display)


def try_to_vocabulary(label: str, vocab: str | Vocabulary) -> str | None:
    """Like :func:`to_vocabulary` but ``None`` instead of raising."""
    try:
        return to_vocabulary(label, vocab)
    except UnknownLabelError:
        return None


def map_labels(labels: Iterable[str], vocab: str | Vocabulary) -> list[str]:
    """Map many labels; the first failure raises (naming that label)."""
    return [to_vocabulary(lbl, vocab) for lbl in labels]


def common_classes(a: str | Vocabulary, b: str | Vocabulary) -> tuple[str, ...]:
    """Classes of ``a`` that map to a class of ``b`` and back to themselves (order of ``a``)."""
    va, vb = vocabulary(a), vocabulary(b)
    out = []
    for c in va.classes:
        m = try_to_vocabulary(c, vb)
        if m is not None and try_to_vocabulary(m, va) == c:
            out.append(c)
    return tuple(out)


# --------------------------------------------------------------------- PBC sub-classes
_PBC_PREFIX = re.compile(r"^([A-Za-z]+)_")


def pbc_subclass(file_name: str) -> str | None:
    """Finer concept encoded in a PBC file name (``BNE_123.jpg`` -> ``band_neutrophil``).

    Returns ``None`` when the name carries no known prefix.
    """
    m = _PBC_PREFIX.match(file_name.rsplit("/", 1)[-1])
    return _lookup(normalize(m.group(1))) if m else None


def refining_subclass(file_name: str, label: str) -> str | None:
    """The file-name sub-class when it is strictly finer than ``label``, else ``None``.

    ``("BNE_1.jpg", "neutrophil")`` -> ``"band_neutrophil"``; ``("BA_1.jpg", "basophil")``
    -> ``None`` (nothing finer); a prefix from another branch of the tree is ignored.
    """
    sub = pbc_subclass(file_name)
    if sub is None or sub == label or label not in ancestors(sub):
        return None
    return sub


# ------------------------------------------------------------------ WBCAtt attributes
#: The 11 WBCAtt attributes (Tsutsui et al. 2023) and their allowed values, in the
#: column names and spellings of the released CSV files.
ATTRIBUTES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "cell_size": ("big", "small"),
    "cell_shape": ("round", "irregular"),
    "nucleus_shape": ("unsegmented-band", "unsegmented-round", "unsegmented-indented",
                      "segmented-bilobed", "segmented-multilobed", "irregular"),
    "nuclear_cytoplasmic_ratio": ("low", "high"),
    "chromatin_density": ("densely", "loosely"),
    "cytoplasm_vacuole": ("no", "yes"),
    "cytoplasm_texture": ("clear", "frosted"),
    "cytoplasm_colour": ("light blue", "blue", "purple blue"),
    "granule_type": ("nil", "small", "round", "coarse"),
    "granule_colour": ("nil", "pink", "red", "purple"),
    "granularity": ("no", "yes"),
})


def attribute_value(attribute: str, value: str) -> str:
    """Validate one attribute value (case- and space-insensitive); returns the canonical spelling.

    Raises:
        UnknownLabelError: unknown attribute or value (message names both).
    """
    key = attribute.strip().lower()
    if key not in ATTRIBUTES:
        raise UnknownLabelError(attribute, "wbcatt attributes", tuple(ATTRIBUTES))
    allowed = ATTRIBUTES[key]
    want = " ".join(str(value).strip().lower().split())
    for v in allowed:
        if v == want or v.replace("-", " ") == want.replace("-", " "):
            return v
    raise UnknownLabelError(str(value), f"wbcatt attribute {key}", allowed)
