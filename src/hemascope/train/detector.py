"""Training a smear-field detector: cached fields, online augmentation, best-on-val mAP.

Images are decoded once into memory (:func:`hemascope.detect.data.prepare_fields`); each
step draws a batch, applies mosaic / zoom / flips / colour jitter / copy-paste /
interference factors, and runs the torchvision detector's own losses. Each batch draws
its augmentation from its own seed, so ``workers`` processes can prepare batches ahead
(what keeps a GPU busy) and a seed gives the same run with or without them, on either
device; the GPU computes in float32 (no autocast: box coordinates keep full precision).
Validation mAP@.5:.95 picks the epoch; the EMA weights are what is evaluated and shipped.
``checkpoint.pt`` (loaded with ``weights_only=True``) makes the run resumable.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hemascope.detect.data import FieldSet, augment_field, class_mapping, mosaic, prepare_fields
from hemascope.detect.ensemble import Detections
from hemascope.detect.registry import as_float_image, build_detector
from hemascope.errors import DatasetError
from hemascope.evaluate.detection import (DetectionReport, GroundTruth, best_count_thresholds,
                                          detection_report)
from hemascope.io.annotations import DetectionSet
from hemascope.io.atomic import write_json
from hemascope.models.artifact import save_artifact
from hemascope.stain.background import background_reference
from hemascope.train.classifier import (_ema_update, _Warmup, fit_to_time, fitted_epochs,
                                         out_of_time, warn_if_schedule_ended)
from hemascope.train.device import describe, resolve_device
from hemascope.train.checkpoint import (load_checkpoint, round_to_float16, save_checkpoint,
                                        trim_history)
from hemascope.train.config import DetectorTrainConfig


@dataclass
class DetectorTrainResult:
    out_dir: Path
    best_epoch: int
    val: DetectionReport | None
    test: DetectionReport | None
    wall_time_s: float


def split_sets(ds: DetectionSet, cfg: DetectorTrainConfig) -> dict[str, DetectionSet]:
    """``train`` / ``val`` / ``test`` parts: the data set's own split, val carved if absent."""
    parts = ds.splits()
    if "train" not in parts:
        if set(parts) != {"all"}:
            raise DatasetError(f"the data set has splits {', '.join(sorted(parts))} but no 'train'")
        parts = {"train": parts["all"]}
    train = list(parts["train"])
    if "val" not in parts:
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        n_val = max(1, round(cfg.val_fraction * len(train))) if len(train) > 1 else 0
        parts["val"] = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    out = {}
    for name, ims in (("train", train), ("val", parts.get("val", [])), ("test", parts.get("test", []))):
        out[name] = DetectionSet(images=list(ims), classes=list(ds.classes), image_root=ds.image_root,
                                 problems=[], format=ds.format)
    out["train"].problems = list(ds.problems)
    return out


def predict_fields(model: torch.nn.Module, fields, *, size: int, max_size: int) -> list[Detections]:
    """Single-scale predictions for decoded fields (validation / test during training)."""
    from hemascope.detect.predict import LoadedDetector, detect_field

    det = LoadedDetector(model.eval(), {"test_size": size, "max_size": max_size}, Path("."))
    return [detect_field(det, f.image, scale=None) for f in fields]


