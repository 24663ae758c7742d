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
        if not isinstance(d, dict) or d.get("method") not in METHODS:
            raise HemascopeError(f"not a stain reference (method must be one of {METHODS}): {d!r:.80}")
        try:
            return cls(method=d["method"],
                       mean=tuple(d["mean"]) if d.get("mean") is not None else None,
                       std=tuple(d["std"]) if d.get("std") is not None else None,
                       vectors=tuple(tuple(r) for r in d["vectors"]) if d.get("vectors") else None,
                       max_concentration=tuple(d["max_concentration"])
                       if d.get("max_concentration") else None,
                       mask=d.get("mask", "auto"), n_images=int(d.get("n_images", 0)))
        except (TypeError, ValueError, KeyError) as e:
            raise HemascopeError(f"malformed stain reference: {e}") from None


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
    x = _as_float01(arr)
    if reference.method == "reinhard":
        lab = rgb_to_lab(x)
        m = mask if mask is not None else (_rh.foreground_mask(lab) if reference.mask == "auto" else None)
        mean, std = _rh.lab_stats(lab, m)
        out = _rh.reinhard_transfer(x, src_mean=mean, src_std=std,
                                    ref_mean=np.array(reference.mean), ref_std=np.array(reference.std))
    else:
        out = _mac.macenko_transfer(x * 255, ref_vectors=np.array(reference.vectors),
                                    ref_max=np.array(reference.max_concentration)) / 255
    return _restore(out, arr)


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
