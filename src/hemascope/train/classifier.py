"""Training a single-cell classifier (the recipe lives in ``ClassifierTrainConfig``).

Images are decoded and resized once (:mod:`hemascope.data.cache`); an epoch only runs the
network. Every epoch writes ``history.jsonl`` and a resumable ``checkpoint.pt`` (tensors
only, read back with ``weights_only=True``); the best-on-validation weights become the
model artifact, evaluated once on the held-out test split at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hemascope.augment import augment_batch
from hemascope.data.cache import load_cached
from hemascope.data.samples import ClassificationSet
from hemascope.data.splits import SplitFile, check_covers, save_split, stratified_split
from hemascope.errors import DatasetError
from hemascope.evaluate.classification import ClassificationReport, classification_report
from hemascope.io.atomic import write_json
from hemascope.models.artifact import SPLIT, save_artifact
from hemascope.models.classifier import CellClassifier
from hemascope.train.checkpoint import (load_checkpoint, round_to_float16, save_checkpoint,
                                        trim_history)
from hemascope.train.config import ClassifierTrainConfig
from hemascope.train.device import autocast, describe, module_device, resolve_device


@dataclass
class TrainResult:
    out_dir: Path
    best_epoch: int
    val: dict
    test: ClassificationReport | None
    wall_time_s: float


def prepare_split(ds: ClassificationSet, cfg: ClassifierTrainConfig,
                  split: SplitFile | None) -> SplitFile:
    """The given split (checked against the data) or a new stratified one."""
    keys = [s.path for s in ds.samples]
    if split is not None:
        check_covers(split, keys, source="split file")
        return split
    a = stratified_split(keys, ds.labels(), val=cfg.val_fraction, test=cfg.test_fraction,
                         seed=cfg.seed)
    return SplitFile(a, "stratified", cfg.seed,
                     {"val": cfg.val_fraction, "test": cfg.test_fraction}, str(ds.root))


@dataclass
class TrainingData:
    """Decoded, resized images per split part with integer labels, and the train statistics."""

    classes: list[str]
    data: dict[str, tuple[np.ndarray, np.ndarray]]
    mean: torch.Tensor
    std: torch.Tensor


def prepare_data(ds: ClassificationSet, cfg: ClassifierTrainConfig, split: SplitFile, *,
                 log: Callable[[str], None], need_val: bool = True) -> TrainingData:
    """Cache images of each part at ``cfg.image_size``; channel mean/std of the train part
    (``need_val``: a val part is required, as training picks its best epoch on it)."""
    classes = list(ds.classes)
    if len(classes) < 2:
        raise DatasetError(f"need at least two classes to train, found {classes}")
    cls_index = {c: i for i, c in enumerate(classes)}
    parts = {p: [s for s in ds.samples if split.assignments[s.path] == p]
             for p in ("train", "val", "test")}
    if not parts["train"] or (need_val and not parts["val"]):
        hint = (" (it is a k-fold split: use it with --cv)"
                if any(v.startswith("fold") for v in split.assignments.values()) else "")
        raise DatasetError(f"the split has {len(parts['train'])} train and {len(parts['val'])} "
                           f"val images; both must be non-empty{hint}")
    data = {}
    for p, samples in parts.items():
        cached = load_cached([ds.root / s.path for s in samples], cfg.image_size)
        for path, reason in cached.errors.items():
            log(f"skipping unreadable image {path}: {reason}")
        labels = np.array([cls_index[samples[i].label] for i in cached.index], np.int64)
        data[p] = (cached.images, labels)
    x_train = data["train"][0]
    # dataset-specific normalisation (bone-marrow study), from the training part only
    mean = torch.tensor(x_train.reshape(-1, 3).mean(0) / 255, dtype=torch.float32)
    std = torch.tensor(x_train.reshape(-1, 3).std(0) / 255, dtype=torch.float32).clamp(min=1e-3)
    return TrainingData(classes, data, mean, std)


def to_batch(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, *, aug=None,
             generator=None, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``(B, H, W, 3 + K)`` -> float ``(B, 3 + K, H, W)`` channels-last on ``device``
    (default CPU); the RGB channels are normalised, extra ones (part masks) only scaled to
    0-1. The uint8 batch is moved before conversion and augmentation (4x less to copy)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255)
    if aug is not None:
        x = augment_batch(x, aug, generator=generator)
    mean, std = mean.to(x.device), std.to(x.device)
    rgb = (x[:, :3] - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    x = torch.cat([rgb, x[:, 3:]], 1) if x.shape[1] > 3 else rgb
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, images: np.ndarray, mean, std, *,
                  batch_size: int = 128, views: int = 1) -> np.ndarray:
    """Class probabilities of cached uint8 images ``(N, H, W, 3)``; ``views`` > 1 averages
    the softmax over that many flips/rotations (:func:`hemascope.classify.dihedral_views`)."""
    from hemascope.classify import view_averaged_softmax

    model.eval()
    dev, out = module_device(model), []
    for i in range(0, len(images), batch_size):
        with autocast(dev):
            probs = view_averaged_softmax(model, to_batch(images[i:i + batch_size], mean, std,
                                                          device=dev), views)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def train_classifier(ds: ClassificationSet, cfg: ClassifierTrainConfig, out_dir: str | Path, *,
                     split: SplitFile | None = None, resume: bool = False,
                     command: str = "", log: Callable[[str], None] | None = None) -> TrainResult:
    """Train on the ``train`` part, pick the epoch by ``val``, report ``test``; write artifact.

    Args:
        ds: labelled single cells (classes = ``ds.classes``).
        cfg: the recipe.
        out_dir: run folder: artifact, ``split.json``, ``history.jsonl``, ``checkpoint.pt``.
        split: fixed split (``train``/``val``/``test``); a new stratified one otherwise.
        resume: continue from ``out_dir/checkpoint.pt`` if present.
        command: the command line, recorded in the model card.
        log: receives one line per epoch (default: stderr).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out_dir)
    cfg = dataclasses.replace(cfg)  # --fit-to-time may shorten its epochs
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    dev = resolve_device(cfg.device)
    t0 = time.time()
    split = prepare_split(ds, cfg, split)
    td = prepare_data(ds, cfg, split, log=log)  # before anything is written: it checks the split
    out.mkdir(parents=True, exist_ok=True)
    save_split(out / SPLIT, split)
    classes, data, mean, std = td.classes, td.data, td.mean, td.std
    x_train, y_train = data["train"]
    style = training_style(x_train, seed=cfg.seed)

    model = build_model(cfg, len(classes))
    if cfg.init:
        from hemascope.models.artifact import init_from

        counts = init_from(model, cfg.init)
        log(f"initialised {counts['copied']} tensors from {cfg.init} ({counts['kept']} kept random)")
    model.to(dev)
    ema = copy.deepcopy(model).eval() if cfg.ema_decay > 0 else None
    opt = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    sched = _scheduler(opt, cfg, steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, best, best_epoch, stale, earlier = 0, -1.0, -1, 0, 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt, model=model, opt=opt, sched=sched, ema=ema)
        gen.set_state(state["gen"])
        start, best, best_epoch, stale = (int(state["epoch"]) + 1, float(state["best"]),
                                          int(state["best_epoch"]), int(state["stale"]))
        earlier = float(state.get("elapsed", 0.0))  # wall time of the interrupted sessions
        log(f"resuming at epoch {start + 1}")
        fitted_epochs(cfg, sched, steps_per_epoch)
        warn_if_schedule_ended(opt, log)
    trim_history(out / "history.jsonl", start)  # a fresh run starts a fresh history
    weights = _sample_weights(y_train, len(classes)) if cfg.balanced_sampler else None
    hist = out / "history.jsonl"
    eval_model = ema if ema is not None else model
    epoch_seconds: list[float] = []
    for epoch in range(start, cfg.epochs):
        te = time.time()
        model.train()
        order = (torch.multinomial(weights, len(y_train), replacement=True, generator=gen)
                 if weights is not None else torch.randperm(len(y_train), generator=gen)).numpy()
        total, seen = 0.0, 0
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            if len(idx) < 2:
                continue  # batch norm needs two samples
            xb = to_batch(x_train[idx], mean, std, aug=cfg.augment, generator=gen, device=dev)
            yb = torch.from_numpy(y_train[idx]).to(dev)
            with autocast(dev):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.schedule != "plateau":
                sched.step()
            if ema is not None:
                _ema_update(ema, model, cfg.ema_decay, step=epoch * steps_per_epoch + b)
            total += loss.item() * len(idx)
            seen += len(idx)
        x_val, y_val = data["val"]
        rep = classification_report(y_val, predict_probs(eval_model, x_val, mean, std).argmax(1),
                                    classes, n_bootstrap=0)
        score = getattr(rep, cfg.monitor)
        if cfg.schedule == "plateau":
            sched.step(score)
        improved = score > best
        if improved:
            best, best_epoch, stale = score, epoch, 0
            save_artifact(out / "best", eval_model, {"arch": cfg.arch}, dtype="float32")
        else:
            stale += 1
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_accuracy": rep.accuracy,
               "val_macro_f1": rep.macro_f1, "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.time() - te, 1), "best": improved}
        with open(hist, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val acc "
            f"{rep.accuracy:.4f} f1 {rep.macro_f1:.4f} lr {row['lr']:.2e} ({row['seconds']}s)"
            + (" *" if improved else ""))
        save_checkpoint(ckpt, model=model, opt=opt, sched=sched, ema=ema, gen=gen.get_state(),
                        epoch=epoch, best=best, best_epoch=best_epoch, stale=stale,
                        elapsed=earlier + time.time() - t0)
        if cfg.early_stopping and stale >= cfg.early_stopping:
            log(f"early stop: no {cfg.monitor} gain in {stale} epochs")
            break
        if out_of_time(cfg.max_minutes, t0, epoch, cfg.epochs, log):
            break
        epoch_seconds.append(time.time() - te)
        fit_to_time(cfg, sched, steps_per_epoch, t0, epoch_seconds, log, done=epoch + 1)
        if epoch + 1 >= cfg.epochs:
            break

    best_model = load_classifier_from_best(out / "best", cfg, len(classes)).to(dev)
    if cfg.weights_dtype == "float16":
        round_to_float16(best_model)
    x_test, y_test = data["test"]
    test = (classification_report(y_test, predict_probs(best_model, x_test, mean, std).argmax(1),
                                  classes) if len(y_test) else None)
    wall = earlier + time.time() - t0
    config = {
        "task": "classification", "arch": cfg.arch, "classes": classes,
        "vocabulary": ds.vocabulary, "image_size": cfg.image_size,
        "preprocessing": "letterbox-bicubic", "mean": mean.tolist(), "std": std.tolist(),
        "embed_dim": cfg.embed_dim, "hidden_dim": cfg.hidden_dim, "dropout": cfg.dropout,
        "stain_reference": None, "source_style": style,
        "training": {"data": str(ds.root), "format": ds.format, "n_images": split.counts(),
                     "split_file": SPLIT, "split_method": split.method, "command": command,
                     "config": cfg.to_dict(), "best_epoch": best_epoch + 1,
                     "wall_time_s": round(wall, 1), "device": describe(dev)},
        "metrics": {"val": {cfg.monitor: best},
                    "test": test.to_dict() if test else None},
    }
    save_artifact(out, best_model, config, dtype=cfg.weights_dtype)
    write_json(out / "metrics.json", test.to_dict() if test else {})
    return TrainResult(out, best_epoch + 1, config["metrics"]["val"], test, wall)


