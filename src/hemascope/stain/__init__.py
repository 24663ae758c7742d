"""Colour / stain standardisation: fit a reference style, map any image onto it.

>>> ref = fit_reference([img_a, img_b], method="reinhard")     # doctest: +SKIP
>>> out = standardize(img, reference=ref)                      # same shape and dtype

Methods: ``reinhard`` (Lab mean/std transfer, Reinhard 2001; statistics over the stained
foreground by default) and ``macenko`` (stain-vector normalisation, Macenko 2009). A
reference is a small JSON-serialisable record that travels inside model artifacts
(``config["stain_reference"]``) so inference standardises exactly as training did.
Inputs are never modified; ``uint8`` in gives ``uint8`` out, float in ``[0, 1]`` gives float.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from hemascope.errors import HemascopeError
from hemascope.stain import macenko as _mac
from hemascope.stain import reinhard as _rh
from hemascope.stain.lab import rgb_to_lab

METHODS = ("reinhard", "macenko")
MASKS = ("auto", "none")
#: An image whose Lab channels all vary less than this is flat: left as it is.
FLAT_LAB_STD = 1.0
#: Larger images are standardised in blocks of rows (bounded memory), statistics from a
#: strided sample of their pixels.
BLOCK_PIXELS = 4_000_000


@dataclass(frozen=True)
class StainReference:
    """A fitted colour style.

    Attributes:
        method: ``reinhard`` or ``macenko``.
        mean, std: Lab channel statistics (Reinhard).
        vectors: ``3 x 2`` stain vectors as nested lists (Macenko).
        max_concentration: 99th percentile per stain (Macenko).
        mask: ``auto`` (foreground statistics) or ``none``.
        n_images: how many images it was fitted on.
    """

    method: str
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    vectors: tuple[tuple[float, float], ...] | None = None
    max_concentration: tuple[float, float] | None = None
    mask: str = "auto"
    n_images: int = 0

    def to_dict(self) -> dict:
        return {k: (list(map(list, v)) if k == "vectors" and v is not None else
                    list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "StainReference":
        """Raises :class:`HemascopeError` on anything a transform could not use safely."""
        if not isinstance(d, dict) or d.get("method") not in METHODS:
            raise HemascopeError(f"not a stain reference (method must be one of {METHODS}): {d!r:.80}")
        try:
            ref = cls(method=d["method"],
                      mean=_numbers(d, "mean", 3) if d["method"] == "reinhard" else None,
                      std=_numbers(d, "std", 3, positive=True) if d["method"] == "reinhard" else None,
                      vectors=tuple(tuple(r) for r in np.reshape(_numbers(d, "vectors", 6, shape=(3, 2)), (3, 2)).tolist())
                      if d["method"] == "macenko" else None,
                      max_concentration=_numbers(d, "max_concentration", 2, positive=True)
                      if d["method"] == "macenko" else None,
                      mask=d.get("mask", "auto"), n_images=int(d.get("n_images", 0)))
        except (TypeError, ValueError, KeyError) as e:
            raise HemascopeError(f"malformed stain reference: {e}") from None
        if ref.mask not in MASKS:
            raise HemascopeError(f"malformed stain reference: mask must be one of {MASKS}, not {ref.mask!r}")
        return ref


def _numbers(d: dict, key: str, n: int, *, positive: bool = False,
             shape: tuple[int, ...] | None = None) -> tuple:
    """``d[key]`` as ``n`` finite floats (nested to ``shape``), else ``ValueError``."""
    if d.get(key) is None:
        raise ValueError(f"{key!r} is missing")
    try:
        a = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{key!r} must hold numbers, not {d[key]!r:.60}") from None
    if a.shape != (shape or (n,)) or not np.isfinite(a).all() or (positive and (a <= 0).any()):
        raise ValueError(f"{key!r} must be {n} finite{' positive' if positive else ''} numbers"
                         f"{f' shaped {shape}' if shape else ''}, not {d[key]!r:.60}")
    return tuple(map(float, a.reshape(-1)))


def _as_float01(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {a.shape}")
    return a.astype(np.float64) / 255 if a.dtype == np.uint8 else a.astype(np.float64)


def _restore(out01: np.ndarray, like: np.ndarray) -> np.ndarray:
    if np.asarray(like).dtype == np.uint8:
        return np.clip(out01 * 255 + 0.5, 0, 255).astype(np.uint8)
    return out01.astype(np.asarray(like).dtype)


def fit_reference(images: Iterable[np.ndarray], *, method: str = "reinhard",
                  mask: str = "auto") -> StainReference:
    """Fit a style from one or more RGB images (pooled statistics).

    Raises:
        HemascopeError: unknown method or mask, no images, or (Macenko) no stained pixels.
    """
    if method not in METHODS:
        raise HemascopeError(f"unknown stain method {method!r}; choose from {METHODS}")
    if mask not in MASKS:
        raise HemascopeError(f"unknown mask {mask!r}; choose from {MASKS}")
    imgs = [_as_float01(i) for i in images]
    if not imgs:
        raise HemascopeError("fit_reference needs at least one image")
    if method == "reinhard":
        labs = [rgb_to_lab(i) for i in imgs]
        px = np.concatenate([lab[_rh.foreground_mask(lab)] if mask == "auto" and
                             _rh.foreground_mask(lab).sum() >= 16 else lab.reshape(-1, 3)
                             for lab in labs])
        if px.std(0).max() < FLAT_LAB_STD:
            raise HemascopeError("the reference images are flat (one colour, no stained cell): "
                                 "fit the reference on images of stained cells")
        return StainReference("reinhard", tuple(map(float, px.mean(0))), tuple(map(float, px.std(0))),
                              mask=mask, n_images=len(imgs))
    stacked = np.concatenate([i.reshape(-1, 3) for i in imgs])[None] * 255
    vs = _mac.stain_vectors(stacked)
    if vs is None:
        raise HemascopeError("no stained pixels found: cannot fit a Macenko reference")
    cmax = np.percentile(_mac.concentrations(stacked, vs), 99, axis=1)
    return StainReference("macenko", vectors=tuple(tuple(map(float, r)) for r in vs),
                          max_concentration=tuple(map(float, cmax)), mask=mask, n_images=len(imgs))


def standardize(image: np.ndarray, *, reference: StainReference,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Map ``(H, W, 3)`` or ``(N, H, W, 3)`` images onto ``reference``; shape/dtype kept.

    Args:
        mask: optional boolean foreground mask ``(H, W)`` (or ``(N, H, W)``) for the source
            statistics; by default the reference's rule (``auto``: pixels with L* < 88).
    """
    arr = np.asarray(image)
    if arr.ndim == 4:
        return np.stack([standardize(a, reference=reference,
                                     mask=None if mask is None else mask[i])
                         for i, a in enumerate(arr)])
    if reference.method == "reinhard":
        return _reinhard(arr, reference, mask)
    h, w = arr.shape[:2]
    if h * w > 4 * BLOCK_PIXELS:
        raise HemascopeError(f"image of {h}x{w} px is too large for Macenko standardisation "
                             "(its stain vectors need every pixel at once): downscale or crop it, "
                             "or use the Reinhard method")
    x = _as_float01(arr)
    if rgb_to_lab(x[::4, ::4]).reshape(-1, 3).std(0).max() < FLAT_LAB_STD:
        return arr.copy()  # flat: nothing to standardise
    out = _mac.macenko_transfer(x * 255, ref_vectors=np.array(reference.vectors),
                                ref_max=np.array(reference.max_concentration)) / 255
    return _restore(out, arr)


