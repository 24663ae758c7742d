"""A trained model is a folder: ``config.json`` + ``model.safetensors`` (+ ``split.json``).

The config carries everything inference needs (architecture, classes, input size,
normalisation, stain reference) and everything a reader needs to trust the numbers
(training data, split, command, measured metrics). Weights are safetensors only: nothing
is ever unpickled. ``"default"`` names the classifier shipped inside the package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hemascope.errors import HemascopeError
from hemascope.io.atomic import atomic_write, json_text, note_input, write_text

ARTIFACT_FORMAT = "hemascope-model/1"
CONFIG, WEIGHTS, SPLIT = "config.json", "model.safetensors", "split.json"
ONNX_WEIGHTS = "model.onnx"  # an inference-only export (hemascope.models.onnx)
_DEFAULTS = {"classifier": "pbc8_resnet18", "detector": "smear3_fcos",
             "attributes": "wbcatt_resnet18", "segmentation": "cellparts_unet",
             "concepts": "wbcatt_concepts"}


class ModelError(HemascopeError):
    """A model folder is missing, incomplete or does not match its config."""


@dataclass
class LoadedModel:
    """A model ready for inference plus its config and folder."""

    model: torch.nn.Module
    config: dict[str, Any]
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The input's channel ``(mean, std)`` as float32 tensors, for ``to_batch``."""
        return (torch.tensor(self.config["mean"], dtype=torch.float32),
                torch.tensor(self.config["std"], dtype=torch.float32))


def default_model_dir(task: str = "classifier") -> Path:
    """Folder of the model shipped in the package for ``task``."""
    return Path(__file__).resolve().parent.parent / "weights" / _DEFAULTS[task]


def resolve_model_dir(spec: str | Path | None, task: str = "classifier") -> Path:
    """``None`` / ``"default"`` -> the shipped model; else the given folder (checked)."""
    path = default_model_dir(task) if spec in (None, "default") else Path(spec)
    if not path.is_dir():
        hint = " (the shipped default is missing: reinstall hemascope)" if spec in (None, "default") else ""
        raise ModelError(f"model folder {path} does not exist{hint}")
    if not (path / CONFIG).is_file():
        raise ModelError(f"model folder {path} lacks {CONFIG}")
    if not (path / WEIGHTS).is_file() and not (path / ONNX_WEIGHTS).is_file():
        raise ModelError(f"model folder {path} lacks {WEIGHTS}")
    return path


