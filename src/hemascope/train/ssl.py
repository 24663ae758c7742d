"""Self-supervised pre-training of any registered encoder (SimCLR, Chen et al., ICML 2020).

Two augmented views of each unlabelled cell image are pulled together and pushed away from
the other images of the batch (NT-Xent loss) through a small projection head. The result
is an encoder artifact (``task: ssl-encoder``) that ``hemascope train classifier --init``
starts from. Labels, if the folders have them, are ignored.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hemascope.augment import AugmentConfig
from hemascope.classify import expand_paths
from hemascope.data.cache import load_cached
from hemascope.errors import DatasetError
from hemascope.models.artifact import save_artifact
from hemascope.models.registry import create_encoder
from hemascope.train.classifier import to_batch


@dataclass
class SslConfig:
    arch: str = "resnet18"
    image_size: int = 112
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    proj_dim: int = 128
    seed: int = 0
    threads: int = 0
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(
        scale=(0.3, 1.0), brightness=0.3, contrast=0.3, saturation=0.3, hue=0.06, degrade_p=0.4))


class SimCLR(nn.Module):
    """Encoder + 2-layer projection head; ``encoder.*`` keys match :class:`CellClassifier`."""

    def __init__(self, arch: str, *, proj_dim: int = 128, image_size: int | None = None):
        super().__init__()
        self.arch = arch
        self.encoder = create_encoder(arch, image_size=image_size)
        f = int(self.encoder.out_features)
        self.projection = nn.Sequential(nn.Linear(f, f), nn.ReLU(inplace=True), nn.Linear(f, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.encoder(x)), dim=1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy over 2B views (positives: the other view)."""
    z = torch.cat([z1, z2])
    sim = z @ z.t() / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def pretrain_ssl(paths: Sequence[str | Path], cfg: SslConfig, out_dir: str | Path, *,
                 log: Callable[[str], None] = print) -> Path:
    """SimCLR on the images under ``paths``; writes an encoder artifact to ``out_dir``."""
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    files = expand_paths(paths)
    cached = load_cached(files, cfg.image_size)
    x = cached.images
    if len(x) < 4:
        raise DatasetError(f"self-supervised training needs at least 4 readable images, got {len(x)}")
    mean = torch.tensor(x.reshape(-1, 3).mean(0) / 255, dtype=torch.float32)
    std = torch.tensor(x.reshape(-1, 3).std(0) / 255, dtype=torch.float32).clamp(min=1e-3)
    model = SimCLR(cfg.arch, proj_dim=cfg.proj_dim, image_size=cfg.image_size)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, len(x))
    steps = max(1, len(x) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / (cfg.epochs * steps), 1.0))))
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.time()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen).numpy()
        total = 0.0
        for b in range(steps):
            idx = np.sort(order[b * bs:(b + 1) * bs])
            v1 = to_batch(x[idx], mean, std, aug=cfg.augment, generator=gen)
            v2 = to_batch(x[idx], mean, std, aug=cfg.augment, generator=gen)
            loss = nt_xent(model(v1), model(v2), cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"ssl epoch {epoch + 1}/{cfg.epochs} loss {total / steps:.4f}")
    encoder_only = nn.Module()
    encoder_only.encoder = model.encoder
    config = {"task": "ssl-encoder", "arch": cfg.arch, "image_size": cfg.image_size,
              "mean": mean.tolist(), "std": std.tolist(),
              "training": {"method": "SimCLR (Chen et al. 2020)", "n_images": len(x),
                           "data": [str(p) for p in paths], "config": _plain(asdict(cfg)),
                           "wall_time_s": round(time.time() - t0, 1)}}
    return save_artifact(out_dir, encoder_only, config)


def _plain(d: dict) -> dict:
    return {k: (_plain(v) if isinstance(v, dict) else v) for k, v in d.items()}
