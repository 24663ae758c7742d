"""Test-time augmentation for detectors: the field and its mirror images as ensemble views.

A detector trained with flips sees each cell from up to four orientations (identity,
left-right, up-down, both); the boxes of every view are mapped back to the field's own
pixels and fused like the boxes of an ensemble's members (:mod:`hemascope.detect.ensemble`).
"""

from __future__ import annotations

import numpy as np

from hemascope.detect.ensemble import Detections

#: (left-right, up-down) mirror of each view, in the order ``views=N`` takes them.
VIEWS = ((False, False), (True, False), (False, True), (True, True))


def flip_image(image: np.ndarray, *, horizontal: bool, vertical: bool) -> np.ndarray:
    """The mirrored field (contiguous copy unless it is the identity view)."""
    out = image[:, ::-1] if horizontal else image
    out = out[::-1] if vertical else out
    return out if out is image else np.ascontiguousarray(out)


def flip_detections(d: Detections, height: int, width: int, *, horizontal: bool,
                    vertical: bool) -> Detections:
    """Boxes found on a mirrored ``height`` x ``width`` field, in the unmirrored field's pixels
    (mirroring is its own inverse)."""
    b = np.asarray(d.boxes, float).reshape(-1, 4).copy()
    if horizontal:
        b[:, [0, 2]] = width - b[:, [2, 0]]
    if vertical:
        b[:, [1, 3]] = height - b[:, [3, 1]]
    return Detections(b, d.scores, d.labels)


def detect_views(det, image: np.ndarray, *, views: int = 4, scale="auto",
                 balance: bool = True, box_offsets: bool = True) -> list[Detections]:
    """One prediction set per view (the first ``views`` of :data:`VIEWS`), all in field pixels,
    with the model's box-edge offsets applied (:mod:`hemascope.detect.calibrate`; config
    ``box_offsets``) unless ``box_offsets`` is off.

    Raises:
        ValueError: ``views`` outside 1..4.
    """
    from hemascope.detect.predict import balanced, detect_field

    if not 1 <= views <= len(VIEWS):
        raise ValueError(f"views must be 1..{len(VIEWS)}, got {views}")
    image = balanced(det, image, balance)  # once: mirroring keeps the background
    h, w = image.shape[:2]
    offsets = det.config.get("box_offsets") if box_offsets else None
    out = []
    for horizontal, vertical in VIEWS[:views]:
        x = flip_image(image, horizontal=horizontal, vertical=vertical)
        d = flip_detections(detect_field(det, x, scale=scale, balance=False), h, w,
                            horizontal=horizontal, vertical=vertical)
        if offsets:  # in field pixels, after the flip back: left stays left
            from hemascope.detect.calibrate import apply_box_offsets

            d = apply_box_offsets(d, offsets, det.classes, h, w)
        out.append(d)
    return out
