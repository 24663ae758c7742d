"""Detectors by name: torchvision detection models with light backbones, random init.

Every builder composes a torchvision detector (Faster R-CNN, FCOS, RetinaNet, Mask R-CNN)
from a backbone + FPN built here with **trainable batch norm and no downloaded weights**
(torchvision's own builders freeze batch norm, which only makes sense for ImageNet
weights). The data contract is torchvision's: images float ``[C, H, W]`` in 0-1; targets
``boxes`` xyxy float ``[N, 4]``, ``labels`` int64 ``[N]`` in ``1..C`` (0 is background),
``masks`` uint8 ``[N, H, W]`` for Mask R-CNN.

Options are keyword-only; ``min_size`` / ``max_size`` are the sizes the model's own
transform resizes every image to (a tuple of ``min_size`` values means multi-scale
training). Register new builders with :func:`register_detector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

_BUILDERS: dict[str, "DetectorSpec"] = {}


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector family."""

    name: str
    kind: str  # "two_stage", "one_stage" or "instance"
    build: Callable[..., nn.Module]
    description: str
    masks: bool = False


def register_detector(name: str, kind: str, description: str, *, masks: bool = False):
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"detector {name!r} is already registered")
        _BUILDERS[name] = DetectorSpec(name, kind, fn, description, masks)
        return fn
    return wrap


def detector_names() -> list[str]:
    return sorted(_BUILDERS)


def detector_spec(name: str) -> DetectorSpec:
    if name not in _BUILDERS:
        raise KeyError(f"unknown detector {name!r}; choose from {', '.join(detector_names())}")
    return _BUILDERS[name]


def build_detector(name: str, num_classes: int, *, min_size: int | Sequence[int] = 320,
                   max_size: int = 448, fpn_channels: int = 128,
                   detections_per_img: int = 300, score_thresh: float = 0.05,
                   nms_thresh: float = 0.5) -> nn.Module:
    """Build detector ``name`` for ``num_classes`` object classes (background excluded).

    Args:
        num_classes: object classes; labels run ``1..num_classes``.
        min_size, max_size: the model transform's resize (shorter / longer side).
        fpn_channels: width of the feature pyramid and the heads (a multiple of 32, >= 64).
        detections_per_img: cap on boxes per image (smears hold hundreds of cells).
        score_thresh: boxes below this confidence are dropped at inference.
        nms_thresh: IoU above which the weaker of two same-class boxes is dropped
            (red cells in thick areas overlap: a higher value keeps more of them).
    """
    if num_classes < 1:
        raise ValueError("a detector needs at least one class")
    if fpn_channels % 32 or fpn_channels < 64:
        raise ValueError("fpn_channels must be a multiple of 32, at least 64 (group norm in the heads)")
    spec = detector_spec(name)
    ms = tuple(min_size) if isinstance(min_size, (list, tuple)) else (int(min_size),)
    return spec.build(num_classes + 1, min_size=ms, max_size=int(max_size),
                      fpn_channels=fpn_channels, detections_per_img=detections_per_img,
                      score_thresh=score_thresh, nms_thresh=nms_thresh)


def _resnet_fpn(depth: int, out_channels: int, *, p6p7: bool) -> nn.Module:
    """ResNet-``depth`` (random init, trainable BN) + FPN on C3-C5 (strides 8, 16, 32)."""
    from torchvision.models import resnet18, resnet34, resnet50
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    net = {18: resnet18, 34: resnet34, 50: resnet50}[depth](weights=None, norm_layer=nn.BatchNorm2d)
    c = 128 if depth < 50 else 512
    extra = LastLevelP6P7(out_channels, out_channels) if p6p7 else LastLevelMaxPool()
    return BackboneWithFPN(net, {"layer2": "0", "layer3": "1", "layer4": "2"},
                           [c, c * 2, c * 4], out_channels, extra_blocks=extra)