def training_style(images: np.ndarray, *, seed: int = 0, n: int = 256) -> dict:
    """Reinhard style of (a sample of) the training images: what adaptation maps targets to."""
    from hemascope.stain import fit_reference

    pick = np.random.default_rng(seed).permutation(len(images))[:n]
    return fit_reference(list(images[np.sort(pick)]), method="reinhard").to_dict()


def build_model(cfg: ClassifierTrainConfig, n_classes: int) -> CellClassifier:
    """A randomly initialised classifier as ``cfg`` describes it (channels-last)."""
    model = CellClassifier(cfg.arch, n_classes, embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim,
                           dropout=cfg.dropout, image_size=cfg.image_size)
    return model.to(memory_format=torch.channels_last)


def load_classifier_from_best(folder: Path, cfg: ClassifierTrainConfig, n: int) -> CellClassifier:
    from safetensors.torch import load_file

    model = build_model(cfg, n)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def make_optimizer(model: torch.nn.Module, cfg: ClassifierTrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on norms and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adamw, adam, sgd)")


class _Warmup:
    """Learning-rate factor per step: linear warm-up, then cosine decay to 0 at ``total`` (or
    constant). An object rather than a closure, so that its length travels in the scheduler's
    state (checkpoints) and a time-boxed run can shorten it (:func:`fit_to_time`)."""

    def __init__(self, kind: str, warm: int, total: int):
        if kind not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {kind!r} (cosine, plateau, constant)")
        self.kind, self.warm, self.total = kind, warm, total

    def __call__(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warm) / max(1, self.total - self.warm)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _scheduler(opt, cfg: ClassifierTrainConfig, steps_per_epoch: int):
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.1,
                                                          patience=cfg.plateau_patience)
    return torch.optim.lr_scheduler.LambdaLR(opt, _Warmup(
        cfg.schedule, int(cfg.warmup_epochs * steps_per_epoch), max(1, cfg.epochs * steps_per_epoch)))