def _reinhard(arr: np.ndarray, reference: StainReference, mask: np.ndarray | None) -> np.ndarray:
    h, w = arr.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / BLOCK_PIXELS))))  # statistics on <= BLOCK_PIXELS
    lab = rgb_to_lab(_as_float01(arr[::step, ::step]))
    if mask is not None:
        m = np.asarray(mask, bool)[::step, ::step]
    else:
        m = _rh.foreground_mask(lab) if reference.mask == "auto" else None
    if lab.reshape(-1, 3).std(0).max() < FLAT_LAB_STD:
        return arr.copy()  # a flat image (blank field): nothing to standardise
    mean, std = _rh.lab_stats(lab, m)
    out = np.empty_like(arr)
    rows = max(1, BLOCK_PIXELS // max(w, 1))
    for t in range(0, h, rows):
        block = arr[t:t + rows]
        moved = _rh.reinhard_transfer(_as_float01(block), src_mean=mean, src_std=std,
                                      ref_mean=np.array(reference.mean), ref_std=np.array(reference.std))
        out[t:t + rows] = _restore(moved, block)
    return out


def save_reference(path: str | Path, reference: StainReference) -> Path:
    from hemascope.io.atomic import write_json

    return write_json(path, {"format": "hemascope-stain/1", **reference.to_dict()})


def load_reference(path: str | Path) -> StainReference:
    from hemascope.io.atomic import note_input

    p = Path(path)
    note_input(p)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HemascopeError(f"cannot read stain reference {p}: {e}") from None
    if not isinstance(d, dict) or d.get("format") != "hemascope-stain/1":
        raise HemascopeError(f"{p} is not a hemascope stain reference")
    return StainReference.from_dict(d)


__all__ = ["METHODS", "StainReference", "fit_reference", "load_reference", "save_reference",
           "standardize"]
