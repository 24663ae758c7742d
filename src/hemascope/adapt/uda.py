"""Unsupervised domain adaptation: DANN (Ganin & Lempitsky, ICML 2015), MMD alignment and
AdaBN (batch-norm statistics of the target; :mod:`hemascope.adapt.batchnorm`).

A labelled source set and an *unlabelled* target set share an encoder and embedding. The
label head learns from source labels only; the domain term makes target embeddings look
like source ones: DANN through a domain classifier behind a gradient-reversal layer
(scheduled lambda = 2 / (1 + exp(-10 p)) - 1), MMD by minimising the multi-kernel maximum
mean discrepancy (Long et al. 2015) between the two batches of embeddings. Training is
restricted to the classes both sides share. Target labels, when the target folder has
them, are used only to report accuracy before and after. AdaBN needs no source set and
no training: one pass over the target images.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hemascope.adapt.fewshot import TargetData
from hemascope.augment import AugmentConfig
from hemascope.errors import DatasetError, HemascopeError
from hemascope.evaluate.classification import ClassificationReport, classification_report
from hemascope.models.artifact import LoadedModel, save_artifact
from hemascope.train.classifier import predict_probs, to_batch

METHODS = ("dann", "mmd")
ADAPTATION_NAMES = {"dann": "DANN", "mmd": "MMD", "bn": "AdaBN", "shot": "SHOT"}


@dataclass
class UdaConfig:
    method: str = "dann"
    epochs: int = 10
    steps_per_epoch: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    domain_weight: float = 1.0  # max lambda (DANN) or MMD weight
    seed: int = 0
    threads: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        from hemascope.train.config import check_options

        check_options(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UdaResult:
    model: nn.Module
    classes: list[str]
    before: ClassificationReport | None
    after: ClassificationReport | None
    history: list[dict]
    seconds: float


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward, gradient multiplied by ``-lam`` backward (the DANN trick)."""
    return _ReverseGrad.apply(x, lam)


