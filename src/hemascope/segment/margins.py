"""Flat margins: the one-colour strips a cell crop gets when it is padded to size.

A crop cut near the edge of a field, or shrunk into a fixed frame, is often padded with a
constant colour. The part U-Net is trained on images whose zoomed-out margins are mirrored
(:mod:`hemascope.train.segmentation`), so a flat strip is a look it has not learnt. These
pure functions find such strips, refill them by mirroring the image's content, and clear
them from a part map afterwards (a padded margin holds no cell).

A strip is a full edge row or column whose pixels all lie within ``tol`` of its median
colour. Photographed background is seldom that flat: camera noise usually exceeds the
default tolerance (``benchmarks/results/segmentation_shift_mirror.md`` counts the images
in which a margin is found); where an edge of background is that flat, it is background
anyway and the mirror only fills it.
"""

from __future__ import annotations

import numpy as np

#: Largest deviation (0-255, any channel) from a row's median colour in a flat strip.
FLAT_TOLERANCE = 2
#: The content left inside the margins must span at least this share of each side (and
#: 16 px); an image flatter than that (an empty frame) is left as it is.
MIN_CONTENT = 0.25

Margins = tuple[int, int, int, int]  # top, bottom, left, right (pixels)


def _run(flat: np.ndarray) -> int:
    """Length of the leading run of ``True`` in a 1-D boolean array."""
    off = np.flatnonzero(~flat)
    return int(off[0]) if len(off) else len(flat)


def _flat_lines(image: np.ndarray, tol: int) -> np.ndarray:
    """Per row of ``(H, W, C)`` ``image``: whether every pixel is within ``tol`` of the
    row's median colour."""
    x = image.astype(np.int16)
    med = np.median(x, axis=1, keepdims=True)
    return (np.abs(x - med) <= tol).all(axis=(1, 2))


def flat_margins(image: np.ndarray, *, tol: int = FLAT_TOLERANCE) -> Margins:
    """``(top, bottom, left, right)`` widths of an RGB (or grey) image's flat margins.

    Rows are measured on the whole image, columns on the rows between the top and bottom
    margins (so a frame of two colours is still found). All zeros when the image has none,
    or when what lies inside them would be under :data:`MIN_CONTENT` of a side.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    edges = np.stack([img[0], img[-1]]), np.stack([img[:, 0], img[:, -1]])
    if not (_flat_lines(edges[0], tol).any() or _flat_lines(edges[1], tol).any()):
        return (0, 0, 0, 0)  # the common case, in O(H + W): no edge line is flat
    rows = _flat_lines(img, tol)
    top = _run(rows)
    if top == h:
        return (0, 0, 0, 0)
    bottom = _run(rows[::-1])
    cols = _flat_lines(img[top:h - bottom].transpose(1, 0, 2), tol)
    left, right = _run(cols), _run(cols[::-1])
    ch, cw = h - top - bottom, w - left - right
    if min(ch, cw) < 16 or ch < MIN_CONTENT * h or cw < MIN_CONTENT * w:
        return (0, 0, 0, 0)
    return (top, bottom, left, right)


def mirror_margins(image: np.ndarray, margins: Margins) -> np.ndarray:
    """The image with its ``margins`` refilled by mirroring the content inside them (the
    image itself when there are none); shape and dtype kept."""
    import cv2

    top, bottom, left, right = margins
    if not any(margins):
        return image
    h, w = image.shape[:2]
    inner = np.ascontiguousarray(image[top:h - bottom, left:w - right])
    return cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REFLECT_101)


def scale_margins(margins: Margins, shape: tuple[int, int], to: tuple[int, int]) -> Margins:
    """``margins`` of an image of ``shape`` (H, W) in the pixels of the same image resized
    to ``to`` (rounded)."""
    (h, w), (th, tw) = shape, to
    top, bottom, left, right = margins
    return (round(top * th / h), round(bottom * th / h), round(left * tw / w),
            round(right * tw / w))


def clear_margins(parts: np.ndarray, margins: Margins) -> np.ndarray:
    """A part map with its ``margins`` set to background: indices ``(H, W)`` to 0, or
    probabilities ``(C, H, W)`` to background 1, other classes 0 (a copy when changed)."""
    top, bottom, left, right = margins
    if not any(margins):
        return parts
    out = parts.copy()
    h, w = out.shape[-2:]
    edge = np.zeros((h, w), bool)
    edge[:top], edge[h - bottom:], edge[:, :left], edge[:, w - right:] = True, True, True, True
    if out.ndim == 2:
        out[edge] = 0
    else:
        out[:, edge] = 0
        out[0, edge] = 1
    return out
