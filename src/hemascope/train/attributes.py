"""Training a morphology-attribute model on WBCAtt-style tables (Tsutsui et al., 2023).

The loop is the classifier's (cached images, batched augmentation, AdamW + cosine, EMA,
resumable checkpoint, best-on-validation artifact) with the attribute model's loss: the
mean over attributes of the cross-entropy. The best epoch is chosen by the validation
average macro-F1; the test part is scored once, at the end.
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

from hemascope import taxonomy
from hemascope.attributes.model import AttributeModel, attribute_loss
from hemascope.data.cache import load_cached
from hemascope.data.samples import ClassificationSet
from hemascope.data.splits import SplitFile, save_split, stratified_split
from hemascope.errors import DatasetError
from hemascope.evaluate.attributes import AttributeReport, attribute_report
from hemascope.io.atomic import write_json
from hemascope.models.artifact import SPLIT, save_artifact
from hemascope.train.classifier import (_ema_update, _scheduler, fit_to_time, fitted_epochs,
                                        make_optimizer, out_of_time, to_batch, training_style,
                                        warn_if_schedule_ended)
from hemascope.train.checkpoint import (load_checkpoint, round_to_float16, save_checkpoint,
                                        trim_history)
from hemascope.train.config import AttributeTrainConfig
from hemascope.train.device import autocast, describe, module_device, resolve_device


@dataclass
class AttributeTrainResult:
    out_dir: Path
    best_epoch: int
    val_average_macro_f1: float
    test: AttributeReport | None
    wall_time_s: float


def attribute_targets(samples, attributes: dict[str, tuple[str, ...]]) -> np.ndarray:
    """``(N, n attributes)`` value indices; -1 where a sample lacks the attribute."""
    out = np.full((len(samples), len(attributes)), -1, np.int64)
    for i, s in enumerate(samples):
        for j, (name, values) in enumerate(attributes.items()):
            v = s.attributes.get(name)
            if v is not None:
                out[i, j] = values.index(v)
    return out


def split_of(ds: ClassificationSet, cfg: AttributeTrainConfig) -> SplitFile:
    """The tables' own split (WBCAtt ships one) or a new stratified one by cell type."""
    keys = [s.path for s in ds.samples]
    if all(s.split for s in ds.samples):
        return SplitFile({s.path: s.split for s in ds.samples}, "official", cfg.seed, {},
                         str(ds.root))
    a = stratified_split(keys, ds.labels(), val=cfg.val_fraction, test=cfg.test_fraction,
                         seed=cfg.seed)
    return SplitFile(a, "stratified", cfg.seed,
                     {"val": cfg.val_fraction, "test": cfg.test_fraction}, str(ds.root))


@torch.inference_mode()
def predict_values(model: AttributeModel, images: np.ndarray, mean, std, *,
                   batch_size: int = 128) -> dict[str, np.ndarray]:
    """Softmax probabilities per attribute, ``{name: (N, n values)}``, for cached uint8 images."""
    model.eval()
    dev = module_device(model)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in model.attributes}
    for i in range(0, len(images), batch_size):
        with autocast(dev):
            logits = model(to_batch(images[i:i + batch_size], mean, std, device=dev))
        for k, b in model.split(logits.float()).items():
            parts[k].append(torch.softmax(b, 1).cpu().numpy())
    return {k: (np.concatenate(v) if v else np.zeros((0, len(model.attributes[k]))))
            for k, v in parts.items()}


def score(model: AttributeModel, images: np.ndarray, targets: np.ndarray, mean, std) -> AttributeReport:
    probs = predict_values(model, images, mean, std)
    truth, pred = {}, {}
    for j, (name, values) in enumerate(model.attributes.items()):
        truth[name] = [values[t] if t >= 0 else "" for t in targets[:, j]]
        pred[name] = [values[k] for k in probs[name].argmax(1)]
    return attribute_report(truth, pred, model.attributes)


