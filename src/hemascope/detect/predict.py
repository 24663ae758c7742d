"""Running a detector artifact on smear fields of any size.

Every field is first white-balanced: its background is brought to the colour of the
training fields' (:mod:`hemascope.stain.background`; lamp, camera and, in part, stain
tint). It is resized to the model's working scale (the scale it was trained at, stored in
its config), cut into overlapping tiles when the resized field is large (bounded memory),
and the boxes are mapped back to the field's own pixels.

``scale="auto"`` (the default) makes the detector robust to scanners and magnifications
it has not seen: after a first pass, the median size of the most frequent training class
(red cells on smears) is compared with its size in training; when it is off by more than
30 %, or too few of them are found (a large field shrunk until its cells vanish), the
scale is corrected step by step on a window of the field, and the field is run again at
the first scale where the sizes agree. If none is found the first pass stands. Then the
field's stretch is undone: red cells are round, so when their boxes come out clearly wider
than tall (or taller than wide), as in exports resized to a square, the field is re-run
widened (or narrowed) by the stretch its gradients show (:func:`_unstretch`). :func:`predict_ensemble`
runs several detectors and/or mirror views of the field and fuses their boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hemascope.detect.ensemble import FUSIONS, Detections
from hemascope.detect.tiling import merge_tiles, tile_grid
from hemascope.models.artifact import (LoadedModel, ModelError, load_weights, read_config,
                                       resolve_model_dir)
from hemascope.train.device import module_device

#: Largest working-scale side run in one pass; larger fields are tiled.
MAX_SINGLE_PASS = 1024
TILE, OVERLAP = 640, 192
#: ``scale="auto"``: sizes within this factor of training agree; at most this many probes
#: search for such a scale, each step at most x4 (x3 when too few cells are seen), within
#: these absolute bounds.
SIZE_TOLERANCE, MAX_PROBES, MAX_STEP, ZOOM_STEP = 1.3, 5, 4.0, 3.0
SCALE_RANGE = (0.01, 4.0)
#: ``scale="auto"`` also undoes a stretch (:func:`_unstretch`): a field counts as stretched
#: when its reference cells' median width / height is off 1 by more than ASPECT_TOLERANCE
#: (and twice its standard error), or its gradients say it is by more than
#: GRADIENT_TOLERANCE and the boxes lean the same way; the widening stays in ASPECT_RANGE.
#: The gradients follow a stretch ASPECT_GAIN of the way (log slope; blurred cell edges
#: do not scale fully): `python benchmarks/detector_stretch_gain.py` (CBC val fields
#: squeezed to 0.75; the red-cell boxes follow it 0.35 of the way).
ASPECT_TOLERANCE, GRADIENT_TOLERANCE, ASPECT_RANGE, ASPECT_GAIN = 1.05, 1.1, (0.5, 2.0), 0.8


#: A detector ready for inference: ``model``, ``config``, ``path``, ``classes``.
LoadedDetector = LoadedModel


def load_detector(spec: str | Path | None = "default") -> LoadedDetector:
    """Load a detector folder (or the shipped default) in eval mode.

    Raises:
        ModelError: missing files, a config that is not a detector's, or mismatched weights.
    """
    from hemascope.detect.registry import build_detector

    path = resolve_model_dir(spec, "detector")
    cfg = read_config(path)
    if cfg.get("task") != "detection":
        raise ModelError(f"{path} holds a {cfg.get('task', 'unknown')} model, not a detector")
    missing = [k for k in ("arch", "classes", "test_size", "max_size") if k not in cfg]
    if missing:
        raise ModelError(f"{path / 'config.json'} lacks {', '.join(missing)}")
    try:
        model = build_detector(cfg["arch"], len(cfg["classes"]), min_size=cfg["test_size"],
                               max_size=cfg["max_size"], fpn_channels=cfg.get("fpn_channels", 128),
                               nms_thresh=cfg.get("nms_thresh", 0.5))
    except KeyError as e:
        raise ModelError(f"{path}: {e.args[0]}") from None
    load_weights(model, path, cfg)
    return LoadedDetector(model.eval(), cfg, path)


def working_scale(height: int, width: int, config: dict[str, Any]) -> float:
    """The resize factor the model was trained with for a field of this size."""
    return min(config["test_size"] / min(height, width), config["max_size"] / max(height, width))


@torch.no_grad()
def detect_field(det: LoadedDetector, image: np.ndarray, *, scale: float | str = "auto",
                 score_thresh: float | None = None, balance: bool = True) -> Detections:
    """Boxes, scores and labels (``1..C``) for one RGB uint8 field, in its own pixels.

    Args:
        scale: ``"auto"`` (see module doc), ``None`` for the training scale, or a factor
            from field pixels to working pixels.
        score_thresh: drop boxes below this score (default: the model's own, 0.05).
        balance: white-balance the field's background onto the training fields' first
            (:mod:`hemascope.stain.background`; models whose config has a ``background``).
    """
    image = balanced(det, image, balance)
    h, w = image.shape[:2]
    base = working_scale(h, w, det.config)
    s = base if scale in (None, "auto") else float(scale)
    if s <= 0:
        raise ValueError("scale must be positive")
    out = _auto_scale(det.model, image, s, det.config) if scale == "auto" else _run(det.model, image, s)
    if score_thresh is not None:
        keep = out.scores >= score_thresh
        out = Detections(out.boxes[keep], out.scores[keep], out.labels[keep])
    return out


def balanced(det: LoadedDetector, image: np.ndarray, balance: bool = True) -> np.ndarray:
    """The field white-balanced onto the detector's training fields' background
    (:mod:`hemascope.stain.background`), or as it is when ``balance`` is off or the model
    records no background."""
    if not balance or not det.config.get("background"):
        return image
    from hemascope.stain.background import balance_background

    return balance_background(image, det.config["background"])


def counted(det: LoadedDetector, d: Detections, *, at_least: float = 0.0) -> Detections:
    """The boxes that count: at or above the model's per-class counting threshold (tuned
    on validation, ``config["count_thresholds"]``; 0.5 where it has none) and ``at_least``."""
    thr = det.config.get("count_thresholds") or {}
    cut = np.array([max(at_least, thr.get(det.classes[int(lab) - 1], 0.5)) for lab in d.labels])
    keep = d.scores >= cut if len(d) else np.zeros(0, bool)
    return Detections(d.boxes[keep], d.scores[keep], d.labels[keep])


def detect_fields(det: LoadedDetector, images: Sequence[np.ndarray], **kw) -> list[Detections]:
    return [detect_field(det, im, **kw) for im in images]


def predict_ensemble(models: Sequence[LoadedDetector], image: np.ndarray, *,
                     fusion: str = "wbf", iou: float = 0.55, scale: float | str = "auto",
                     views: int = 1, balance: bool = True, box_offsets: bool = True) -> Detections:
    """One field through every model (and ``views`` mirror views of it, test-time
    augmentation: :mod:`hemascope.detect.tta`), boxes fused with ``fusion`` (wbf, vote or
    nms: :mod:`hemascope.detect.ensemble`); each view of each model is one member. Each
    model's box-edge offsets (:mod:`hemascope.detect.calibrate`) apply unless ``box_offsets``
    is off.

    Raises:
        ValueError: an unknown fusion, or views not one of 1, 2, 4, 8 (:mod:`hemascope.detect.tta`).
    """
    from hemascope.detect.tta import detect_views

    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
    preds = [p for m in models
             for p in detect_views(m, image, views=views, scale=scale, balance=balance,
                                   box_offsets=box_offsets)]
    if len(preds) == 1:
        return preds[0]
    return FUSIONS[fusion](preds, iou=iou)


def _size_ratio(d: Detections, s: float, config: dict[str, Any]) -> float | None:
    """Training size / seen size of the reference class (working pixels), or ``None``
    when the config has no reference or fewer than 5 confident ones were found."""
    ref = config.get("size_reference")
    if not ref or ref.get("class") not in config["classes"]:
        return None
    k = config["classes"].index(ref["class"]) + 1
    sel = (d.labels == k) & (d.scores >= 0.5)
    if sel.sum() < 5:
        return None
    b = d.boxes[sel]
    seen = float(np.median(np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))) * s
    return ref["size"] / seen


def _agrees(ratio: float | None) -> bool:
    return ratio is not None and 1 / SIZE_TOLERANCE <= ratio <= SIZE_TOLERANCE


def _auto_scale(model: torch.nn.Module, image: np.ndarray, s: float,
                config: dict[str, Any]) -> Detections:
    """Detections at the first scale, from ``s`` on, where the reference class has its
    training size, then with the field's stretch undone (see the module doc)."""
    first = _run(model, image, s)
    if not config.get("size_reference"):
        return first
    found, s = _size_search(model, image, first, s, config)
    return _unstretch(model, image, found, s, config)


