"""Attribute transfer to another lab: the attribute model's features aligned on that lab's
unlabelled cells (WBCAtt attributes carried to other stains and scanners, MISSION section 5).

Three ways, as for classifiers (:mod:`hemascope.adapt.uda`):

- ``mmd``: each step takes a batch of annotated source cells (the WBCAtt tables the model
  learned from) and a batch of the lab's cells; the loss is the attribute model's own (mean
  cross-entropy over the heads) on the source batch plus ``domain_weight * lambda(p) *
  MMD^2`` between the two batches' pooled encoder features (Long et al. 2015), lambda
  rising from 0 to 1 on Ganin's schedule.
- ``dann``: the same with a domain classifier behind a gradient-reversal layer instead of
  the MMD term (Ganin & Lempitsky 2015).
- ``bn``: the encoder's batch-norm statistics re-estimated on the lab's cells (AdaBN): no
  source, no training.

The lab's cells carry no attribute labels, and none are needed: nothing of the target but
its pixels is used. ``benchmarks/attributes_transfer.py`` measures the effect through the
concept bottleneck (the cell type read from the adapted attributes) on a labelled lab.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hemascope.adapt.uda import UdaConfig, dann_lambda, grad_reverse, mmd2
from hemascope.errors import DatasetError, HemascopeError
from hemascope.models.artifact import LoadedModel, save_artifact

METHODS = ("mmd", "dann", "bn")


def attribute_uda_config(**kw) -> UdaConfig:
    """The adaptation settings for attribute models: the attribute trainer's augmentation
    (mild crops, no hue jitter: size and colour are attributes) and a short schedule
    (5 epochs of 30 steps, 16 + 16 cells a step) that runs in minutes on 2 CPU cores."""
    from hemascope.train.config import AttributeTrainConfig

    base = {"epochs": 5, "steps_per_epoch": 30, "batch_size": 16, "method": "mmd",
            "augment": AttributeTrainConfig().augment}
    return UdaConfig(**{**base, **kw})


@dataclass
class AttributeAdaptation:
    model: nn.Module
    method: str
    history: list[dict]
    seconds: float
    n_source: int
    n_target: int


def adapt_attributes(base: LoadedModel, target: np.ndarray, cfg: UdaConfig, *,
                     source: np.ndarray | None = None, source_targets: np.ndarray | None = None,
                     log: Callable[[str], None] = lambda s: None) -> AttributeAdaptation:
    """Adapt an attribute model to a lab's cells.

    Args:
        base: a plain attribute model (:func:`hemascope.attributes.load_attribute_model`).
        target: the lab's cells, uint8 ``(N, S, S, 3)`` at the model's input size.
        cfg: ``cfg.method`` is ``mmd``, ``dann`` or ``bn``; see :func:`attribute_uda_config`.
        source, source_targets: annotated cells at the same size and their value indices
            ``(N, n attributes)`` (-1: unknown), for ``mmd`` and ``dann``.

    Raises:
        HemascopeError: an unknown method, or a structure-aware model (it reads part masks
            of its own; adapt the plain model).
        DatasetError: fewer than 2 target cells, or no annotated source for mmd / dann.
    """
    if cfg.method not in METHODS:
        raise HemascopeError(f"unknown method {cfg.method!r} for attribute models; choose from "
                             f"{', '.join(METHODS)}")
    if getattr(base.model, "segmenter", None) is not None:
        raise HemascopeError(f"{base.path} is a structure-aware attribute model (it reads part "
                             "masks); adaptation works on plain attribute models")
    if len(target) < 2:
        raise DatasetError(f"need at least 2 readable target cells (got {len(target)})")
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    model = copy.deepcopy(base.model)
    mean, std = (torch.tensor(base.config["mean"], dtype=torch.float32),
                 torch.tensor(base.config["std"], dtype=torch.float32))
    if cfg.method == "bn":
        from hemascope.adapt.batchnorm import reestimate_batchnorm

        n = reestimate_batchnorm(model, target, mean, std)
        if n == 0:
            raise HemascopeError(f"{base.path} ({base.config.get('arch')}) has no batch-norm "
                                 "layers in its encoder: use mmd or dann")
        log(f"re-estimated {n} batch-norm layers on {len(target)} target cells")
        return AttributeAdaptation(model.eval(), "bn", [{"batchnorm_layers": n}],
                                   time.time() - t0, 0, len(target))
    if source is None or source_targets is None or len(source) < 2:
        raise DatasetError(f"{cfg.method} needs annotated source cells (a WBCAtt table and its "
                           "images); got none")
    if len(source) != len(source_targets):
        raise ValueError(f"{len(source)} source cells but {len(source_targets)} target rows")
    return _align(model, target, source, source_targets, mean, std, cfg, log, t0)


def _align(model, target, source, ys, mean, std, cfg: UdaConfig, log, t0) -> AttributeAdaptation:
    from hemascope.attributes.model import attribute_loss
    from hemascope.train.classifier import to_batch

    params = [*model.parameters()]
    if cfg.method == "dann":
        domain = nn.Sequential(nn.Linear(int(model.encoder.out_features), 64),
                               nn.ReLU(inplace=True), nn.Linear(64, 1))
        params += [*domain.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    bs = min(cfg.batch_size, len(source), len(target))
    total, history = cfg.epochs * cfg.steps_per_epoch, []
    labels = torch.from_numpy(np.asarray(ys, np.int64))
    for epoch in range(cfg.epochs):
        model.train()
        sums = {"attributes": 0.0, "domain": 0.0}
        for step in range(cfg.steps_per_epoch):
            lam = cfg.domain_weight * dann_lambda((epoch * cfg.steps_per_epoch + step)
                                                  / max(total - 1, 1))
            si = torch.randint(0, len(source), (bs,), generator=gen)
            ti = torch.randint(0, len(target), (bs,), generator=gen).numpy()
            fs = model.encoder(to_batch(source[si.numpy()], mean, std, aug=cfg.augment, generator=gen))
            ft = model.encoder(to_batch(target[ti], mean, std, aug=cfg.augment, generator=gen))
            att = attribute_loss(model, model.head(model.embedding(fs)), labels[si])
            if cfg.method == "dann":
                logits = domain(grad_reverse(torch.cat([fs, ft]), lam)).squeeze(1)
                dom = F.binary_cross_entropy_with_logits(
                    logits, torch.cat([torch.zeros(bs), torch.ones(bs)]))
                loss = att + dom
            else:
                dom = mmd2(fs, ft)
                loss = att + lam * dom
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["attributes"] += att.item()
            sums["domain"] += dom.item()
        row = {"epoch": epoch + 1, **{k: v / cfg.steps_per_epoch for k, v in sums.items()}}
        history.append(row)
        log(f"{cfg.method} epoch {epoch + 1}/{cfg.epochs} attributes {row['attributes']:.4f} "
            f"domain {row['domain']:.4f}")
    return AttributeAdaptation(model.eval(), cfg.method, history, time.time() - t0,
                               len(source), len(target))


def source_cells(tables: str | Path, base: LoadedModel, *, images: str | Path | None = None,
                 split: str = "train", max_cells: int = 2000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Annotated cells for alignment: a seeded sample of at most ``max_cells`` rows of the
    ``split`` of a WBCAtt table or folder of tables (every row of a table without a split),
    decoded at ``base``'s input size, with their values as indices into ``base``'s heads.

    Returns ``(images, value indices (N, n attributes), unreadable files)``.

    Raises:
        DatasetError: no row of that split, or none readable.
    """
    from hemascope.data.cache import load_cached
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.train.attributes import attribute_targets

    ds = read_wbcatt_any(tables, image_root=images)
    rows = [s for s in ds.samples if (s.split or split) == split]
    if not rows:
        raise DatasetError(f"{tables}: no {split} rows to align with")
    if len(rows) > max_cells:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_cells, replace=False))
        rows = [rows[i] for i in pick]
    cached = load_cached([ds.root / s.path for s in rows], int(base.config["image_size"]))
    if not len(cached.index):
        raise DatasetError(f"{tables}: none of the {len(rows)} source images could be read")
    kept = [rows[i] for i in cached.index]
    try:
        labels = attribute_targets(kept, base.model.attributes)
    except ValueError as e:  # a value the model has no head output for
        raise DatasetError(f"{tables}: {e}; the table's attribute values must be the model's "
                           f"({base.path})") from None
    return cached.images, labels, dict(cached.errors)


def save_adapted_attributes(result: AttributeAdaptation, base: LoadedModel, cfg: UdaConfig,
                            out_dir: str | Path, *, source: str | None, target: str) -> Path:
    """Write the adapted attribute model with its lineage; loads with
    :func:`hemascope.attributes.load_attribute_model`."""
    settings = None if result.method == "bn" else {k: v for k, v in cfg.to_dict().items()
                                                   if k != "method"}
    config = {**{k: v for k, v in base.config.items() if k not in ("weights_sha256", "format")},
              "training": {"base": str(base.path),
                           "adaptation": {"mmd": "MMD", "dann": "DANN", "bn": "AdaBN"}[result.method],
                           "source": source, "target": target, "n_source": result.n_source,
                           "n_target": result.n_target, "config": settings,
                           "history": result.history, "wall_time_s": round(result.seconds, 1)},
              "metrics": {}}
    return save_artifact(out_dir, result.model, config, dtype=base.config.get("weights_dtype",
                                                                              "float32"))
