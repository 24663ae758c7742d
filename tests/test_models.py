import pytest
import torch

from hemascope.errors import HemascopeError
from hemascope.models import create_encoder, encoder_spec, list_encoders, register_encoder
from hemascope.models.classifier import CellClassifier

HEAVY = {"vit_large_patch32", "resnet152", "vgg19_bn", "regnety_032", "xception41", "inception_v3"}


@pytest.mark.parametrize("name", list_encoders())
def test_every_registered_encoder_builds_and_runs(name):
    spec = encoder_spec(name)
    size = 64 if spec.family == "cnn" and name not in ("inception_v3",) else spec.default_size
    if name == "inception_v3":
        size = 75
    enc = create_encoder(name, image_size=size)
    assert enc.out_features > 0
    if name in HEAVY:
        return  # built (no download, random init); a forward pass would only cost time
    with torch.inference_mode():
        out = enc.eval()(torch.randn(1, 3, size, size))
    assert out.shape == (1, enc.out_features)


def test_registry_rejects_duplicates_and_unknown():
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("resnet18")(lambda **k: None)
    with pytest.raises(HemascopeError, match="unknown architecture 'resnet9000'"):
        create_encoder("resnet9000")


def test_classifier_head_embedding_and_reset():
    m = CellClassifier("tinycnn", 5).eval()
    x = torch.randn(3, 3, 32, 32)
    assert m.embed(x).shape == (3, 128)
    assert m(x).shape == (3, 5)
    assert torch.allclose(m.forward_head(m.embed(x)), m(x))
    m.reset_classifier(2)
    assert m(x).shape == (3, 2) and m.num_classes == 2


def test_a_model_copy_carries_its_files_and_merged_config_but_not_its_card(tmp_path):
    import json

    from hemascope.errors import HemascopeError
    from hemascope.models.artifact import ARTIFACT_FORMAT, ModelError, copy_with_config

    src = tmp_path / "model"
    (src / "segmenter").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"format": ARTIFACT_FORMAT, "task": "x", "a": 1}))
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "MODEL_CARD.md").write_text("describes the source")
    (src / "segmenter" / "config.json").write_text("{}")
    out = copy_with_config(src, tmp_path / "copy", {"a": 2, "b": [0.5]})
    assert json.loads((out / "config.json").read_text()) == {"format": ARTIFACT_FORMAT,
                                                             "task": "x", "a": 2, "b": [0.5]}
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert (out / "segmenter" / "config.json").read_text() == "{}"  # sub-folders travel
    assert not (out / "MODEL_CARD.md").exists() and not list(out.rglob("*.part"))
    with pytest.raises(HemascopeError, match="own folder"):
        copy_with_config(src, src, {"a": 3})
    assert json.loads((src / "config.json").read_text())["a"] == 1
    (tmp_path / "bad").mkdir()
    with pytest.raises(ModelError):
        copy_with_config(tmp_path / "bad", tmp_path / "copy2", {})
    assert not (tmp_path / "copy2").exists()
