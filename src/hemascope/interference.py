"""Interference factors of smear photographs, as named, parameterised transforms.

The nine factors of the leukocyte-detection study (Li et al., Sci Rep 2023) are used to
augment training fields and to build perturbed copies of a test set (robustness per
factor). Each takes an RGB uint8 field, its boxes (``(N, 4)`` xyxy, may be empty), a
``severity`` in ``(0, 1]`` and a numpy ``Generator``; returns a new image and boxes (only
``overlapping_cells`` adds boxes). Inputs are never modified.

:func:`smear_study_augment` is the RV-PBS study's per-image 11-way on/off vector.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Transform = Callable[..., tuple[np.ndarray, np.ndarray]]
_REGISTRY: dict[str, Transform] = {}


def _register(name: str):
    def wrap(fn: Transform) -> Transform:
        if name in _REGISTRY:
            raise ValueError(f"interference {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn
    return wrap


def interference_names() -> list[str]:
    return list(_REGISTRY)


def apply_interference(image: np.ndarray, name: str, *, boxes: np.ndarray | None = None,
                       severity: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Apply the factor ``name`` (see :func:`interference_names`)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown interference {name!r}; choose from {', '.join(_REGISTRY)}")
    if not 0 < severity <= 1:
        raise ValueError("severity must lie in (0, 1]")
    b = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, float).reshape(-1, 4)
    return _REGISTRY[name](np.asarray(image, np.uint8), b, severity=severity,
                           rng=np.random.default_rng(seed))


def _cv2():
    import cv2

    return cv2


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


@_register("colour_cast")
def colour_cast(img, boxes, *, severity, rng):
    """A random tint of the whole field (white balance gone wrong)."""
    tint = rng.normal(0, 1, 3)
    tint = tint / (np.abs(tint).max() + 1e-9) * 40 * severity
    return _clip(img.astype(float) + tint), boxes


@_register("low_illumination")
def low_illumination(img, boxes, *, severity, rng):
    """Dimmer lamp: gamma > 1 and lower gain."""
    x = img.astype(float) / 255
    return _clip(255 * (1 - 0.5 * severity) * x ** (1 + severity)), boxes


@_register("defocus")
def defocus(img, boxes, *, severity, rng):
    """Out-of-focus blur (Gaussian, sigma up to ~1 % of the field)."""
    sigma = max(0.5, severity * 0.01 * max(img.shape[:2]))
    return _cv2().GaussianBlur(img, (0, 0), sigma), boxes


def _blobs(img, n, radius, colour, rng, *, soft=True):
    h, w = img.shape[:2]
    out = img.astype(float)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = radius * rng.uniform(0.6, 1.4)
        d = np.hypot(yy - cy, xx - cx) / r
        a = np.clip(1.2 - d, 0, 1) if soft else (d <= 1).astype(float)
        out = out * (1 - a[..., None]) + np.asarray(colour, float) * a[..., None]
    return _clip(out)


@_register("stain_debris")
def stain_debris(img, boxes, *, severity, rng):
    """Dark stain precipitate and impurities: many small specks."""
    n = int(20 + 200 * severity)
    return _blobs(img, n, 0.004 * max(img.shape[:2]), (70, 40, 90), rng), boxes


@_register("giant_platelets")
def giant_platelets(img, boxes, *, severity, rng):
    """Platelet-coloured blobs as large as small white cells (confusers)."""
    n = int(1 + 5 * severity)
    return _blobs(img, n, 0.035 * max(img.shape[:2]), (150, 100, 175), rng), boxes


@_register("overlapping_cells")
def overlapping_cells(img, boxes, *, severity, rng):
    """Copy-paste annotated cells so that they overlap others; the pasted boxes are added."""
    out, new, _ = paste_cells(img, boxes, severity=severity, rng=rng)
    return out, np.concatenate([boxes, new])


def paste_cells(img: np.ndarray, boxes: np.ndarray, *, severity: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy annotated cells onto other cells (copy-paste augmentation).

    Returns the new image, the pasted boxes ``(M, 4)`` and, for each, the index of the box
    it was copied from (so callers can carry labels over).
    """
    out = img.copy()
    if not len(boxes):
        return out, np.zeros((0, 4)), np.zeros(0, np.int64)
    h, w = img.shape[:2]
    new, src = [], []
    for _ in range(max(1, int(round(severity * min(len(boxes), 4))))):
        i = int(rng.integers(len(boxes)))
        x0, y0, x1, y1 = boxes[i].astype(int)
        crop = img[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        ch, cw = crop.shape[:2]
        if ch < 2 or cw < 2 or ch >= h or cw >= w:
            continue
        tx0, ty0, tx1, ty1 = boxes[rng.integers(len(boxes))]  # overlap another cell
        px = int(np.clip(rng.uniform(tx0 - cw / 2, tx1 - cw / 2), 0, w - cw))
        py = int(np.clip(rng.uniform(ty0 - ch / 2, ty1 - ch / 2), 0, h - ch))
        out[py:py + ch, px:px + cw] = crop
        new.append([px, py, px + cw, py + ch])
        src.append(i)
    return out, np.array(new, float).reshape(-1, 4), np.array(src, np.int64)


@_register("degenerated_cells")
def degenerated_cells(img, boxes, *, severity, rng):
    """Smudged, faded cells: blur and wash out the inside of annotated boxes."""
    out = img.copy()
    cv2 = _cv2()
    h, w = img.shape[:2]
    for x0, y0, x1, y1 in boxes.astype(int):
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 3 or rng.random() > 0.3 + 0.7 * severity:
            continue
        patch = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), 1 + 3 * severity)
        out[y0:y1, x0:x1] = _clip(patch * (1 - 0.4 * severity) + 255 * 0.4 * severity)
    return out, boxes


