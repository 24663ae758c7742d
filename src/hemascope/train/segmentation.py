"""Training the cell-part U-Net: fixed-size cached pairs, online augmentation, CE + Dice.

Small data (the 100 CellaVision cells) is the normal case, so the protocol that reports a
score is k-fold cross-validation (each cell is tested once by a model that never saw it);
the shipped model is then trained on every pair for the same number of epochs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hemascope.io.atomic import write_json
from hemascope.models.artifact import LoadedModel, save_artifact
from hemascope.segment.data import MaskPair, load_pairs
from hemascope.segment.metrics import SegmentationReport, segmentation_report
from hemascope.segment.pseudo import IGNORE, load_unlabelled, pseudo_label
from hemascope.segment.unet import UNet
from hemascope.taxonomy import CELL_PARTS
from hemascope.train.config import SegmentationTrainConfig

PARTS = list(CELL_PARTS.classes)


@dataclass
class SegmentationTrainResult:
    out_dir: Path
    val: SegmentationReport | None
    wall_time_s: float


def augment_pairs(x: torch.Tensor, y: torch.Tensor, cfg: SegmentationTrainConfig,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, 90-degree turns and zoom on image and mask alike; hue, colour and blur
    (defocus) on the image only. A zoomed-out image's margin is mirrored, or, for a share
    ``flat_pad`` of them, filled with the image's border colour and background in the mask.

    ``x`` float ``(B, 3, S, S)`` in 0-1, ``y`` long ``(B, S, S)``; returns new tensors.
    """
    b = len(x)
    if torch.rand(1, generator=gen).item() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if torch.rand(1, generator=gen).item() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    if cfg.min_scale > 0:  # scale log-uniform in [min_scale, 1 + zoom]: lower magnifications
        lo, hi = math.log(cfg.min_scale), math.log(1 + cfg.zoom)
        z = torch.exp(lo + torch.rand(b, generator=gen) * (hi - lo))
    elif cfg.zoom > 0:
        z = 1 + (torch.rand(b, generator=gen) * 2 - 1) * cfg.zoom
    if cfg.zoom > 0 or cfg.min_scale > 0:
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / z
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        fill = border_fill(x) if cfg.flat_pad > 0 else None  # the slide's colour, before zooming
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="reflection",
                          align_corners=False)[:, 0].long()
        if cfg.flat_pad > 0:  # some margins flat (a padded crop; the zoom pass's window)
            flat = (torch.rand(b, generator=gen) < cfg.flat_pad) & (z < 1)
            if flat.any():
                outside = grid.abs().amax(-1) > 1  # (B, S, S): sampled beyond the image
                m = outside & flat.view(b, 1, 1)
                x = torch.where(m[:, None], fill.view(b, 3, 1, 1).expand_as(x), x)
                y = y.masked_fill(m, 0)
    if cfg.hue > 0:
        x = turn_hue(x, (torch.rand(b, generator=gen) * 2 - 1) * cfg.hue)
    if cfg.colour > 0:
        c = cfg.colour
        gain = 1 + (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1) * c
        x = x * gain
        grey = x.mean(1, keepdim=True)
        sat = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * c
        x = grey + (x - grey) * sat
        mean = x.mean((1, 2, 3), keepdim=True)
        con = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * c
        x = (mean + (x - mean) * con).clamp(0, 1)
    if cfg.blur > 0 and torch.rand(1, generator=gen).item() < 0.5:
        x = gaussian_blur(x, float(torch.rand(1, generator=gen)) * cfg.blur)
    return x.contiguous(), y.contiguous()


