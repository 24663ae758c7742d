"""Macenko stain normalisation (Macenko et al., ISBI 2009), for comparison with Reinhard.

Optical density is decomposed into two stain vectors found from the extreme angles of
the OD pixels in the plane of their two main directions; concentrations are rescaled to a
reference's 99th percentiles and recomposed with the reference stain vectors.

Blood-smear stains (May-Grünwald-Giemsa) are not the two-stain H&E the method was made
for: two vectors leave a visible residual. We keep that residual optical density, so an
image normalised to its own reference is returned unchanged and nothing the two stains
cannot explain is thrown away.
"""

from __future__ import annotations

import numpy as np

_IO = 255.0


def optical_density(rgb255: np.ndarray) -> np.ndarray:
    return -np.log((np.asarray(rgb255, np.float64) + 1) / _IO)


def stain_vectors(rgb255: np.ndarray, *, beta: float = 0.15, alpha: float = 1.0) -> np.ndarray | None:
    """``(3, 2)`` unit stain vectors (haematoxylin-like first), or ``None`` if too few stained pixels."""
    od = optical_density(rgb255).reshape(-1, 3)
    od = od[(od > beta).all(1)]
    if len(od) < 32:
        return None
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, 1:3]
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    vs = np.stack([v1, v2], 1)
    vs *= np.sign(vs.sum(0, keepdims=True) + 1e-12)  # OD vectors point into the positive octant
    if vs[0, 0] < vs[0, 1]:  # haematoxylin absorbs red most: put it first
        vs = vs[:, ::-1]
    return vs / np.linalg.norm(vs, axis=0, keepdims=True)


def concentrations(rgb255: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    od = optical_density(rgb255).reshape(-1, 3)
    c, *_ = np.linalg.lstsq(vectors, od.T, rcond=None)
    return c  # (2, N)


def macenko_transfer(rgb255: np.ndarray, *, ref_vectors: np.ndarray, ref_max: np.ndarray) -> np.ndarray:
    """Normalise one ``(H, W, 3)`` image (float 0-255) to the reference stains; identity if degenerate."""
    vs = stain_vectors(rgb255)
    if vs is None:
        return np.asarray(rgb255, np.float64)
    ref = np.asarray(ref_vectors)
    # pair each source stain with the closer reference stain (the red-first rule of H&E
    # does not hold for every blood stain)
    if (vs * ref[:, ::-1]).sum() > (vs * ref).sum():
        vs = vs[:, ::-1]
    od = optical_density(rgb255).reshape(-1, 3).T
    c = concentrations(rgb255, vs)
    residual = od - vs @ c
    cmax = np.percentile(c, 99, axis=1)
    c *= (np.asarray(ref_max) / np.where(cmax > 1e-6, cmax, 1.0))[:, None]
    out = _IO * np.exp(-(ref @ c + residual)) - 1
    return np.clip(out.T.reshape(np.shape(rgb255)), 0, 255)