def dann_lambda(progress: float, *, gamma: float = 10.0) -> float:
    """Ganin's schedule: 0 at the start, -> 1 at the end of training."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def mmd2(a: torch.Tensor, b: torch.Tensor, *, scales=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """Biased multi-kernel MMD^2 with Gaussian kernels around the median distance."""
    x = torch.cat([a, b])
    d = torch.cdist(x, x).pow(2)
    med = d.detach()[d.detach() > 0].median() if (d > 0).any() else torch.tensor(1.0)
    k = sum(torch.exp(-d / (2 * s * med)) for s in scales)
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def shared_classes(source: TargetData, target: TargetData | None) -> list[str]:
    if target is None or not len(target.labels):
        return list(source.classes)
    shared = [c for c in source.classes if c in target.classes]
    if not shared:
        raise DatasetError(f"source classes {source.classes} and target classes "
                           f"{target.classes} share none")
    return shared


def adapt_unsupervised(source: TargetData, target: TargetData, base: LoadedModel, cfg: UdaConfig, *,
                       target_labelled: bool = True, log: Callable[[str], None] = lambda s: None
                       ) -> UdaResult:
    """Adapt ``base`` from labelled ``source`` to ``target`` (its labels are never trained on)."""
    if cfg.method not in METHODS:
        raise HemascopeError(f"unknown adaptation method {cfg.method!r}; choose from {METHODS}")
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    classes = shared_classes(source, target if target_labelled else None)
    s_keep = np.array([source.classes[i] in classes for i in source.labels])
    xs = source.images[s_keep]
    ys = np.array([classes.index(source.classes[i]) for i in source.labels[s_keep]], np.int64)
    xt = target.images
    if len(ys) < 2 or len(xt) < 2:
        raise DatasetError(f"need at least 2 source and 2 target images (got {len(ys)}, {len(xt)})")
    mean, std = base.normalisation
    model = restricted_model(base, classes)
    t_eval = target_eval(target, classes) if target_labelled else None
    before = score_target(model, t_eval, mean, std, classes)
    domain = nn.Sequential(nn.Linear(model.embed_dim, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
    params = [*model.parameters(), *domain.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    total = cfg.epochs * cfg.steps_per_epoch
    bs = min(cfg.batch_size, len(ys), len(xt))
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        domain.train()
        sums = {"class": 0.0, "domain": 0.0}
        for step in range(cfg.steps_per_epoch):
            p = (epoch * cfg.steps_per_epoch + step) / max(total - 1, 1)
            si = torch.randint(0, len(ys), (bs,), generator=gen).numpy()
            ti = torch.randint(0, len(xt), (bs,), generator=gen).numpy()
            es = model.embed(to_batch(xs[si], mean, std, aug=cfg.augment, generator=gen))
            et = model.embed(to_batch(xt[ti], mean, std, aug=cfg.augment, generator=gen))
            cls_loss = F.cross_entropy(model.forward_head(es), torch.from_numpy(ys[si]))
            if cfg.method == "dann":
                lam = cfg.domain_weight * dann_lambda(p)
                logits = domain(grad_reverse(torch.cat([es, et]), lam)).squeeze(1)
                dom_target = torch.cat([torch.zeros(bs), torch.ones(bs)])
                dom_loss = F.binary_cross_entropy_with_logits(logits, dom_target)
                loss = cls_loss + dom_loss
            else:
                dom_loss = mmd2(es, et)
                loss = cls_loss + cfg.domain_weight * dann_lambda(p) * dom_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["class"] += cls_loss.item()
            sums["domain"] += dom_loss.item()
        row = {"epoch": epoch + 1, **{k: v / cfg.steps_per_epoch for k, v in sums.items()}}
        if t_eval is not None:
            row["target_accuracy"] = score_target(model, t_eval, mean, std, classes).accuracy
        history.append(row)
        log(f"{cfg.method} epoch {epoch + 1}/{cfg.epochs} class {row['class']:.4f} domain "
            f"{row['domain']:.4f}" + (f" target acc {row['target_accuracy']:.4f}" if t_eval else ""))
    after = score_target(model, t_eval, mean, std, classes)
    return UdaResult(model.eval(), classes, before, after, history, time.time() - t0)


def adapt_batchnorm(target: TargetData, base: LoadedModel, *, target_labelled: bool = True,
                    log: Callable[[str], None] = lambda s: None) -> UdaResult:
    """AdaBN: ``base`` with its encoder's batch-norm statistics re-estimated on ``target``.

    With a labelled target the model keeps the classes the target has (labels are used only
    to score before and after); otherwise all of the base model's classes.

    Raises:
        DatasetError: fewer than 2 target images.
        HemascopeError: the base model's encoder has no batch norm (e.g. a ViT).
    """
    from hemascope.adapt.batchnorm import reestimate_batchnorm

    t0 = time.time()
    if len(target.images) < 2:
        raise DatasetError(f"need at least 2 target images (got {len(target.images)})")
    classes = list(base.classes)
    if target_labelled and len(target.labels):
        classes = [c for c in base.classes if c in target.classes]
    mean, std = base.normalisation
    model = restricted_model(base, classes)
    t_eval = target_eval(target, classes) if target_labelled else None
    before = score_target(model, t_eval, mean, std, classes)
    n = reestimate_batchnorm(model, target.images, mean, std)
    if n == 0:
        raise HemascopeError(f"{base.path} ({base.config.get('arch')}) has no batch-norm layers "
                             "in its encoder: AdaBN cannot adapt it; use dann, mmd or fewshot")
    log(f"re-estimated {n} batch-norm layers on {len(target.images)} target images")
    after = score_target(model, t_eval, mean, std, classes)
    history = [{"batchnorm_layers": n, "target_images": len(target.images)}]
    return UdaResult(model.eval(), classes, before, after, history, time.time() - t0)


def save_adapted(result: UdaResult, base: LoadedModel, cfg: UdaConfig, out_dir: str | Path, *,
                 source: str | None, target: str, extra: dict | None = None) -> Path:
    """Write the adapted model with its lineage (``extra``: more keys of ``training``)."""
    settings = None if cfg.method == "bn" else cfg.to_dict()  # AdaBN has none
    config = {**{k: v for k, v in base.config.items()
                     if k not in ("weights_sha256", "format", "views")},
              "classes": result.classes,
              "training": {"base": str(base.path),
                           "adaptation": ADAPTATION_NAMES.get(cfg.method, cfg.method),
                           "source": source, "target": target, "config": settings,
                           "history": result.history, "wall_time_s": round(result.seconds, 1),
                           **(extra or {})},
              "metrics": {"target_before": result.before.to_dict() if result.before else None,
                          "target_after": result.after.to_dict() if result.after else None}}
    return save_artifact(out_dir, result.model, config)


def restricted_model(base: LoadedModel, classes: list[str]) -> nn.Module:
    """A copy of ``base``'s network that outputs ``classes`` only (trained rows kept)."""
    from hemascope.models.artifact import require_pytorch

    require_pytorch(base, "adaptation")
    model = copy.deepcopy(base.model)
    model.restrict_classes([base.classes.index(c) for c in classes])
    return model


def target_eval(target: TargetData, classes: list[str]):
    """The labelled target images of ``classes`` and their labels as indices into it."""
    keep = np.array([target.classes[i] in classes for i in target.labels])
    y = np.array([classes.index(target.classes[i]) for i in target.labels[keep]], np.int64)
    return target.images[keep], y


def score_target(model, data, mean, std, classes) -> ClassificationReport | None:
    """Report of ``model`` on ``data`` from :func:`target_eval`; None without labels."""
    if data is None or not len(data[1]):
        return None
    x, y = data
    return classification_report(y, predict_probs(model, x, mean, std).argmax(1), classes,
                                 n_bootstrap=200)


def load_unlabelled(paths, base: LoadedModel) -> TargetData:
    """Images of folders/files without labels (for the target side), at ``base``'s input size.

    A folder with a label table (``labels.csv``, as CellaVision's) gives the cells the table
    lists, so that masks or other images beside them are not taken for cells; the labels
    are not read. Other folders are searched for images; files are taken as given.

    Raises:
        DatasetError: a path that does not exist, or no image at all.
    """
    from hemascope.classify import expand_paths
    from hemascope.data import detect_format, load_dataset
    from hemascope.data.cache import load_cached

    files: list[Path] = []
    for p in map(Path, paths if isinstance(paths, (list, tuple)) else [paths]):
        if p.is_dir() and detect_format(p) == "csv":
            ds = load_dataset(p)
            files += [ds.root / s.path for s in ds.samples]
        else:
            files += expand_paths([p])
    cached = load_cached(files, int(base.config["image_size"]))
    keys = [str(files[i]) for i in cached.index]
    return TargetData([], cached.images, np.zeros(0, np.int64), keys, cached.errors)
