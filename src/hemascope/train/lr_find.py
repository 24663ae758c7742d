"""Learning-rate range test (Smith, WACV 2017): raise the rate exponentially, watch the loss.

The bone-marrow study picks its starting learning rate this way. The suggestion is a
tenth of the rate where the smoothed loss is lowest (fastai's "minimum" rule): the
steepest-slope reading is too sensitive to noise on short CPU runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hemascope.data.samples import ClassificationSet
from hemascope.data.splits import SplitFile
from hemascope.train.classifier import build_model, make_optimizer, prepare_data, to_batch
from hemascope.train.config import ClassifierTrainConfig


@dataclass(frozen=True)
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # exponentially smoothed
    suggestion: float

    def to_dict(self) -> dict:
        return {"suggested_lr": self.suggestion, "lrs": self.lrs, "losses": self.losses}


def suggest_lr(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the rate at the lowest smoothed loss; pure."""
    if not len(lrs):
        return float("nan")
    return float(lrs[int(np.argmin(losses))] / 10)


def lr_range_test(ds: ClassificationSet, cfg: ClassifierTrainConfig, *, start_lr: float = 1e-6,
                  end_lr: float = 1.0, steps: int = 100, diverge: float = 4.0,
                  log=lambda s: None) -> LrFindResult:
    """Train ``steps`` batches with an exponentially growing rate from a fresh model."""
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    every = SplitFile({s.path: "train" for s in ds.samples}, "all-train", cfg.seed, {}, str(ds.root))
    td = prepare_data(ds, cfg, every, log=log, need_val=False)  # the test trains on every image
    x, y = td.data["train"]
    model = build_model(cfg, len(td.classes)).train()
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    mult = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    for step in range(steps):
        lr = start_lr * mult**step
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(y), (cfg.batch_size,), generator=gen).numpy()
        loss = F.cross_entropy(model(to_batch(x[idx], td.mean, td.std, aug=cfg.augment, generator=gen)),
                               torch.from_numpy(y[idx]), label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        avg = 0.9 * avg + 0.1 * loss.item()
        smooth = avg / (1 - 0.9 ** (step + 1))
        lrs.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or smooth > diverge * best:
            log(f"stopped at lr {lr:.2e}: loss diverged")
            break
    return LrFindResult(lrs, losses, suggest_lr(np.array(lrs), np.array(losses)))