def train_detector(ds: DetectionSet, cfg: DetectorTrainConfig, out_dir: str | Path, *,
                   resume: bool = False, command: str = "",
                   log: Callable[[str], None] | None = None) -> DetectorTrainResult:
    """Train on ``train``, pick the epoch by ``val`` mAP, report ``test``; write the artifact."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    dev = resolve_device(cfg.device)  # a missing GPU fails before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    from hemascope.detect.registry import detector_spec

    with_masks = detector_spec(cfg.arch).masks
    vocab = None if cfg.vocabulary in ("", "none") else cfg.vocabulary
    classes, mapping = class_mapping(ds, vocabulary=vocab)
    sets = split_sets(ds, cfg)
    data: dict[str, FieldSet] = {}
    for name, part in sets.items():
        if part.images:
            data[name] = prepare_fields(part, classes, mapping, max_side=cfg.max_side,
                                        masks=with_masks and name == "train")
    train = data["train"].fields
    log(f"{len(train)} train / {len(data.get('val', FieldSet([], classes)).fields)} val / "
        f"{len(data.get('test', FieldSet([], classes)).fields)} test fields; classes {', '.join(classes)}")
    if len(train) < 2:
        raise DatasetError("need at least two training images")

    model = build_detector(cfg.arch, len(classes), min_size=cfg.min_sizes, max_size=cfg.max_size,
                           fpn_channels=cfg.fpn_channels)
    if cfg.init:
        log(init_weights(model, cfg.init))
    model.to(dev)
    ema = copy.deepcopy(model).eval() if cfg.ema_decay > 0 else None
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                          momentum=cfg.momentum)
    steps = math.ceil(len(train) / cfg.batch_size)
    total, warm = cfg.epochs * steps, int(cfg.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _Warmup("cosine", warm, total))
    rng = np.random.default_rng(cfg.seed)
    start, best, best_epoch, earlier = 0, -1.0, -1, 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt, model=model, opt=opt, sched=sched, ema=ema)
        rng = np.random.default_rng(int(state["rng_seed"]))
        start, best, best_epoch = int(state["epoch"]) + 1, float(state["best"]), int(state["best_epoch"])
        earlier = float(state.get("elapsed", 0.0))
        fitted_epochs(cfg, sched, steps)
        log(f"resuming at epoch {start + 1}")
        warn_if_schedule_ended(opt, log)
    trim_history(out / "history.jsonl", start)  # a fresh run starts a fresh history
    log(f"training on {describe(dev, mixed=False)}"
        + (f", {cfg.workers} augmentation workers" if cfg.workers else ""))
    eval_model = ema if ema is not None else model
    val = data.get("val")
    t_session, epoch_seconds = time.time(), []
    epoch = start
    while epoch < cfg.epochs:
        te = time.time()
        model.train()
        order = rng.permutation(len(train))
        jobs = [(order[b * cfg.batch_size:(b + 1) * cfg.batch_size], int(rng.integers(1 << 62)))
                for b in range(steps)]
        jobs = [j for j in jobs if len(j[0]) >= 2]  # batch norm needs two samples
        loss_sum, parts_sum, n = 0.0, {}, 0
        for b, (images, targets) in enumerate(_batches(train, jobs, cfg, pin=dev.type == "cuda")):
            images = [im.to(dev, non_blocking=True) for im in images]
            targets = [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in targets]
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            opt.step()
            sched.step()
            if ema is not None:
                _ema_update(ema, model, cfg.ema_decay, step=epoch * steps + b)
            loss_sum += loss.item()
            for k, v in losses.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v.item()
            n += 1
        row = {"epoch": epoch + 1, "loss": loss_sum / max(n, 1),
               **{k: round(v / max(n, 1), 4) for k, v in parts_sum.items()},
               "lr": opt.param_groups[0]["lr"]}
        improved = False
        if val is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            rep = _report(eval_model, val, classes, cfg)
            row.update({"val_map50_95": rep.map50_95, "val_map50": rep.map50, "val_mar100": rep.mar100})
            improved = rep.map50_95 > best
        elif val is None:
            improved = True  # nothing to select on: keep the latest
        if improved:
            best, best_epoch = row.get("val_map50_95", 0.0), epoch
            save_artifact(out / "best", eval_model, {"arch": cfg.arch}, dtype="float32")
        row.update({"seconds": round(time.time() - te, 1), "best": improved})
        with open(out / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {row['loss']:.4f}"
            + (f" val mAP {row['val_map50_95']:.4f} mAP50 {row['val_map50']:.4f}"
               if "val_map50" in row else "")
            + f" lr {row['lr']:.2e} ({row['seconds']}s)" + (" *" if improved else ""))
        seed = int(rng.integers(1 << 62))
        rng = np.random.default_rng(seed)  # the resumed run draws the same stream
        save_checkpoint(ckpt, model=model, opt=opt, sched=sched, ema=ema, rng_seed=seed,
                        epoch=epoch, best=best, best_epoch=best_epoch,
                        elapsed=earlier + time.time() - t0)
        epoch_seconds.append(time.time() - te)
        if out_of_time(cfg.max_minutes, t_session, epoch, cfg.epochs, log):
            break
        fit_to_time(cfg, sched, steps, t_session, epoch_seconds, log, done=epoch + 1)
        epoch += 1

    return finish_detector(out, cfg, classes, data, ds, best_epoch, earlier + time.time() - t0,
                           command=command, device=dev)


def init_weights(model: torch.nn.Module, spec: str) -> str:
    """Start from a trained detector folder (fine-tuning: every tensor whose name and shape
    match, so a new class list only re-initialises the class logits) or else from a
    classifier's encoder (:func:`init_backbone`). Returns a line for the log.

    Raises:
        ModelError: the folder is neither a fitting detector nor a fitting classifier.
    """
    from hemascope.models.artifact import init_from, read_config

    folder = Path(spec)
    if spec != "default" and (folder / "config.json").is_file() \
            and read_config(folder).get("task") == "detection":
        n = init_from(model, folder, task="detector", required="backbone.body.")
        return (f"weights: {n['copied']} tensors from the detector {folder}"
                + (f" ({n['kept']} left at their initialisation)" if n["kept"] else ""))
    return f"backbone: {init_backbone(model, spec)} tensors from the classifier {spec}"


def init_backbone(model: torch.nn.Module, spec: str) -> int:
    """Start the detector's ResNet from a trained classifier's encoder (in-domain pre-training).

    The classifier saw inputs standardised by its mean/std, the detector sees 0-1 pixels: the
    first convolution is divided by the std per input channel, and the constant the mean
    adds is absorbed by the batch norm that follows. Returns the number of tensors copied.

    Raises:
        ModelError: the classifier is not a ResNet whose tensors fit this backbone.
    """
    from safetensors.torch import load_file

    from hemascope.models.artifact import ModelError, read_config, resolve_model_dir

    path = resolve_model_dir(spec, "classifier")
    ccfg = read_config(path)
    state = load_file(str(path / "model.safetensors"))
    own = model.state_dict()
    take = {}
    for k, v in state.items():
        if k.startswith("encoder."):
            name = "backbone.body." + k[len("encoder."):]
            if name in own and own[name].shape == v.shape:
                take[name] = v.to(own[name].dtype)
    if "backbone.body.conv1.weight" not in take or len(take) < 20:
        raise ModelError(f"the encoder of {path} ({ccfg.get('arch')}) does not fit the backbone of "
                         "this detector")
    std = torch.tensor(ccfg.get("std", [1.0, 1.0, 1.0]), dtype=torch.float32)
    take["backbone.body.conv1.weight"] = take["backbone.body.conv1.weight"] / std.view(1, 3, 1, 1)
    model.load_state_dict(take, strict=False)
    return len(take)


def finish_detector(out: Path, cfg: DetectorTrainConfig, classes: list[str],
                    data: dict[str, FieldSet], ds: DetectionSet, best_epoch: int, wall: float, *,
                    command: str = "", device: torch.device | None = None) -> DetectorTrainResult:
    """Reload the best weights, tune counting thresholds on val, score test, write the artifact."""
    from safetensors.torch import load_file

    model = build_detector(cfg.arch, len(classes), min_size=cfg.test_size, max_size=cfg.max_size,
                           fpn_channels=cfg.fpn_channels)
    model.load_state_dict(load_file(str(out / "best" / "model.safetensors")))
    if cfg.weights_dtype == "float16":
        round_to_float16(model)
    model.eval()
    thresholds = None
    val_rep = test_rep = None
    if "val" in data:
        val_f = data["val"].fields
        val_pred = predict_fields(model, val_f, size=cfg.test_size, max_size=cfg.max_size)
        gts = [GroundTruth(f.boxes, f.labels) for f in val_f]
        thresholds = best_count_thresholds(gts, val_pred, classes)
        val_rep = detection_report(gts, val_pred, classes, count_thresholds=thresholds)
    if "test" in data:
        test_f = data["test"].fields
        test_rep = detection_report([GroundTruth(f.boxes, f.labels) for f in test_f],
                                    predict_fields(model, test_f, size=cfg.test_size,
                                                   max_size=cfg.max_size),
                                    classes, count_thresholds=thresholds)
    config = {
        "task": "detection", "arch": cfg.arch, "classes": classes,
        "vocabulary": cfg.vocabulary or None, "test_size": cfg.test_size, "max_size": cfg.max_size,
        "fpn_channels": cfg.fpn_channels, "input": "RGB float 0-1, no normalisation",
        "size_reference": size_reference(data["train"], cfg),
        "background": background_reference(f.image for f in data["train"].fields),
        "count_thresholds": thresholds or dict.fromkeys(classes, 0.5),
        "training": {"data": str(ds.image_root), "format": ds.format,
                     "n_images": {k: len(v.fields) for k, v in data.items()},
                     "command": command, "config": cfg.to_dict(), "best_epoch": best_epoch + 1,
                     "wall_time_s": round(wall, 1),
                     "device": describe(device, mixed=False)},
        "metrics": {"val": _brief(val_rep), "test": _brief(test_rep)},
    }
    save_artifact(out, model, config, dtype=cfg.weights_dtype)
    write_json(out / "metrics.json", test_rep.to_dict() if test_rep else {})
    return DetectorTrainResult(out, best_epoch + 1, val_rep, test_rep, wall)


def tune_inference(det, val: FieldSet, *, sizes: Sequence[int] = (288, 320, 352, 384, 416),
                   nms: Sequence[float] = (0.5, 0.6, 0.7)) -> dict:
    """Pick the working size and NMS threshold with the best **validation** mAP@.5:.95.

    Returns ``{"test_size", "nms_thresh", "count_thresholds", "val_map50_95", "grid"}``;
    the counting thresholds are re-tuned on val at the chosen setting.
    """
    from hemascope.detect.registry import set_nms

    gts = [GroundTruth(f.boxes, f.labels) for f in val.fields]
    grid, best, best_preds = [], None, None
    for size in sizes:
        for t in nms:
            set_nms(det.model, t)
            preds = predict_fields(det.model, val.fields, size=size, max_size=det.config["max_size"])
            m = detection_report(gts, preds, det.classes).map50_95
            grid.append({"test_size": size, "nms_thresh": t, "val_map50_95": m})
            if best is None or m > best["val_map50_95"]:
                best, best_preds = grid[-1], preds
    set_nms(det.model, best["nms_thresh"])
    return {**best, "count_thresholds": best_count_thresholds(gts, best_preds, det.classes),
            "grid": grid}


def size_reference(train: FieldSet, cfg: DetectorTrainConfig) -> dict | None:
    """Median working-scale size (sqrt of box area) of the most frequent class."""
    from hemascope.detect.predict import working_scale

    labels = np.concatenate([f.labels for f in train.fields])
    if not len(labels):
        return None
    k = int(np.bincount(labels).argmax())
    sizes = []
    for f in train.fields:
        s = working_scale(*f.image.shape[:2], {"test_size": cfg.test_size, "max_size": cfg.max_size})
        b = f.boxes[f.labels == k]
        sizes.extend(np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) * s)
    return {"class": train.classes[k - 1], "size": round(float(np.median(sizes)), 2)}


def _brief(rep: DetectionReport | None) -> dict | None:
    if rep is None:
        return None
    return {"map50_95": rep.map50_95, "map50": rep.map50, "map75": rep.map75, "mar100": rep.mar100,
            "per_class_ap50": {c: v["ap50"] for c, v in rep.per_class.items()},
            "count_mae": rep.count_mae, "n_images": rep.n_images}


def _report(model, val: FieldSet, classes, cfg: DetectorTrainConfig) -> DetectionReport:
    preds = predict_fields(model, val.fields, size=cfg.test_size, max_size=cfg.max_size)
    return detection_report([GroundTruth(f.boxes, f.labels) for f in val.fields], preds, classes)


class _Jobs(torch.utils.data.Dataset):
    """Batch ``k`` of an epoch: its field indices and its own augmentation seed."""

    def __init__(self, train, jobs, cfg: DetectorTrainConfig):
        self.train, self.jobs, self.cfg = train, jobs, cfg

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, k: int):
        idx, seed = self.jobs[k]
        return _batch(self.train, idx, np.random.default_rng(seed), self.cfg)


def _batches(train, jobs, cfg: DetectorTrainConfig, *, pin: bool = False):
    """The epoch's augmented batches, in order; ``cfg.workers`` processes prepare them ahead
    (``pin``: in page-locked memory, for a quick copy to the GPU)."""
    batches = _Jobs(train, jobs, cfg)
    if cfg.workers <= 0:
        return (batches[k] for k in range(len(batches)))
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                       num_workers=cfg.workers, prefetch_factor=4,
                                       pin_memory=pin)


def _batch(train, idx, rng: np.random.Generator, cfg: DetectorTrainConfig):
    images, targets = [], []
    for i in idx:
        f = train[i]
        img, b, lab = _stacked(f), f.boxes, f.labels
        if rng.random() < cfg.augment.mosaic_p and len(train) >= 4:
            others = rng.choice(len(train), 3, replace=False)
            img, b, lab = mosaic([(img, b, lab)] + [(_stacked(train[j]), train[j].boxes, train[j].labels)
                                                    for j in others], size=img.shape[:2])
        img, b, lab = augment_field(img, b, lab, rng=rng, cfg=cfg.augment)
        images.append(as_float_image(np.ascontiguousarray(img[..., :3])))
        t = {"boxes": torch.from_numpy(np.asarray(b, np.float32).reshape(-1, 4)),
             "labels": torch.from_numpy(np.asarray(lab, np.int64))}
        if f.masks is not None:
            t["masks"] = torch.from_numpy(np.ascontiguousarray(img[..., 3:].transpose(2, 0, 1)))
        targets.append(t)
    return images, targets


def _stacked(f) -> np.ndarray:
    """The image with its instance masks as extra channels (masks follow the geometry)."""
    if f.masks is None:
        return f.image
    from hemascope.detect.masks import render_masks

    return np.concatenate([f.image, render_masks(f.masks, f.boxes, *f.image.shape[:2])], 2)