def _size_search(model: torch.nn.Module, image: np.ndarray, first: Detections, s: float,
                 config: dict[str, Any]) -> tuple[Detections, float]:
    ratio = _size_ratio(first, s, config)
    if _agrees(ratio):
        return first, s
    base = s
    for _ in range(MAX_PROBES):
        step = ZOOM_STEP if ratio is None else float(np.clip(ratio, 1 / MAX_STEP, MAX_STEP))
        s *= step
        if not SCALE_RANGE[0] <= s <= SCALE_RANGE[1]:
            break
        window = _centre_window(image, s)
        probe = _run(model, window, s)
        ratio = _size_ratio(probe, s, config)
        if _agrees(ratio):
            return (probe if window.shape == image.shape else _run(model, image, s)), s
    return first, base


def _log_aspect(d: Detections, shape: tuple[int, ...],
                config: dict[str, Any]) -> tuple[float, float] | None:
    """Median log(width / height) of the confident reference boxes that lie wholly inside
    a field of ``shape``, and its standard error; ``None`` when fewer than 5 are found."""
    k = config["classes"].index(config["size_reference"]["class"]) + 1
    h, w = shape[:2]
    b = d.boxes[(d.labels == k) & (d.scores >= 0.5)]
    b = b[(b[:, 0] > 1) & (b[:, 1] > 1) & (b[:, 2] < w - 1) & (b[:, 3] < h - 1)]
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    if len(b) < 5:
        return None
    logs = np.log((b[:, 2] - b[:, 0]) / (b[:, 3] - b[:, 1]))
    return float(np.median(logs)), 1.25 * float(logs.std()) / len(logs) ** 0.5


