"""Typed, flat training configuration; saved with every run and every model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hemascope.augment import AugmentConfig
from hemascope.detect.data import FieldAugment
from hemascope.errors import HemascopeError

#: Bounds every training option of that name must meet: ``(low, high, low_open, high_open)``.
_RANGES = {
    "epochs": (1, None, False, False), "batch_size": (1, None, False, False),
    "image_size": (16, 4096, False, False), "test_size": (16, 8192, False, False),
    "max_size": (16, 8192, False, False), "max_side": (16, None, False, False),
    "fpn_channels": (8, None, False, False), "embed_dim": (1, None, False, False),
    "hidden_dim": (1, None, False, False), "width": (1, None, False, False),
    "depth": (1, 6, False, False), "val_every": (1, None, False, False),
    "plateau_patience": (1, None, False, False), "lr": (0, None, True, False),
    "weight_decay": (0, None, False, False), "momentum": (0, 1, False, True),
    "warmup_epochs": (0, None, False, False), "label_smoothing": (0, 1, False, True),
    "ema_decay": (0, 1, False, True), "dropout": (0, 1, False, True),
    "early_stopping": (0, None, False, False), "val_fraction": (0, 1, False, True),
    "test_fraction": (0, 1, False, True), "threads": (0, None, False, False),
    "workers": (0, None, False, False), "max_minutes": (0, None, False, False),
    "clip_grad": (0, None, False, False), "dice_weight": (0, None, False, False),
    "colour": (0, None, False, False), "zoom": (0, 1, False, True), "min_scale": (0, 1, False, True), "blur": (0, 8, False, False),
    "hue": (0, 180, False, False), "flat_pad": (0, 1, False, False),
    "pseudo_limit": (1, None, False, False), "min_confidence": (0, 1, False, False),
    "student_epochs": (0, None, False, False), "shots": (1, None, False, False),
    "head_lr_mult": (0, None, True, False), "source_mix": (0, None, False, False),
    "pseudo_rounds": (0, None, False, False), "pseudo_fraction": (0, 1, True, False),
    "pseudo_per_shot": (0, None, True, False), "shot_epochs": (0, None, False, False),
    "max_image_passes": (1, None, False, False),
    "shot_max_images": (1, None, False, False), "steps_per_epoch": (1, None, False, False),
    "domain_weight": (0, None, False, False), "diversity": (0, None, False, False),
    "pseudo_weight": (0, None, False, False), "max_images": (1, None, False, False),
}
_CHOICES = {
    "optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "plateau", "constant"),
    "weights_dtype": ("float32", "float16"),
    "monitor": ("accuracy", "balanced_accuracy", "macro_f1", "macro_precision", "macro_recall"),
    "aggregate": ("concat", "max", "mean", "weighted", "attention"), "views": (1, 2, 4, 8),
    "class_weights": ("none", "sqrt"), "prior": ("uniform", "shots"),
    "shot_prior": ("uniform", "shots"),
}


def check_options(cfg: Any) -> None:
    """Raise a :class:`HemascopeError` naming the first option outside its bounds, so that
    a bad value stops a run before any work (not after training, not as a traceback)."""
    import math

    for f in fields(cfg):
        value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise HemascopeError(f"{flag} must be one of {', '.join(map(str, _CHOICES[f.name]))} (got {value!r})")
        if f.name not in _RANGES or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high, low_open, high_open = _RANGES[f.name]
        bad = (not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low))
               or (high is not None and (value >= high if high_open else value > high)))
        if bad:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
            hi = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
            raise HemascopeError(f"{flag} must be in {lo}, {hi} (got {value})")
    if hasattr(cfg, "min_sizes") and (not cfg.min_sizes or min(cfg.min_sizes) < 16):
        raise HemascopeError("--min-sizes needs one or more sizes of at least 16 px")
    if hasattr(cfg, "test_fraction") and cfg.val_fraction + cfg.test_fraction >= 1:
        raise HemascopeError("--val-fraction plus --test-fraction must be below 1")


@dataclass
class ClassifierTrainConfig:
    """Options of ``hemascope train classifier`` (every field is a CLI flag).

    Defaults are those of the shipped PBC model: ResNet-18 at 112 px from random init,
    AdamW with cosine decay and warm-up, label smoothing, EMA of the weights, and the
    best-on-validation checkpoint kept.
    """

    arch: str = "resnet18"
    image_size: int = 112
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | plateau | constant
    warmup_epochs: float = 1.0
    plateau_patience: int = 3  # plateau: lr x0.1 after this many stale epochs
    label_smoothing: float = 0.1
    balanced_sampler: bool = False
    ema_decay: float = 0.998  # 0 disables the weight average
    early_stopping: int = 0  # stop after this many epochs without improvement (0: never)
    monitor: str = "accuracy"  # validation metric that picks the best epoch
    embed_dim: int = 128
    hidden_dim: int = 512
    dropout: float = 0.2
    val_fraction: float = 0.1  # used only when no split file is given
    test_fraction: float = 0.2
    seed: int = 0
    threads: int = 0  # 0: all cores
    weights_dtype: str = "float32"  # float16 halves the artifact
    init: str = ""  # model folder to start from (in-domain / self-supervised pre-training)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto: a GPU when PyTorch sees one)
    max_minutes: float = 0.0  # stop after the epoch that passes this wall time (0: no limit)
    fit_to_time: bool = False  # shorten --epochs to what --max-minutes holds (timed on 3)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check_options(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassifierTrainConfig":
        return _from_dict(cls, d, AugmentConfig)


@dataclass
class DetectorTrainConfig:
    """Options of ``hemascope train detector`` (every field is a CLI flag).

    Defaults are those of the shipped smear detector: FCOS on ResNet-18 from random init,
    multi-scale training around a 320 px short side, SGD (lr 0.01, momentum 0.9, weight
    decay 1e-4, as in the leukocyte-detection study) with warm-up and cosine decay, an EMA
    of the weights, the best-on-validation mAP kept.
    """

    arch: str = "fcos_resnet18"
    min_sizes: tuple[int, ...] = (256, 288, 320, 352, 384)
    test_size: int = 320
    max_size: int = 560
    fpn_channels: int = 128
    epochs: int = 40
    batch_size: int = 4
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    clip_grad: float = 10.0
    ema_decay: float = 0.998
    val_every: int = 1
    val_fraction: float = 0.15  # used only when the data set has no val split
    vocabulary: str = "smear3"  # "" or "none": the data set's own class names
    max_side: int = 1333  # larger images are downscaled once when decoded
    seed: int = 0
    threads: int = 0
    weights_dtype: str = "float32"
    init: str = ""  # detector folder to fine-tune, or classifier folder / "default" (its encoder starts the backbone)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto: a GPU when PyTorch sees one)
    workers: int = 0  # processes that augment batches ahead (0: in the training process)
    max_minutes: float = 0.0  # stop after the epoch that passes this wall time (0: no limit)
    fit_to_time: bool = False  # shorten --epochs to what --max-minutes holds (timed on 3)
    augment: FieldAugment = field(default_factory=FieldAugment)

    def __post_init__(self) -> None:
        check_options(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectorTrainConfig":
        return _from_dict(cls, d, FieldAugment)


@dataclass
class AttributeTrainConfig:
    """Options of ``hemascope train attributes`` (every field is a CLI flag).

    The classifier's recipe, with augmentation that keeps what the attributes describe:
    crops and zoom are mild (cell size is an attribute) and hue is not jittered (cytoplasm
    and granule colour are attributes). The best epoch is the one with the highest
    validation average macro-F1 over attributes, the WBCAtt headline score.
    """

    arch: str = "resnet18"
    image_size: int = 128
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    plateau_patience: int = 3
    label_smoothing: float = 0.1
    ema_decay: float = 0.998
    dropout: float = 0.2
    val_fraction: float = 0.1  # used only when the tables carry no split
    test_fraction: float = 0.2
    seed: int = 0
    threads: int = 0
    weights_dtype: str = "float32"
    init: str = ""  # classifier or attribute model whose encoder starts this one
    segmenter: str = ""  # part-segmentation model: makes the model structure-aware
    aggregate: str = "attention"  # structure-aware only: concat|max|mean|weighted|attention
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto: a GPU when PyTorch sees one)
    max_minutes: float = 0.0  # stop after the epoch that passes this wall time (0: no limit)
    fit_to_time: bool = False  # shorten --epochs to what --max-minutes holds (timed on 3)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(
        scale=(0.85, 1.0), ratio=(0.9, 1.11), zoom=(0.95, 1.05), brightness=0.1, contrast=0.1,
        saturation=0.1, hue=0.0, degrade_p=0.2))

    def __post_init__(self) -> None:
        check_options(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AttributeTrainConfig":
        return _from_dict(cls, d, AugmentConfig)


@dataclass
class SegmentationTrainConfig:
    """Options of ``hemascope train segmentation`` (every field is a CLI flag).

    A small U-Net at 128 px from random init; cross-entropy plus soft Dice (Milletari
    2016); flips, 90-degree turns, zoom from half size (``min_scale``: other labs image
    at lower magnifications than the CellaVision training cells) to 1.15, hue turns of up to
    30 degrees and strong per-channel colour gain, contrast and saturation jitter so one
    lab's stain does not become the model's idea of a nucleus. Red cells and platelets, which
    expert masks in the CellaVision convention do not mark, are added to the training masks
    as classical pseudo-labels (``other_parts``), only on pixels the expert called other.
    """

    width: int = 16
    depth: int = 4
    image_size: int = 128
    epochs: int = 120
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    dice_weight: float = 1.0
    colour: float = 0.2  # per-channel gain / contrast / saturation jitter strength
    zoom: float = 0.15  # random zoom in or out by up to this fraction
    min_scale: float = 0.5  # > 0: scales log-uniform from this up to 1 + zoom (0: +-zoom)
    blur: float = 0.0  # half the batches blurred, Gaussian sigma up to this many px (defocus)
    hue: float = 30.0  # each image's hue turned by up to this many degrees (another stain)
    flat_pad: float = 0.0  # share of zoomed-out images with a flat margin (border colour), not mirrored
    val_fraction: float = 0.0  # 0: train on everything for the fixed number of epochs
    seed: int = 0
    threads: int = 0
    unlabelled: str = ""  # folder of unlabelled cell images: one round of self-training
    pseudo_limit: int = 400  # unlabelled images used (a seeded random choice)
    min_confidence: float = 0.9  # teacher probability below which a pixel is left unlabelled
    student_epochs: int = 0  # 0: as many optimiser steps as the teacher took
    other_parts: str = "rbc,platelet"  # classical pseudo-labels added to masks without them ('' none)
    class_weights: str = "none"  # sqrt: rare parts weigh sqrt(median share / share) in cross-entropy

    def __post_init__(self) -> None:
        check_options(self)
        from hemascope.io.masks import COARSE_PARTS

        bad = [p for p in self.other_parts_list if p not in COARSE_PARTS]
        if bad:
            raise HemascopeError(f"--other-parts takes {', '.join(COARSE_PARTS)} (comma-separated), "
                                 f"not {', '.join(bad)}")

    @property
    def other_parts_list(self) -> list[str]:
        return [p.strip().lower() for p in self.other_parts.split(",") if p.strip()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SegmentationTrainConfig":
        """A saved config; an option it predates takes the value that meant "off"
        (:data:`SEGMENTATION_BEFORE_OPTION`), not today's default: that is how it was trained."""
        return _from_dict(cls, {**SEGMENTATION_BEFORE_OPTION, **d}, dict)


#: What a segmentation config written before an option existed was trained with.
SEGMENTATION_BEFORE_OPTION = {"min_scale": 0.0, "hue": 0.0, "flat_pad": 0.0, "other_parts": "",
                              "class_weights": "none"}


def same_segmentation_recipe(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two saved segmentation configs that differ at most in threads (which do not change
    the recipe); an option either predates reads as off."""
    a, b = (SegmentationTrainConfig.from_dict(c).to_dict() for c in (a, b))
    return all(a[k] == b[k] for k in set(a) - {"threads"})


def _from_dict(cls, d: dict[str, Any], augment_cls):
    """A config from its saved dict (JSON lists back to tuples); unknown keys are an error."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    if isinstance(d.get("augment"), dict):
        d["augment"] = augment_cls(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in d["augment"].items()})
    return cls(**d)

