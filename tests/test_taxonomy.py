import pytest

from hemascope import taxonomy
from hemascope.errors import UnknownLabelError, UnmappableLabelError


@pytest.mark.parametrize("label, concept", [
    ("NEUTROPHIL", "neutrophil"), ("Neutrophil", "neutrophil"), ("neutrophils", "neutrophil"),
    ("SNE", "segmented_neutrophil"), ("BNE", "band_neutrophil"), ("Platelets", "platelet"),
    ("ig", "immature_granulocyte"), ("NGS", "segmented_neutrophil"), ("Baso", "basophil"),
    ("white blood cell", "wbc"), ("RBC", "rbc"), ("Band-Neutrophil", "band_neutrophil"),
    (" Lymphocyte ", "lymphocyte"), ("nuclei", "nucleus"), ("EBO", "erythroblast"),
    ("Large Lymph", "lymphocyte"), ("Small Lymph", "lymphocyte"), ("Meta", "metamyelocyte"),
    ("Burst cell", "smudge_cell"), ("Neutrophil-band", "band_neutrophil"),
    ("Lymphocyte_reactive", "atypical_lymphocyte"), ("PMN", "neutrophil"),
])
def test_resolve_spellings(label, concept):
    assert taxonomy.resolve(label) == concept


@pytest.mark.parametrize("label, vocab, expected", [
    ("SNE", "wbc5", "neutrophil"), ("NGB", "pbc8", "neutrophil"),
    ("MMY", "pbc8", "immature_granulocyte"), ("PMY", "rvpbs10", "promyelocyte"),
    ("BNE", "rvpbs10", "band_neutrophil"), ("SNE", "rvpbs10", "neutrophil"),
    ("neutrophil", "smear3", "wbc"), ("Platelets", "smear3", "platelet"),
    ("PEB", "cross6", "erythroblast"), ("segmented_neutrophil", "munich21", "segmented_neutrophil"),
    ("ABE", "wbc5", "eosinophil"),
])
def test_fine_to_coarse(label, vocab, expected):
    assert taxonomy.to_vocabulary(label, vocab) == expected


def test_unknown_label_names_label_and_vocabulary():
    with pytest.raises(UnknownLabelError, match=r"'blorp'.*'pbc8'"):
        taxonomy.to_vocabulary("blorp", "pbc8")


def test_unmappable_label_is_distinct_error():
    with pytest.raises(UnmappableLabelError, match=r"'platelet'.*'wbc5'"):
        taxonomy.to_vocabulary("platelet", "wbc5")
    # immature granulocytes are not one of the five mature types
    with pytest.raises(UnmappableLabelError):
        taxonomy.to_vocabulary("myelocyte", "cross6")


def test_vocabulary_sizes_and_known_codes():
    assert len(taxonomy.vocabulary("pbc8")) == 8
    assert len(taxonomy.vocabulary("wbc5")) == 5
    assert len(taxonomy.vocabulary("cross6")) == 6
    assert len(taxonomy.vocabulary("rvpbs10")) == 10
    munich = taxonomy.vocabulary("munich21")
    assert len(munich) == 21
    codes = "NGB NGS LYT MON EOS BAS MMZ MYB PMO BLA PLM KSC OTH ART NIF PEB EBO HAC ABE LYI FGC"
    assert sorted(munich.display) == sorted(codes.split())
    # every code resolves to the concept at the same position
    for concept, code in zip(munich.classes, munich.display):
        assert taxonomy.resolve(code) == concept
    assert taxonomy.vocabulary("cell_parts").classes[:3] == ("background", "nucleus", "cytoplasm")


def test_vocabulary_index_accepts_synonyms():
    v = taxonomy.vocabulary("wbc5")
    assert v.index("SNE") == v.classes.index("neutrophil")


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        taxonomy.register_vocabulary(taxonomy.vocabulary("wbc5"))
    with pytest.raises(UnknownLabelError, match="nope"):
        taxonomy.vocabulary("nope")


def test_common_classes():
    assert taxonomy.common_classes("pbc8", "wbc5") == (
        "basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
    assert "erythroblast" in taxonomy.common_classes("pbc8", "cross6")
    assert "band_neutrophil" not in taxonomy.common_classes("rvpbs10", "wbc5")


@pytest.mark.parametrize("name, sub", [
    ("BNE_123.jpg", "band_neutrophil"), ("neutrophil/SNE_9.jpg", "segmented_neutrophil"),
    ("MY_1.jpg", "myelocyte"), ("PLATELET_5.jpg", "platelet"), ("img001.jpg", None),
])
def test_pbc_subclass(name, sub):
    assert taxonomy.pbc_subclass(name) == sub


def test_refining_subclass_only_when_finer():
    assert taxonomy.refining_subclass("BNE_1.jpg", "neutrophil") == "band_neutrophil"
    assert taxonomy.refining_subclass("BA_1.jpg", "basophil") is None
    assert taxonomy.refining_subclass("MY_1.jpg", "neutrophil") is None


def test_attributes_have_eleven_with_allowed_values():
    assert len(taxonomy.ATTRIBUTES) == 11
    assert len(taxonomy.ATTRIBUTES["nucleus_shape"]) == 6
    assert taxonomy.attribute_value("cytoplasm_colour", " Light  Blue") == "light blue"
    with pytest.raises(UnknownLabelError, match="cytoplasm_colour"):
        taxonomy.attribute_value("cytoplasm_colour", "green")
    with pytest.raises(UnknownLabelError, match="wbcatt attributes"):
        taxonomy.attribute_value("nucleus_colour", "blue")