def _common(kw: dict) -> dict:
    # Trainable batch norm follows the first convolution, so inputs need no fixed (ImageNet)
    # statistics: the model transform only resizes.
    return {"min_size": kw["min_size"], "max_size": kw["max_size"],
            "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]}


@register_detector("fcos_resnet18", "one_stage",
                   "FCOS (anchor-free, Tian 2019) on ResNet-18 + FPN P3-P7, light 2-conv heads")
def _fcos_resnet18(num_classes: int, **kw) -> nn.Module:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    ch = kw["fpn_channels"]
    backbone = _resnet_fpn(18, ch, p6p7=True)
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
    head = FCOSHead(ch, 1, num_classes, num_convs=2)
    return FCOS(backbone, num_classes, anchor_generator=anchors, head=head,
                detections_per_img=kw["detections_per_img"], score_thresh=kw["score_thresh"],
                nms_thresh=kw["nms_thresh"], topk_candidates=1000, **_common(kw))


@register_detector("retinanet_resnet18", "one_stage",
                   "RetinaNet (focal loss, Lin 2017) on ResNet-18 + FPN P3-P7")
def _retinanet_resnet18(num_classes: int, **kw) -> nn.Module:
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetHead

    ch = kw["fpn_channels"]
    backbone = _resnet_fpn(18, ch, p6p7=True)
    sizes = tuple((s, int(s * 1.26), int(s * 1.59)) for s in (16, 32, 64, 128, 256))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    head = RetinaNetHead(ch, anchors.num_anchors_per_location()[0], num_classes,
                         norm_layer=lambda c: nn.GroupNorm(16, c))
    return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head,
                     detections_per_img=kw["detections_per_img"], score_thresh=kw["score_thresh"],
                     nms_thresh=kw["nms_thresh"], **_common(kw))


def _rcnn_parts(ch: int):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    # Four pyramid levels (P2 is not built: cells are >= 8 px at the working scale).
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    pooler = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(ch * 7 * 7, 256)
    return anchors, pooler, box_head


@register_detector("fasterrcnn_resnet18", "two_stage",
                   "Faster R-CNN (Ren 2015) on ResNet-18 + FPN, 256-unit box head")
def _fasterrcnn_resnet18(num_classes: int, **kw) -> nn.Module:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    ch = kw["fpn_channels"]
    anchors, pooler, box_head = _rcnn_parts(ch)
    return FasterRCNN(_resnet_fpn(18, ch, p6p7=False), None, rpn_anchor_generator=anchors,
                      box_roi_pool=pooler, box_head=box_head,
                      box_predictor=FastRCNNPredictor(256, num_classes),
                      box_detections_per_img=kw["detections_per_img"],
                      box_score_thresh=kw["score_thresh"], box_nms_thresh=kw["nms_thresh"],
                      box_batch_size_per_image=256,
                      rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=500, **_common(kw))


@register_detector("maskrcnn_resnet18", "instance",
                   "Mask R-CNN (He 2017) on ResNet-18 + FPN: boxes and instance masks", masks=True)
def _maskrcnn_resnet18(num_classes: int, **kw) -> nn.Module:
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    ch = kw["fpn_channels"]
    anchors, pooler, box_head = _rcnn_parts(ch)
    mask_pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=14, sampling_ratio=2)
    return MaskRCNN(_resnet_fpn(18, ch, p6p7=False), None, rpn_anchor_generator=anchors,
                    box_roi_pool=pooler, box_head=box_head,
                    box_predictor=FastRCNNPredictor(256, num_classes),
                    mask_roi_pool=mask_pool, mask_head=MaskRCNNHeads(ch, (ch,) * 4, 1),
                    mask_predictor=MaskRCNNPredictor(ch, ch, num_classes),
                    box_detections_per_img=kw["detections_per_img"],
                    box_score_thresh=kw["score_thresh"], box_nms_thresh=kw["nms_thresh"],
                    rpn_post_nms_top_n_test=500,
                    **_common(kw))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def set_min_size(model: nn.Module, min_size: int | Sequence[int], max_size: int) -> None:
    """Change the resize of a built model's transform (e.g. single scale for inference)."""
    t = model.transform
    t.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (int(min_size),)
    t.max_size = int(max_size)


def set_nms(model: nn.Module, iou: float) -> None:
    """Change a built model's NMS IoU threshold (one-stage and R-CNN families)."""
    if hasattr(model, "roi_heads"):
        model.roi_heads.nms_thresh = float(iou)
    else:
        model.nms_thresh = float(iou)


def as_float_image(img) -> torch.Tensor:
    """uint8 ``H x W x 3`` numpy -> float ``3 x H x W`` in 0-1 (the torchvision contract)."""
    import numpy as np

    return torch.from_numpy(np.require(img, np.uint8, "CW")).permute(2, 0, 1).float().div_(255.0)