def train_attributes(ds: ClassificationSet, cfg: AttributeTrainConfig, out_dir: str | Path, *,
                     resume: bool = False, command: str = "",
                     log: Callable[[str], None] | None = None) -> AttributeTrainResult:
    """Train on ``train``, pick the epoch by ``val`` average macro-F1, score ``test``.

    Args:
        ds: single cells whose samples carry ``attributes`` (``read_wbcatt_folder``).
        cfg: the recipe.
        out_dir: run / model folder (artifact, ``split.json``, ``history.jsonl``,
            ``checkpoint.pt``).

    Raises:
        DatasetError: no attribute labels, or an empty train or val part.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    cfg = dataclasses.replace(cfg)  # --fit-to-time may shorten its epochs
    attributes = {k: tuple(v) for k, v in taxonomy.ATTRIBUTES.items()
                  if any(k in s.attributes for s in ds.samples)}
    if not attributes:
        raise DatasetError(f"{ds.root}: no sample carries WBCAtt attributes (expected a WBCAtt "
                           "table with the 11 attribute columns)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    dev = resolve_device(cfg.device)
    t0 = time.time()
    split = split_of(ds, cfg)
    save_split(out / SPLIT, split)
    segmenter = None
    if cfg.segmenter:
        from hemascope.segment.predict import load_segmenter

        segmenter = load_segmenter(cfg.segmenter)
        segmenter.model.to(dev)  # part masks of the whole set are computed once, here
    data = {}
    for part in ("train", "val", "test"):
        samples = [s for s in ds.samples if split.assignments[s.path] == part]
        cached = load_cached([ds.root / s.path for s in samples], cfg.image_size)
        for path, reason in cached.errors.items():
            log(f"skipping unreadable image {path}: {reason}")
        images = cached.images
        if segmenter is not None:  # part masks read once, like the images
            from hemascope.attributes.predict import add_part_channels

            images = add_part_channels(segmenter, images)
        data[part] = (images, attribute_targets([samples[i] for i in cached.index], attributes))
    x_train, y_train = data["train"]
    if len(x_train) < 2 or not len(data["val"][0]):
        raise DatasetError(f"the split has {len(x_train)} train and {len(data['val'][0])} val "
                           "images; both must be non-empty")
    rgb = x_train[..., :3]
    mean = torch.tensor(rgb.reshape(-1, 3).mean(0) / 255, dtype=torch.float32)
    std = torch.tensor(rgb.reshape(-1, 3).std(0) / 255, dtype=torch.float32).clamp(min=1e-3)

    model = build_attribute_model(cfg, attributes)
    if cfg.init:
        from hemascope.models.artifact import init_from

        counts = init_from(model, cfg.init)
        log(f"initialised {counts['copied']} tensors from {cfg.init} ({counts['kept']} kept random)")
    model.to(dev)
    ema = copy.deepcopy(model).eval() if cfg.ema_decay > 0 else None
    opt = make_optimizer(model, cfg)
    steps = math.ceil(len(x_train) / cfg.batch_size)
    sched = _scheduler(opt, cfg, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, best, best_epoch, earlier = 0, -1.0, -1, 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt, model=model, opt=opt, sched=sched, ema=ema)
        gen.set_state(state["gen"])
        start, best, best_epoch = int(state["epoch"]) + 1, float(state["best"]), int(state["best_epoch"])
        earlier = float(state.get("elapsed", 0.0))
        log(f"resuming at epoch {start + 1}")
        fitted_epochs(cfg, sched, steps)
        warn_if_schedule_ended(opt, log)
    trim_history(out / "history.jsonl", start)  # a fresh run starts a fresh history
    eval_model = ema if ema is not None else model
    epoch_seconds: list[float] = []
    for epoch in range(start, cfg.epochs):
        te = time.time()
        model.train()
        order = torch.randperm(len(x_train), generator=gen).numpy()
        total, seen = 0.0, 0
        for b in range(steps):
            idx = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            if len(idx) < 2:
                continue
            xb = to_batch(x_train[idx], mean, std, aug=cfg.augment, generator=gen, device=dev)
            with autocast(dev):
                logits = model(xb)
            loss = attribute_loss(model, logits.float(), torch.from_numpy(y_train[idx]).to(dev),
                                  label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.schedule != "plateau":
                sched.step()
            if ema is not None:
                _ema_update(ema, model, cfg.ema_decay, step=epoch * steps + b)
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        rep = score(eval_model, *data["val"], mean, std)
        if cfg.schedule == "plateau":
            sched.step(rep.average_macro_f1)
        improved = rep.average_macro_f1 > best
        if improved:
            best, best_epoch = rep.average_macro_f1, epoch
            save_artifact(out / "best", eval_model, {"arch": cfg.arch}, dtype="float32")
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1),
               "val_average_macro_f1": rep.average_macro_f1,
               "val_average_accuracy": rep.average_accuracy, "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.time() - te, 1), "best": improved}
        with open(out / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val avg macro-F1 "
            f"{rep.average_macro_f1:.4f} acc {rep.average_accuracy:.4f} ({row['seconds']}s)"
            + (" *" if improved else ""))
        save_checkpoint(ckpt, model=model, opt=opt, sched=sched, ema=ema, gen=gen.get_state(),
                        epoch=epoch, best=best, best_epoch=best_epoch,
                        elapsed=earlier + time.time() - t0)
        if out_of_time(cfg.max_minutes, t0, epoch, cfg.epochs, log):
            break
        epoch_seconds.append(time.time() - te)
        fit_to_time(cfg, sched, steps, t0, epoch_seconds, log, done=epoch + 1)
        if epoch + 1 >= cfg.epochs:
            break

    from safetensors.torch import load_file

    best_model = build_attribute_model(cfg, attributes)
    best_model.load_state_dict(load_file(str(out / "best" / "model.safetensors")))
    best_model.to(dev)
    if cfg.weights_dtype == "float16":
        round_to_float16(best_model)
    test = score(best_model, *data["test"], mean, std) if len(data["test"][0]) else None
    wall = earlier + time.time() - t0
    config = {
        "task": "attributes", "arch": cfg.arch, "attributes": {k: list(v) for k, v in attributes.items()},
        "image_size": cfg.image_size, "preprocessing": "letterbox-bicubic", "mean": mean.tolist(),
        "std": std.tolist(), "dropout": cfg.dropout, "stain_reference": None,
        "source_style": training_style(rgb, seed=cfg.seed),
        "training": {"data": str(ds.root), "format": ds.format, "n_images": split.counts(),
                     "split_file": SPLIT, "split_method": split.method, "command": command,
                     "config": cfg.to_dict(), "best_epoch": best_epoch + 1,
                     "wall_time_s": round(wall, 1), "device": describe(dev)},
        "metrics": {"val": {"average_macro_f1": best},
                    "test": ({k: v for k, v in test.to_dict().items() if k != "attributes"}
                             if test else None)},
    }
    if segmenter is not None:  # the folder carries its segmenter: copy it along
        import shutil

        shutil.copytree(segmenter.path, out / "segmenter", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("history.json", "*.pt"))
        config.update(segmenter="segmenter", aggregate=cfg.aggregate)
    save_artifact(out, best_model, config, dtype=cfg.weights_dtype)
    write_json(out / "metrics.json", test.to_dict() if test else {})
    return AttributeTrainResult(out, best_epoch + 1, best, test, wall)


def build_attribute_model(cfg: AttributeTrainConfig, attributes) -> AttributeModel:
    """The plain model, or the structure-aware one when ``cfg.segmenter`` is set."""
    if cfg.segmenter:
        from hemascope.attributes.model import PartAwareAttributeModel

        model = PartAwareAttributeModel(cfg.arch, attributes, aggregate=cfg.aggregate,
                                        dropout=cfg.dropout, image_size=cfg.image_size)
    else:
        model = AttributeModel(cfg.arch, attributes, dropout=cfg.dropout, image_size=cfg.image_size)
    return model.to(memory_format=torch.channels_last)
