"""The single-cell classifier: any registered encoder + the cross-lab embedding head.

Encoder -> 128-unit embedding -> Linear(128, 512) -> BatchNorm -> ReLU -> Dropout ->
Linear(512, n classes), as in Chossegros et al. (J Pathol Inform 2024). The 128-d
embedding is what plots, retrieval and domain adaptation use (:meth:`embed`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from hemascope.models.registry import create_encoder


class CellClassifier(nn.Module):
    """Encoder + embedding + classification head.

    Args:
        arch: registered encoder name.
        num_classes: output classes.
        embed_dim: size of the embedding (128 in the cross-lab study).
        hidden_dim: width of the hidden head layer (512).
        dropout: dropout before the last layer.
        image_size: input size (ViTs need it).
    """

    def __init__(self, arch: str, num_classes: int, *, embed_dim: int = 128,
                 hidden_dim: int = 512, dropout: float = 0.2, image_size: int | None = None,
                 **encoder_kwargs: Any):
        super().__init__()
        self.arch = arch
        self.encoder = create_encoder(arch, image_size=image_size, **encoder_kwargs)
        feats = int(self.encoder.out_features)
        self.embedding = nn.Sequential(nn.Linear(feats, embed_dim), nn.BatchNorm1d(embed_dim),
                                       nn.ReLU(inplace=True))
        self.embed_dim, self.hidden_dim, self.dropout = embed_dim, hidden_dim, dropout
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(self.embed_dim, self.hidden_dim),
                             nn.BatchNorm1d(self.hidden_dim), nn.ReLU(inplace=True),
                             nn.Dropout(self.dropout), nn.Linear(self.hidden_dim, num_classes))

    @property
    def num_classes(self) -> int:
        return int(self.head[-1].out_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features ``(B, F)``."""
        return self.encoder(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d embedding ``(B, embed_dim)``."""
        return self.embedding(self.encoder(x))

    def forward_head(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(self.encoder(x)))

    def reset_classifier(self, num_classes: int) -> None:
        """New randomly initialised head for ``num_classes`` (keeps encoder and embedding)."""
        self.head = self._make_head(num_classes)

    @torch.no_grad()
    def restrict_classes(self, indices: list[int]) -> None:
        """Keep only the given output classes, with their trained weights (in that order)."""
        last = self.head[-1]
        new = nn.Linear(last.in_features, len(indices))
        new.weight.copy_(last.weight[indices])
        new.bias.copy_(last.bias[indices])
        self.head[-1] = new

    @torch.no_grad()
    def add_classes(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Append output classes: rows ``weight`` ``(n, hidden_dim)`` and ``bias`` ``(n,)``
        after the trained ones."""
        last = self.head[-1]
        if weight.ndim != 2 or weight.shape[1] != last.in_features or bias.shape != weight.shape[:1]:
            raise ValueError(f"new rows must be ({last.in_features},) each, with one bias per row")
        new = nn.Linear(last.in_features, last.out_features + len(weight))
        new.weight.copy_(torch.cat([last.weight, weight.to(last.weight)]))
        new.bias.copy_(torch.cat([last.bias, bias.to(last.bias)]))
        self.head[-1] = new

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.embedding.parameters(), *self.head.parameters()]
