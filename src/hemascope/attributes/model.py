"""Attribute recognition: one encoder, one linear head per morphology attribute.

The WBCAtt baseline (Tsutsui et al., NeurIPS 2023): a shared image encoder whose pooled
features feed an independent classifier per attribute, trained with the mean of the
per-attribute cross-entropies. The heads' logits are concatenated into one ``(B, sum of
value counts)`` tensor so the model has the same contract as the cell classifier
(``encoder`` -> ``embedding`` -> ``head``): Grad-CAM and export work unchanged, and
:meth:`AttributeModel.split` cuts the tensor back into one block per attribute.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from hemascope.models.registry import create_encoder


class AttributeHeads(nn.Module):
    """One ``Linear(features, n values)`` per attribute; outputs concatenated in order."""

    def __init__(self, in_features: int, sizes: Mapping[str, int]):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(in_features, n) for name, n in sizes.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([h(x) for h in self.heads.values()], dim=1)


class AttributeModel(nn.Module):
    """Encoder + dropout + per-attribute heads.

    Args:
        arch: registered encoder name (``hemascope.models.list_encoders()``).
        attributes: attribute name -> its values, in the order of the logits.
        dropout: dropout on the pooled features.
        image_size: input size (ViTs need it).
    """

    def __init__(self, arch: str, attributes: Mapping[str, Sequence[str]], *, dropout: float = 0.2,
                 image_size: int | None = None, **encoder_kwargs: Any):
        super().__init__()
        if not attributes or any(len(v) < 2 for v in attributes.values()):
            raise ValueError("every attribute needs at least two values")
        self.arch = arch
        self.attributes = {k: tuple(v) for k, v in attributes.items()}
        self.encoder = create_encoder(arch, image_size=image_size, **encoder_kwargs)
        self.embedding = nn.Dropout(dropout)
        self.head = AttributeHeads(int(self.encoder.out_features),
                                   {k: len(v) for k, v in self.attributes.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated logits ``(B, sum of value counts)``."""
        return self.head(self.embedding(self.encoder(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features ``(B, F)`` (for retrieval and plots)."""
        return self.encoder(x)

    @property
    def slices(self) -> dict[str, slice]:
        """Where each attribute's logits lie in the concatenated output."""
        out, start = {}, 0
        for name, values in self.attributes.items():
            out[name] = slice(start, start + len(values))
            start += len(values)
        return out

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Concatenated logits -> ``{attribute: (B, n values)}``."""
        return {name: logits[:, s] for name, s in self.slices.items()}


def attribute_loss(model: AttributeModel, logits: torch.Tensor, targets: torch.Tensor, *,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over attributes of the cross-entropy; ``targets`` is ``(B, n attributes)`` value
    indices, -1 where an attribute is unknown (ignored)."""
    import torch.nn.functional as F

    losses = [F.cross_entropy(block, targets[:, j], ignore_index=-1,
                              label_smoothing=label_smoothing)
              for j, block in enumerate(model.split(logits).values())
              if bool((targets[:, j] >= 0).any())]
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


#: the image regions a structure-aware model looks at, from the part masks it is given
PART_VIEWS = ("cell", "nucleus", "cytoplasm")
AGGREGATIONS = ("concat", "max", "mean", "weighted", "attention")


class PartAwareAttributeModel(nn.Module):
    """Cell-structure-aware attribute model (after Tsutsui et al.'s WBCAtt+ part masks).

    The input carries the image and its part masks: ``(B, 3 + 2, H, W)``, channels 3 and 4
    being the nucleus and cytoplasm probabilities (from the part-segmentation model). The
    normalised image masked by each view of :data:`PART_VIEWS` (whole cell = nucleus +
    cytoplasm) passes through one shared encoder; the view features are aggregated by
    ``aggregate`` (concatenation, max, mean, a learned weighted mean, or attention) and
    feed the per-attribute heads.
    """

    def __init__(self, arch: str, attributes: Mapping[str, Sequence[str]], *,
                 aggregate: str = "attention", dropout: float = 0.2, image_size: int | None = None,
                 **encoder_kwargs: Any):
        super().__init__()
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATIONS)}")
        if not attributes or any(len(v) < 2 for v in attributes.values()):
            raise ValueError("every attribute needs at least two values")
        self.arch, self.aggregate = arch, aggregate
        self.attributes = {k: tuple(v) for k, v in attributes.items()}
        self.encoder = create_encoder(arch, image_size=image_size, **encoder_kwargs)
        feats = int(self.encoder.out_features)
        n = len(PART_VIEWS)
        if aggregate == "weighted":
            self.view_logits = nn.Parameter(torch.zeros(n))
        if aggregate == "attention":
            self.attention = nn.Sequential(nn.Linear(feats, 64), nn.Tanh(), nn.Linear(64, 1))
        self.embedding = nn.Dropout(dropout)
        self.head = AttributeHeads(feats * n if aggregate == "concat" else feats,
                                   {k: len(v) for k, v in self.attributes.items()})

    slices = AttributeModel.slices
    split = AttributeModel.split

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """Per-view encoder features ``(B, n views, F)``."""
        if x.shape[1] != 5:
            raise ValueError(f"expected image + nucleus + cytoplasm channels (5), got {x.shape[1]}")
        img, nucleus, cyto = x[:, :3], x[:, 3:4], x[:, 4:5]
        masks = {"cell": (nucleus + cyto).clamp(max=1), "nucleus": nucleus, "cytoplasm": cyto}
        b = len(x)
        batch = torch.cat([img * masks[v] for v in PART_VIEWS])  # one encoder pass for all views
        return self.encoder(batch).view(len(PART_VIEWS), b, -1).transpose(0, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        f = self.views(x)
        if self.aggregate == "concat":
            return f.flatten(1)
        if self.aggregate == "max":
            return f.max(1).values
        if self.aggregate == "mean":
            return f.mean(1)
        if self.aggregate == "weighted":
            return (f * self.view_logits.softmax(0).view(1, -1, 1)).sum(1)
        w = self.attention(f).softmax(1)  # (B, n views, 1)
        return (f * w).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(self.embed(x)))