def lineage(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a model was fine-tuned from, oldest first: the chain of nested
    ``initialised_from`` records in its config's ``training`` section (empty from scratch)."""
    chain, prior = [], training.get("initialised_from")
    while prior:
        chain.append(prior)
        prior = prior.get("initialised_from")
    return chain[::-1]


def save_artifact(out_dir: str | Path, model: torch.nn.Module, config: dict[str, Any], *,
                  dtype: str = "float32") -> Path:
    """Write weights (as ``dtype``: float32 or float16) and config; returns the folder."""
    from safetensors.torch import save as st_save

    if dtype not in ("float32", "float16"):
        raise ValueError("dtype must be float32 or float16")
    out = Path(out_dir)
    tensors = {k: (v.detach().to(torch.float16) if dtype == "float16" and v.is_floating_point()
                   else v.detach()).contiguous().cpu() for k, v in model.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise HemascopeError(f"not saving {out}: training diverged, {len(bad)} weight tensor(s) "
                             f"hold NaN or infinite values (e.g. {bad[0]}); try a lower learning rate")
    blob = st_save(tensors, metadata={"format": ARTIFACT_FORMAT})
    cfg = {"format": ARTIFACT_FORMAT, **config, "weights_dtype": dtype,
           "weights_sha256": hashlib.sha256(blob).hexdigest()}
    text = json_text(cfg)  # a config that cannot be written fails before any file changes
    with atomic_write(out / WEIGHTS, "wb") as fh:
        fh.write(blob)
    write_text(out / CONFIG, text)
    return out


def refuse_own_folder(src: str | Path, out: str | Path, what: str = "model") -> None:
    """Raise :class:`HemascopeError` when ``out`` is the model folder ``src`` itself (an
    input model is never overwritten); call it before any work."""
    if Path(out).resolve() == Path(src).resolve():
        raise HemascopeError(f"{out} is the {what}'s own folder: write the copy to another "
                             "folder (the input model is never overwritten)")


def copy_with_config(src: str | Path, out: str | Path, updates: dict[str, Any], *,
                     what: str = "model") -> Path:
    """A copy of the model folder ``src`` at ``out`` (weights and any sub-folders, each file
    written atomically) whose ``config.json`` has ``updates`` merged in; the model card is
    left behind, as it describes ``src``.

    Raises:
        HemascopeError: ``out`` is ``src`` itself (an input model is never overwritten).
        ModelError: ``src`` holds no readable config.
    """
    import shutil

    refuse_own_folder(src, out, what)
    src, dst = Path(src), Path(out)
    cfg = {**read_config(src), **updates}
    text = json_text(cfg)
    for f in sorted(src.rglob("*")):
        if not f.is_file() or f.name in (CONFIG, "MODEL_CARD.md") and f.parent == src:
            continue
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(f, tmp)
        tmp.replace(target)
    write_text(dst / CONFIG, text)
    return dst


def read_config(path: str | Path) -> dict[str, Any]:
    p = Path(path) / CONFIG
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read {p}: {e}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != ARTIFACT_FORMAT:
        raise ModelError(f"{p} is not a hemascope model config ({ARTIFACT_FORMAT!r} expected)")
    return cfg


def load_classifier(spec: str | Path | None = "default") -> LoadedModel:
    """Load a classifier folder (or the shipped default) in eval mode on the CPU.

    Raises:
        ModelError: missing files, a config without the needed keys, or weights that do
            not fit the architecture the config describes.
    """
    from hemascope.models.classifier import CellClassifier

    path = resolve_model_dir(spec)
    cfg = read_config(path)
    task = cfg.get("task", "classification")
    if task != "classification":
        raise ModelError(f"{path} holds a {task} model, not a classifier")
    need = ("arch", "classes", "image_size", "mean", "std")
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ModelError(f"{path / CONFIG} lacks {', '.join(missing)}")
    check_classifier_config(cfg, path / CONFIG)
    if cfg.get("runtime") == "onnx":
        if not (path / ONNX_WEIGHTS).is_file():
            raise ModelError(f"model folder {path} lacks {ONNX_WEIGHTS}")  # exported by hemascope.models.onnx (fast CPU inference)
        from hemascope.models.onnx import OnnxClassifier

        return LoadedModel(OnnxClassifier(path / ONNX_WEIGHTS), cfg, path)
    model = CellClassifier(cfg["arch"], len(cfg["classes"]), embed_dim=cfg.get("embed_dim", 128),
                           hidden_dim=cfg.get("hidden_dim", 512), dropout=cfg.get("dropout", 0.2),
                           image_size=cfg["image_size"])
    load_weights(model, path, cfg)
    model.eval()
    return LoadedModel(model.to(memory_format=torch.channels_last), cfg, path)


def require_pytorch(loaded: LoadedModel, what: str) -> None:
    """Raise a :class:`ModelError` if ``loaded`` is an ONNX export (it only predicts):
    ``what`` (e.g. "adaptation") needs the PyTorch model it was exported from."""
    cfg = loaded.config
    if cfg.get("runtime") == "onnx":
        raise ModelError(f"{loaded.path} is an ONNX export (inference only): {what} needs the "
                         f"PyTorch model it was exported from "
                         f"({cfg.get('onnx', {}).get('source', 'its source')})")


def check_classifier_config(cfg: dict[str, Any], where: Path) -> None:
    """Raise a :class:`ModelError` naming the first value a classifier config cannot use."""
    import math

    def bad(key: str, want: str) -> ModelError:
        return ModelError(f"{where}: {key!r} must be {want}, not {cfg.get(key)!r:.60}")

    classes = cfg["classes"]
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes)):
        raise bad("classes", "a list of distinct class names")
    size = cfg["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise bad("image_size", "a whole number of pixels from 16 to 4096")
    for key, low in (("mean", None), ("std", 0.0)):
        v = cfg[key]
        if (not isinstance(v, list) or len(v) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                           and (low is None or x > low) for x in v)):
            raise bad(key, "3 finite numbers" + (" above 0" if low is not None else ""))
    if "views" in cfg and (isinstance(cfg["views"], bool) or cfg["views"] not in (1, 2, 4, 8)):
        raise bad("views", "1, 2, 4 or 8 (test-time views used when none are asked for)")


def load_weights(model: torch.nn.Module, path: Path, cfg: dict[str, Any]) -> None:
    """Fill ``model`` from ``path/model.safetensors``; every tensor must match exactly.

    Raises:
        ModelError: unreadable weights, or names / shapes that do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    note_input(path / WEIGHTS)
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read {path / WEIGHTS}: {e}") from None
    own = model.state_dict()
    unexpected, absent = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if unexpected or absent or wrong:
        raise ModelError(f"{path / WEIGHTS} does not match architecture {cfg.get('arch')!r} with "
                         f"{len(cfg.get('classes', []))} classes (missing {absent[:3]}, unexpected "
                         f"{unexpected[:3]}, wrong shape {wrong[:3]})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def init_from(model: torch.nn.Module, spec: str | Path, *, task: str = "classifier",
              required: str = "encoder.") -> dict[str, int]:
    """Initialise ``model`` from another artifact (in-domain or self-supervised pre-training,
    or fine-tuning a trained model).

    Every tensor whose name and shape match is copied (encoder, embedding, and the head
    when the classes agree); the rest keeps its random init. ``task`` resolves
    ``"default"``; ``required`` is the name prefix at least one copied tensor must have.

    Returns:
        ``{"copied": n, "kept": m}`` tensor counts.

    Raises:
        ModelError: the artifact's architecture differs, or no encoder tensor matched.
    """
    from safetensors.torch import load_file

    path = resolve_model_dir(spec, task)
    cfg = read_config(path)
    if cfg.get("runtime") == "onnx":
        raise ModelError(f"{path} is an ONNX export (inference only): start from the model it "
                         f"was exported from ({cfg.get('onnx', {}).get('source', 'its source')})")
    arch = getattr(model, "arch", None)
    if arch is not None and cfg.get("arch") not in (None, arch):
        raise ModelError(f"cannot initialise a {arch} from {path}, which holds a {cfg.get('arch')}")
    state = load_file(str(path / WEIGHTS))
    own = model.state_dict()
    take = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith(required) for k in take):
        raise ModelError(f"no {required.rstrip('.')} weights of {path} fit this model")
    model.load_state_dict(take, strict=False)
    return {"copied": len(take), "kept": len(own) - len(take)}