def border_fill(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` median colour of each image's outermost rows and columns (as
    :func:`hemascope.segment.predict.border_colour` pads a window at inference)."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1)
    return border.median(-1).values


#: RGB -> YIQ (NTSC): luma and two chroma axes; a hue turn rotates the chroma plane.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def turn_hue(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in 0-1 with each image's hue turned by ``degrees[b]`` (rotation
    of the YIQ chroma plane; luma kept), clipped to 0-1: another stain's tint."""
    t = torch.deg2rad(degrees.to(x.dtype))
    rot = torch.zeros(len(x), 3, 3, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = torch.cos(t), -torch.sin(t)
    rot[:, 2, 1], rot[:, 2, 2] = torch.sin(t), torch.cos(t)
    yiq = _YIQ.to(x.dtype)
    m = (torch.linalg.inv(yiq) @ rot @ yiq).to(x.device)
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(B, C, H, W)`` blurred by a Gaussian of ``sigma`` px (separable, edges reflected)."""
    if sigma < 0.3:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def reference_stats(images: np.ndarray, masks: np.ndarray) -> dict:
    """What inference compares a new image with (:func:`hemascope.segment.predict.segment_arrays`):
    the training images' background colour and the median share of its image that a
    training cell (its nucleus, cytoplasm and vacuoles) covers."""
    from hemascope.segment.outline import part_indices
    from hemascope.stain.background import background_reference

    cell, _ = part_indices(PARTS)
    share = float(np.median([np.isin(m, cell).mean() for m in masks]))
    return {"background": background_reference(images), "cell_fraction": round(share, 4)}


def class_weights(y: np.ndarray, n_classes: int, *, cap: float = 10.0) -> torch.Tensor:
    """Cross-entropy weights for the rare classes of the training masks ``y`` (pixels
    labelled IGNORE left out): ``sqrt(median share / share)`` of each class present,
    between 1 and ``cap``, so that a class as common as the median one or more keeps weight 1
    and only the rare ones (platelets) weigh more; an absent class gets 1. Pure."""
    labels = y[y != IGNORE].astype(np.int64).ravel()
    counts = np.bincount(labels, minlength=n_classes)[:n_classes].astype(float)
    present = counts > 0
    w = np.ones(n_classes)
    if present.any():
        share = counts[present] / counts.sum()
        w[present] = np.clip(np.sqrt(np.median(share) / share), 1.0, cap)
    return torch.tensor(w, dtype=torch.float32)


def seg_loss(logits: torch.Tensor, y: torch.Tensor, *, dice_weight: float,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy (class-``weight``-ed if given) + soft Dice over the classes present in
    the batch's truth; pixels labelled :data:`~hemascope.segment.pseudo.IGNORE` (unsure
    pseudo-labels) count in neither."""
    valid = y != IGNORE
    if not bool(valid.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, y, ignore_index=IGNORE, weight=weight)
    if dice_weight <= 0:
        return ce
    keep = valid[:, None].float()
    prob = logits.softmax(1) * keep
    onehot = F.one_hot(torch.where(valid, y, 0), logits.shape[1]).permute(0, 3, 1, 2).float() * keep
    present = onehot.sum((0, 2, 3)) > 0
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + 1) / (denom + 1)
    return ce + dice_weight * (1 - dice[present].mean())


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


@torch.inference_mode()
def predict_masks(model: UNet, images: np.ndarray, mean, std, *, batch_size: int = 16) -> np.ndarray:
    """Part indices ``(N, S, S)`` for cached ``(N, S, S, 3)`` uint8 images."""
    model.eval()
    out = [model(normalise(to_float(images[i:i + batch_size]), mean, std)).argmax(1).numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.uint8) if out else np.zeros((0,) + images.shape[1:3], np.uint8)


def fit_unet(x: np.ndarray, y: np.ndarray, cfg: SegmentationTrainConfig, *,
             val: tuple[np.ndarray, np.ndarray] | None = None,
             log: Callable[[str], None] = lambda s: None) -> tuple[UNet, torch.Tensor, torch.Tensor, list]:
    """Train a U-Net on cached pairs; returns the model (best on ``val`` if given, else the
    last epoch), the train mean/std and the history."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mean = torch.tensor(x.reshape(-1, 3).mean(0) / 255, dtype=torch.float32)
    std = torch.tensor(x.reshape(-1, 3).std(0) / 255, dtype=torch.float32).clamp(min=1e-3)
    model = UNet(len(PARTS), width=cfg.width, depth=cfg.depth)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, math.ceil(len(x) / cfg.batch_size))
    total, warm = cfg.epochs * steps, int(cfg.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    xt, yt = to_float(x), torch.from_numpy(y.astype(np.int64))
    weight = class_weights(y, len(PARTS)) if cfg.class_weights == "sqrt" else None
    best, best_state, history = -1.0, None, []
    for epoch in range(cfg.epochs):
        t = time.time()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        run = 0.0
        for b in range(steps):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            xb, yb = augment_pairs(xt[idx], yt[idx], cfg, gen)
            loss = seg_loss(model(normalise(xb, mean, std)), yb, dice_weight=cfg.dice_weight,
                            weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += loss.item()
        row = {"epoch": epoch + 1, "train_loss": run / steps, "seconds": round(time.time() - t, 1)}
        if val is not None:
            rep = segmentation_report(list(val[1]), list(predict_masks(model, val[0], mean, std)), PARTS)
            row["val_miou"] = rep.miou
            if rep.miou > best:
                best = rep.miou
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        history.append(row)
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f}"
            + (f" val mIoU {row['val_miou']:.4f}" if "val_miou" in row else "") + f" ({row['seconds']}s)")
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), mean, std, history


def self_train(x: np.ndarray, y: np.ndarray, unlabelled: np.ndarray, cfg: SegmentationTrainConfig, *,
               val: tuple[np.ndarray, np.ndarray] | None = None,
               log: Callable[[str], None] = lambda s: None) -> tuple[UNet, torch.Tensor, torch.Tensor, list, dict]:
    """One round of self-training: a teacher on the labelled pairs, its confident pixels on
    ``unlabelled`` as pseudo-labels, a student from scratch on both. By default the
    student takes as many optimiser steps as the teacher did (same compute per model)."""
    from dataclasses import replace

    teacher, mean, std, _ = fit_unet(x, y, cfg, log=lambda s: log("teacher " + s))
    loaded = LoadedModel(teacher, {"image_size": cfg.image_size, "mean": mean.tolist(),
                                   "std": std.tolist()}, Path("."))
    pseudo = pseudo_label(loaded, list(unlabelled), cfg.min_confidence)
    coverage = float((pseudo != IGNORE).mean())
    epochs = cfg.student_epochs or max(1, round(cfg.epochs * len(x) / (len(x) + len(unlabelled))))
    log(f"pseudo-labels on {len(unlabelled)} images: {coverage:.1%} of pixels kept "
        f"(teacher probability >= {cfg.min_confidence}); student: {epochs} epochs")
    student, mean, std, history = fit_unet(np.concatenate([x, unlabelled]),
                                           np.concatenate([y, pseudo]),
                                           replace(cfg, epochs=epochs), val=val, log=log)
    info = {"unlabelled": cfg.unlabelled, "n_unlabelled": int(len(unlabelled)),
            "pseudo_labelled_pixel_fraction": coverage, "min_confidence": cfg.min_confidence,
            "student_epochs": epochs}
    return student, mean, std, history, info


def _fit(x, y, unlabelled, cfg, *, val=None, log=lambda s: None):
    """``fit_unet``, or ``self_train`` when unlabelled images are given."""
    if unlabelled is None:
        return (*fit_unet(x, y, cfg, val=val, log=log), None)
    return self_train(x, y, unlabelled, cfg, val=val, log=log)


def _unlabelled(cfg: SegmentationTrainConfig, log) -> np.ndarray | None:
    if not cfg.unlabelled:
        return None
    return load_unlabelled(cfg.unlabelled, cfg.image_size, limit=cfg.pseudo_limit, seed=cfg.seed,
                           log=log)


def train_segmenter(pairs: Sequence[MaskPair], cfg: SegmentationTrainConfig, out_dir: str | Path, *,
                    command: str = "", data: str = "", cv: dict | None = None,
                    log: Callable[[str], None] | None = None) -> SegmentationTrainResult:
    """Train on every pair (or on all but a ``val_fraction`` held out for the best epoch)
    and write the model folder; ``cv`` (from :func:`cross_validate_segmenter`) goes into
    its config as the measured score."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    t0 = time.time()
    x, y, errors = load_pairs(list(pairs), cfg.image_size, other_parts=cfg.other_parts_list)
    for path, reason in errors.items():
        log(f"skipping {path}: {reason}")
    val, val_rep = None, None
    if cfg.val_fraction > 0:
        order = np.random.default_rng(cfg.seed).permutation(len(x))
        n_val = max(1, int(round(len(x) * cfg.val_fraction)))
        vi, ti = np.sort(order[:n_val]), np.sort(order[n_val:])
        val, (x, y) = (x[vi], y[vi]), (x[ti], y[ti])
    model, mean, std, history, selftrain = _fit(x, y, _unlabelled(cfg, log), cfg, val=val, log=log)
    if val is not None:
        val_rep = segmentation_report(list(val[1]), list(predict_masks(model, val[0], mean, std)), PARTS)
    present = sorted({int(v) for v in np.unique(y)})
    wall = time.time() - t0
    config = {
        "task": "segmentation", "arch": "unet", "width": cfg.width, "depth": cfg.depth,
        "classes": PARTS, "trained_classes": [PARTS[i] for i in present],
        "image_size": cfg.image_size, "preprocessing": "resize-bilinear", "mean": mean.tolist(),
        "std": std.tolist(), **reference_stats(x, y),
        "training": {"data": data, "n_images": int(len(x)), "command": command,
                     "config": cfg.to_dict(), "wall_time_s": round(wall, 1),
                     "device": f"CPU, {torch.get_num_threads()} threads",
                     "self_training": selftrain},
        "metrics": {"val": val_rep.to_dict() if val_rep else None, "cross_validation": cv},
    }
    out = Path(out_dir)
    save_artifact(out, model, config)
    write_json(out / "history.json", history)
    return SegmentationTrainResult(out, val_rep, wall)


def cross_validate_segmenter(pairs: Sequence[MaskPair], cfg: SegmentationTrainConfig, *, k: int = 5,
                             log: Callable[[str], None] | None = None,
                             fold_model: Callable[..., LoadedModel] | None = None) -> dict:
    """k-fold protocol: each fold is scored by a model trained on the other k-1 folds,
    at each held-out image's own resolution (:func:`segment_arrays` defaults).
    ``fold_model(fold, x_train, y_train, test_idx)`` replaces the training of each fold's
    model (a benchmark that keeps fold models to score them again).

    Returns per-class IoU/F1 and mIoU as mean +- std over folds, the pooled report over
    every held-out pixel, and each fold's report.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    x, y, errors = load_pairs(list(pairs), cfg.image_size, other_parts=cfg.other_parts_list)
    if len(x) < k:
        raise ValueError(f"{len(x)} readable pairs cannot make {k} folds")
    folds = np.array_split(np.random.default_rng(cfg.seed).permutation(len(x)), k)
    from hemascope.segment.data import load_pair
    from hemascope.segment.predict import segment_arrays

    readable = [p for p in pairs if str(p.image) not in errors]
    unlabelled = _unlabelled(cfg, log)  # the same unlabelled images for every fold's teacher
    reports, truths, preds = [], [], []
    for f, test_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(len(x)), test_idx)
        if fold_model is not None:
            loaded = fold_model(f, x[train_idx], y[train_idx], test_idx)
        else:
            model, mean, std, _, _ = _fit(x[train_idx], y[train_idx], unlabelled, cfg)
            loaded = LoadedModel(model, {"image_size": cfg.image_size, "mean": mean.tolist(),
                                         "std": std.tolist(), "classes": PARTS,
                                         **reference_stats(x[train_idx], y[train_idx])}, Path("."))
        full = [load_pair(readable[i]) for i in test_idx]  # scored at each image's own size
        pred = segment_arrays(loaded, [im for im, _ in full])
        truth = [m for _, m in full]
        rep = segmentation_report(truth, pred, PARTS)
        log(f"fold {f + 1}/{k}: mIoU {rep.miou:.4f} " + ", ".join(
            f"{c} IoU {v['iou']:.3f}" for c, v in rep.per_class.items()))
        reports.append(rep.to_dict())
        truths += truth
        preds += pred
    classes = [c for c in PARTS if all(c in r["per_class"] for r in reports)]
    summary = {
        "k": k, "n_images": int(len(x)), "image_size": cfg.image_size,
        "miou": {"mean": float(np.mean([r["miou"] for r in reports])),
                 "std": float(np.std([r["miou"] for r in reports]))},
        "per_class": {c: {m: {"mean": float(np.mean([r["per_class"][c][m] for r in reports])),
                              "std": float(np.std([r["per_class"][c][m] for r in reports]))}
                          for m in ("iou", "f1")} for c in classes},
        "pooled": segmentation_report(truths, preds, PARTS).to_dict(),
        "folds": reports,
    }
    return summary
