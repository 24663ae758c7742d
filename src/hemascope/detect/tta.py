"""Test-time augmentation for detectors: the field and its mirror images as ensemble views.

A detector trained with flips and 90-degree turns sees each cell from up to eight
orientations: the identity, left-right, up-down and both mirrors (``views=4``), then the
same four of the transposed field (``views=8``, the whole dihedral group: turns by 90 and
270 degrees and the two diagonal mirrors). The boxes of every view are mapped back to the
field's own pixels and fused like the boxes of an ensemble's members
(:mod:`hemascope.detect.ensemble`).
"""

from __future__ import annotations

import numpy as np

from hemascope.detect.ensemble import Detections

#: (left-right, up-down, transposed) of each view, in the order ``views=N`` takes them.
VIEWS = ((False, False, False), (True, False, False), (False, True, False), (True, True, False),
         (False, False, True), (True, False, True), (False, True, True), (True, True, True))
#: The numbers of views offered (the first N of :data:`VIEWS`).
VIEW_COUNTS = (1, 2, 4, 8)


def flip_image(image: np.ndarray, *, horizontal: bool, vertical: bool,
               transpose: bool = False) -> np.ndarray:
    """The field transposed (rows become columns) if asked, then mirrored (a contiguous
    copy unless it is the identity view)."""
    out = image.swapaxes(0, 1) if transpose else image
    out = out[:, ::-1] if horizontal else out
    out = out[::-1] if vertical else out
    return out if out is image else np.ascontiguousarray(out)


def flip_detections(d: Detections, height: int, width: int, *, horizontal: bool,
                    vertical: bool, transpose: bool = False) -> Detections:
    """Boxes found on a view made by :func:`flip_image` of a ``height`` x ``width`` field,
    in the field's own pixels (the mirrors are undone in the view, then the transpose)."""
    b = np.asarray(d.boxes, float).reshape(-1, 4).copy()
    vh, vw = (width, height) if transpose else (height, width)
    if horizontal:
        b[:, [0, 2]] = vw - b[:, [2, 0]]
    if vertical:
        b[:, [1, 3]] = vh - b[:, [3, 1]]
    if transpose:
        b = b[:, [1, 0, 3, 2]]
    return Detections(b, d.scores, d.labels)


def detect_views(det, image: np.ndarray, *, views: int = 4, scale="auto",
                 balance: bool = True, box_offsets: bool = True) -> list[Detections]:
    """One prediction set per view (the first ``views`` of :data:`VIEWS`), all in field pixels,
    with the model's box-edge offsets applied (:mod:`hemascope.detect.calibrate`; config
    ``box_offsets``) unless ``box_offsets`` is off.

    Raises:
        ValueError: ``views`` not one of :data:`VIEW_COUNTS`.
    """
    from hemascope.detect.predict import balanced, detect_field

    if views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views}")
    image = balanced(det, image, balance)  # once: mirroring keeps the background
    h, w = image.shape[:2]
    offsets = det.config.get("box_offsets") if box_offsets else None
    out = []
    for horizontal, vertical, transpose in VIEWS[:views]:
        x = flip_image(image, horizontal=horizontal, vertical=vertical, transpose=transpose)
        d = flip_detections(detect_field(det, x, scale=scale, balance=False), h, w,
                            horizontal=horizontal, vertical=vertical, transpose=transpose)
        if offsets:  # in field pixels, after the flip back: left stays left
            from hemascope.detect.calibrate import apply_box_offsets

            d = apply_box_offsets(d, offsets, det.classes, h, w)
        out.append(d)
    return out