def _stretched(m: tuple[float, float] | None, gradient: float) -> bool:
    """Whether a field looks stretched: its reference boxes (``m``, see :func:`_log_aspect`)
    are clearly not square, or its gradients (log, :func:`gradient_aspect`) say so and the
    boxes lean the same way."""
    if m is None or abs(gradient) < np.log(1.02):
        return False
    by_boxes = abs(m[0]) > np.log(ASPECT_TOLERANCE) and abs(m[0]) > 2 * m[1]
    by_gradients = (abs(gradient) > np.log(GRADIENT_TOLERANCE) and abs(m[0]) > m[1]
                    and np.sign(m[0]) == np.sign(gradient))
    return by_boxes or by_gradients


def gradient_aspect(image: np.ndarray, s: float = 1.0) -> float:
    """How much wider than tall the content of a field looks, from its gradients.

    The field (at scale ``s``, lightly blurred) has gradient energy ``E[gx^2]`` across and
    ``E[gy^2]`` down; content with no preferred direction (cells lying every which way)
    has them equal, and stretching smooth content ``a`` times along x divides ``E[gx^2]``
    by ``a^2`` (sharp edges less: their blurred profile keeps its width). Returns
    ``sqrt(E[gy^2] / E[gx^2])`` (1.0 for a flat field).
    """
    import cv2

    green = image[..., 1] if image.ndim == 3 else image
    if s != 1.0:
        h, w = green.shape
        green = cv2.resize(green, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    g = cv2.GaussianBlur(green.astype(np.float32), (0, 0), 1.5)
    ex = float(np.square(cv2.Sobel(g, cv2.CV_32F, 1, 0)).mean())
    ey = float(np.square(cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean())
    return float(np.sqrt(ey / ex)) if ex > 1e-6 and ey > 1e-6 else 1.0


def _unstretch(model: torch.nn.Module, image: np.ndarray, found: Detections, s: float,
               config: dict[str, Any]) -> Detections:
    """``found`` (the field at scale ``s``), or the field re-run widened or narrowed so
    that its content has no preferred direction (:func:`gradient_aspect`) when it looks
    stretched (:func:`_stretched`): a field resized to a square by an export, a camera
    with non-square pixels. The widening comes from the gradients, not the boxes, since
    the detector's boxes follow a stretch only in part."""
    m = _log_aspect(found, image.shape, config)
    gradient = float(np.log(gradient_aspect(image, s)))
    if not _stretched(m, gradient):
        return found
    return _run(model, image, s, float(np.clip(np.exp(-gradient / ASPECT_GAIN), *ASPECT_RANGE)))


def _centre_window(image: np.ndarray, s: float) -> np.ndarray:
    """The centre of ``image`` that is one pass (``MAX_SINGLE_PASS``) at scale ``s``."""
    h, w = image.shape[:2]
    side = int(np.ceil(MAX_SINGLE_PASS / s))
    t, l = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[t:t + side, l:l + side]


def _run(model: torch.nn.Module, image: np.ndarray, s: float, aspect: float = 1.0) -> Detections:
    """One field at scale ``s``, widened ``aspect`` times relative to its height (the
    geometric mean of both axes' factors stays ``s``)."""
    import cv2

    h, w = image.shape[:2]
    sx, sy = s * aspect ** 0.5, s / aspect ** 0.5
    th, tw = max(1, round(h * sy)), max(1, round(w * sx))
    small = image if (th, tw) == (h, w) else cv2.resize(
        image, (tw, th), interpolation=cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_LINEAR)
    if max(th, tw) <= MAX_SINGLE_PASS:
        tiles = [(0, 0, tw, th)]
    else:
        tiles = tile_grid(th, tw, tile=TILE, overlap=OVERLAP)
    parts = [_forward(model, np.ascontiguousarray(small[y0:y1, x0:x1])) for x0, y0, x1, y1 in tiles]
    merged = parts[0] if len(tiles) == 1 else merge_tiles(parts, tiles, height=th, width=tw)
    sx, sy = w / tw, h / th
    boxes = merged.boxes * np.array([sx, sy, sx, sy]) if len(merged) else merged.boxes
    return Detections(np.asarray(boxes, float).reshape(-1, 4), merged.scores, merged.labels)


#: Smaller tiles are padded (bottom / right) to this size: the coarsest pyramid level
#: (stride 128) must keep more than one value per normalisation group.
MIN_SIDE = 160


def _forward(model: torch.nn.Module, tile: np.ndarray) -> Detections:
    from hemascope.detect.registry import as_float_image

    h, w = tile.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        fill = np.median(tile.reshape(-1, 3), axis=0).astype(np.uint8)
        padded = np.empty((max(h, MIN_SIDE), max(w, MIN_SIDE), 3), np.uint8)
        padded[:] = fill
        padded[:h, :w] = tile
        tile = padded
    t = model.transform
    old = (t.min_size, t.max_size)
    t.min_size, t.max_size = (min(tile.shape[:2]),), max(tile.shape[:2])  # already at scale
    try:
        out = model([as_float_image(tile).to(module_device(model))])[0]
    finally:
        t.min_size, t.max_size = old
    out = {k: v.cpu() for k, v in out.items()}
    boxes = out["boxes"].numpy().astype(float)
    boxes = np.minimum(boxes, [w, h, w, h])
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    return Detections(boxes[keep], out["scores"].numpy().astype(float)[keep],
                      out["labels"].numpy().astype(np.int64)[keep])
