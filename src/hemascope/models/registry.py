"""One registry of image encoders, by name (timm's pattern: a decorator and a factory).

Every entry builds an encoder with random weights (nothing is ever downloaded) that maps
``(B, 3, H, W)`` float images to ``(B, F)`` features and reports ``F`` as
``out_features``. :func:`create_classifier` puts the cross-lab head on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn


@dataclass(frozen=True)
class EncoderSpec:
    """What the registry knows about an encoder.

    Attributes:
        name: registry key.
        builder: ``builder(**kwargs) -> nn.Module`` with ``out_features``.
        family: ``cnn`` or ``vit`` (Grad-CAM needs a CNN).
        default_size: input size the architecture was designed for.
        description: one line for ``hemascope models``.
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str
    default_size: int
    description: str


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(name: str, *, family: str = "cnn", default_size: int = 224,
                     description: str = "") -> Callable:
    """Decorator adding an encoder builder under ``name``; duplicates raise."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = EncoderSpec(name, fn, family, default_size, description or fn.__doc__ or "")
        return fn

    return wrap


def list_encoders() -> list[str]:
    return sorted(_REGISTRY)


def encoder_spec(name: str) -> EncoderSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        from hemascope.errors import HemascopeError

        raise HemascopeError(f"unknown architecture {name!r}; choose from "
                             f"{', '.join(list_encoders())}") from None


def create_encoder(name: str, *, image_size: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered encoder with random weights.

    Args:
        name: registry key (``hemascope.models.list_encoders()``).
        image_size: input size, needed by ViTs (``None``: the architecture's default).
    """
    spec = encoder_spec(name)
    if spec.family == "vit":
        kwargs["img_size"] = image_size or spec.default_size
    return spec.builder(**kwargs)


def _timm(arch: str, **kwargs: Any) -> nn.Module:
    import timm

    # pretrained=False always: hemascope never downloads weights
    model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    # MobileNetV3 & co. pool into a wider head than num_features says
    model.out_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model


def _register_timm(name: str, arch: str, family: str, size: int, description: str) -> None:
    register_encoder(name, family=family, default_size=size, description=description)(
        lambda arch=arch, **kw: _timm(arch, **kw))


for _name, _arch, _family, _size, _desc in [
    ("resnet18", "resnet18", "cnn", 224, "ResNet-18 (He et al. 2016), 11.2M parameters"),
    ("resnet34", "resnet34", "cnn", 224, "ResNet-34"),
    ("resnet50", "resnet50", "cnn", 224, "ResNet-50"),
    ("resnet152", "resnet152", "cnn", 224, "ResNet-152 (bone-marrow study)"),
    ("resnet10t", "resnet10t", "cnn", 176, "ResNet-10-T, a light deep-stem ResNet"),
    ("resnext50_32x4d", "resnext50_32x4d", "cnn", 224, "ResNeXt-50 (bone-marrow baseline)"),
    ("efficientnet_b0", "efficientnet_b0", "cnn", 224, "EfficientNet-B0 (cross-lab study)"),
    ("regnety_004", "regnety_004", "cnn", 224, "RegNetY-400MF"),
    ("regnety_016", "regnety_016", "cnn", 224, "RegNetY-1.6GF"),
    ("regnety_032", "regnety_032", "cnn", 224, "RegNetY-3.2GF (bone-marrow study: -32GF)"),
    ("vgg19_bn", "vgg19_bn", "cnn", 224, "VGG-19 with batch norm (bone-marrow study)"),
    ("densenet121", "densenet121", "cnn", 224, "DenseNet-121 (best published on PBC)"),
    ("convnext_atto", "convnext_atto", "cnn", 224, "ConvNeXt-Atto, 3.4M parameters"),
    ("convnext_tiny", "convnext_tiny", "cnn", 224, "ConvNeXt-T (WBCAtt baseline)"),
    ("mobilenetv3_large_100", "mobilenetv3_large_100", "cnn", 224, "MobileNetV3-Large"),
    ("inception_v3", "inception_v3", "cnn", 299, "Inception-v3 (smear study)"),
    ("xception41", "xception41", "cnn", 299, "Xception-41 (smear study: Xception)"),
    ("vit_tiny_patch16", "vit_tiny_patch16_224", "vit", 224, "ViT-Ti/16"),
    ("vit_small_patch16", "vit_small_patch16_224", "vit", 224, "ViT-S/16"),
    ("vit_large_patch32", "vit_large_patch32_224", "vit", 224, "ViT-L/32 (bone-marrow study)"),
]:
    _register_timm(_name, _arch, _family, _size, _desc)


@register_encoder("tinycnn", default_size=64, description="4-block CNN for tests and smoke runs")
def tinycnn(width: int = 16, **_: Any) -> nn.Module:
    """A four-block CNN small enough to train in seconds (tests, demos)."""
    layers: list[nn.Module] = []
    c_in = 3
    for i in range(4):
        c_out = width * 2**i
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2) if i < 3 else nn.Identity()]
        c_in = c_out
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.out_features = c_in
    return net