def epochs_that_fit(max_minutes: float, elapsed_s: float, epoch_s: float, done: int) -> int:
    """Epochs a time box holds: the ``done`` ones plus as many more of ``epoch_s`` seconds as
    fit in what is left of ``max_minutes`` (at least one)."""
    return done + max(1, int((max_minutes * 60 - elapsed_s) // max(epoch_s, 1e-9)))


FIT_AFTER = 3  # epochs timed before a --fit-to-time run sets its length
REFIT_WINDOW = 5  # later epochs re-time the pace over the last this many


def fit_to_time(cfg, sched, steps_per_epoch: int, t0: float, epoch_seconds: list[float],
                log: Callable[[str], None], *, done: int) -> None:
    """``--fit-to-time``: once this session has timed :data:`FIT_AFTER` epochs, shorten
    ``cfg.epochs`` (and the cosine with it) to the ``done`` epochs plus what is left of
    ``max_minutes`` at the pace of the later timed ones, so that the decay finishes inside
    the box instead of being cut off mid-way. After that every epoch re-times the pace over
    the last :data:`REFIT_WINDOW` epochs and shortens again if epochs got slower (a busier
    machine, a run started beside it). A resumed run fits its rest to its new box.
    Never lengthens; each fitted count is logged and recorded in the run's config (rerun
    with ``--epochs N``)."""
    if not cfg.fit_to_time or cfg.max_minutes <= 0 or len(epoch_seconds) < FIT_AFTER:
        return
    first = len(epoch_seconds) == FIT_AFTER
    # the first epoch carries the warm-up costs and never counts
    pace = float(np.mean(epoch_seconds[max(1, len(epoch_seconds) - REFIT_WINDOW):]))
    n = epochs_that_fit(cfg.max_minutes, time.time() - t0, pace, done)
    if n >= cfg.epochs:
        if first:
            log(f"fit to time: {cfg.epochs} epochs fit in {cfg.max_minutes:g} min ({pace:.1f} s each)")
        return
    log(f"fit to time: {cfg.epochs} -> {n} epochs ({pace:.1f} s each, {cfg.max_minutes:g} min)")
    cfg.epochs = n
    if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
        sched.lr_lambdas[0].total = n * steps_per_epoch


def warn_if_schedule_ended(opt, log: Callable[[str], None]) -> None:
    """On resume: a schedule that has already decayed to zero trains no further."""
    if all(g["lr"] <= 1e-12 for g in opt.param_groups):
        log("note: the resumed run's learning-rate schedule has already ended (lr 0): more "
            "--epochs will not change the weights; to train longer, start a new run with "
            "--init set to this run's folder")


def fitted_epochs(cfg, sched, steps_per_epoch: int) -> None:
    """On resume, a fitted run's length comes back from its scheduler's saved state."""
    if cfg.fit_to_time and isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
        cfg.epochs = min(cfg.epochs, round(sched.lr_lambdas[0].total / steps_per_epoch))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, *, step: int) -> None:
    # warm-up (as in TF's ExponentialMovingAverage): short runs are not stuck at the init
    decay = min(decay, (1 + step) / (10 + step))
    for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(m, alpha=1 - decay)
        else:
            e.copy_(m)


def _sample_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return torch.from_numpy(1.0 / counts[y]).float()


def out_of_time(max_minutes: float, t0: float, epoch: int, epochs: int,
                log: Callable[[str], None]) -> bool:
    """True (and logged) when a time-boxed run has used its ``max_minutes`` after ``epoch``."""
    if max_minutes <= 0 or epoch + 1 >= epochs or time.time() - t0 < max_minutes * 60:
        return False
    log(f"time limit: stopping after epoch {epoch + 1}/{epochs} ({max_minutes:g} min used)")
    return True


def cross_validate(ds: ClassificationSet, cfg: ClassifierTrainConfig, out_dir: str | Path, *,
                   k: int = 5, log: Callable[[str], None] | None = None) -> dict:
    """Stratified k-fold protocol of the bone-marrow study: each fold is the test set once,
    20 % of the rest is validation; returns mean and std over folds of every score.
    """
    from hemascope.data.splits import kfold_parts, stratified_kfold

    keys, labels = [s.path for s in ds.samples], ds.labels()
    folds = stratified_kfold(keys, labels, k=k, seed=cfg.seed)
    label_of = dict(zip(keys, labels))
    out = Path(out_dir)
    per_fold = []
    for fold in range(k):
        parts = kfold_parts(folds, fold, val=0.2, labels=label_of, seed=cfg.seed)
        split = SplitFile(parts, "kfold", cfg.seed, {"k": k, "fold": fold}, str(ds.root))
        res = train_classifier(ds, cfg, out / f"fold{fold}", split=split, log=log)
        per_fold.append(res.test.to_dict())
    names = ["accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1"]
    summary = {n: {"mean": float(np.mean([f[n] for f in per_fold])),
                   "std": float(np.std([f[n] for f in per_fold]))} for n in names}
    summary["per_class_f1"] = {
        c: {"mean": float(np.mean([f["per_class"][c]["f1"] for f in per_fold])),
            "std": float(np.std([f["per_class"][c]["f1"] for f in per_fold]))}
        for c in per_fold[0]["per_class"]}
    summary["confusion_matrix_mean"] = np.mean([f["confusion_matrix"] for f in per_fold], 0).round(6).tolist()
    summary.update({"k": k, "classes": per_fold[0]["classes"], "folds": per_fold})
    write_json(out / "cv_metrics.json", summary)
    return summary