def _stain_shift(img, towards, severity):
    x = img.astype(float)
    dark = 1 - x.mean(2, keepdims=True) / 255  # stained pixels move most
    return _clip(x + np.asarray(towards, float) * severity * 60 * dark)


@_register("ph_high")
def ph_high(img, boxes, *, severity, rng):
    """Buffer too alkaline: everything bluer, red cells grey-blue."""
    return _stain_shift(img, (-1.0, -0.3, 0.8), severity), boxes


@_register("ph_low")
def ph_low(img, boxes, *, severity, rng):
    """Buffer too acidic: everything redder, nuclei pale."""
    return _stain_shift(img, (0.9, -0.4, -0.6), severity), boxes


#: The smear study's augmentation switches, in order.
SMEAR_STUDY_SWITCHES = ("random_background", "zoom", "hflip", "vflip", "warm", "cool", "blur",
                        "brightness", "contrast", "rotation", "noise")


def smear_study_augment(image: np.ndarray, *, rng: np.random.Generator,
                        vector: np.ndarray | None = None, p: float = 0.5
                        ) -> tuple[np.ndarray, np.ndarray]:
    """One image through the 11-way on/off vector (drawn with probability ``p`` each).

    Returns the augmented image and the 0/1 vector used (order: :data:`SMEAR_STUDY_SWITCHES`).
    """
    cv2 = _cv2()
    v = (rng.random(len(SMEAR_STUDY_SWITCHES)) < p).astype(int) if vector is None else np.asarray(vector)
    if len(v) != len(SMEAR_STUDY_SWITCHES):
        raise ValueError(f"vector must have {len(SMEAR_STUDY_SWITCHES)} entries")
    x = np.asarray(image, np.uint8).copy()
    h, w = x.shape[:2]
    on = dict(zip(SMEAR_STUDY_SWITCHES, v.astype(bool)))
    if on["random_background"]:  # replace near-white background with a random pale colour
        bg = x.min(2) > 200
        x[bg] = rng.integers(200, 256, 3)
    if on["zoom"]:
        s = rng.uniform(0.5, 1.0)
        ch, cw = max(2, int(h * s)), max(2, int(w * s))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        x = cv2.resize(x[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if on["hflip"]:
        x = x[:, ::-1]
    if on["vflip"]:
        x = x[::-1]
    xf = x.astype(float)
    if on["warm"]:
        xf = xf + [12, 4, -12]
    if on["cool"]:
        xf = xf + [-12, 0, 12]
    x = _clip(xf)
    if on["blur"]:
        for _ in range(int(rng.integers(1, 4))):  # repeated blur: defocus
            x = cv2.GaussianBlur(x, (0, 0), 1.0)
    if on["brightness"]:
        x = _clip(x.astype(float) * rng.uniform(0.75, 1.25))
    if on["contrast"]:
        m = x.mean()
        x = _clip((x.astype(float) - m) * rng.uniform(0.7, 1.3) + m)
    if on["rotation"]:
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(0, 360), 1.0)
        x = cv2.warpAffine(np.ascontiguousarray(x), rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    if on["noise"]:
        x = _clip(x.astype(float) + rng.normal(0, 6, x.shape))
    return np.ascontiguousarray(x), v
