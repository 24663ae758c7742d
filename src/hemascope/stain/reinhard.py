"""Reinhard colour transfer (Reinhard et al., IEEE CG&A 2001) in CIELAB.

Each Lab channel of an image is shifted and scaled so its mean and standard deviation
match a reference style. Statistics can be restricted to the stained foreground so the
white slide background does not dominate them (the cross-lab study's standardisation).
"""

from __future__ import annotations

import numpy as np

from hemascope.stain.lab import lab_to_rgb, rgb_to_lab

#: Pixels lighter than this L* count as background for ``mask="auto"``.
BACKGROUND_L = 88.0
_MIN_STD = 1e-3


def foreground_mask(lab: np.ndarray, *, background_l: float = BACKGROUND_L) -> np.ndarray:
    """Boolean mask of stained pixels (L* below ``background_l``), ``lab`` shaped ``(..., 3)``."""
    return lab[..., 0] < background_l


def lab_stats(lab: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of Lab pixels (``mask`` selects them; too few -> all)."""
    px = lab.reshape(-1, 3)
    if mask is not None:
        m = np.asarray(mask, bool).reshape(-1)
        if m.sum() >= 16:  # a near-empty mask would give meaningless statistics
            px = px[m]
    return px.mean(0), px.std(0)


def reinhard_transfer(rgb01: np.ndarray, *, src_mean: np.ndarray, src_std: np.ndarray,
                      ref_mean: np.ndarray, ref_std: np.ndarray) -> np.ndarray:
    """Map float RGB ``(..., 3)`` in ``[0, 1]`` from source to reference Lab statistics.

    Channels whose source std is ~0 (flat images) are only shifted, never divided by zero.
    """
    lab = rgb_to_lab(rgb01)
    scale = np.where(src_std > _MIN_STD, ref_std / np.maximum(src_std, _MIN_STD), 1.0)
    out = (lab - src_mean) * scale + ref_mean
    return lab_to_rgb(out)
