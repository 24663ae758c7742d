"""Detection training data: labels mapped to classes, images decoded once, field augmentation.

:func:`prepare_fields` turns a :class:`~hemascope.io.annotations.DetectionSet` into
:class:`Field` records (uint8 image in memory, boxes, integer labels ``1..C``), mapping each
label through the taxonomy (``WBC``, ``leukocyte`` and ``neutrophil`` all reach ``WBC`` in
the ``smear3`` vocabulary). Unreadable images and unmappable labels are reported, never
silently trained on.

:func:`augment_field` is the online augmentation (pure: inputs are never modified): random
zoom-in crop, flips, 90-degree turns, colour jitter in HSV, copy-paste of cells, and one of
the nine interference factors of the leukocyte-detection study. :func:`mosaic` packs four
fields at half scale into one, which teaches cells at half the usual size (scanners and
magnifications differ between labs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hemascope.errors import DatasetError
from hemascope.io.annotations import MIN_BOX_SIDE, DetectionSet, ImageAnnotation
from hemascope.problems import Problem


@dataclass(frozen=True)
class Field:
    """One training / evaluation field: RGB uint8 image, boxes xyxy, labels ``1..C``.

    ``masks`` (instance-segmentation training only): one box-local bool mask per box
    (:mod:`hemascope.detect.masks`).
    """

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: tuple[np.ndarray, ...] | None = None


@dataclass
class FieldSet:
    fields: list[Field]
    classes: list[str]
    problems: list[Problem] = field(default_factory=list)


def class_mapping(ds: DetectionSet, *, vocabulary: str | None = "smear3",
                  classes: Sequence[str] | None = None) -> tuple[list[str], dict[str, str | None]]:
    """Decide the detector's classes and map every label of ``ds`` to one (or ``None``).

    ``classes`` given (e.g. a trained model's): labels map onto them through the taxonomy.
    Else ``vocabulary``: every label must map into it; its classes that occur are used.
    ``vocabulary=None``: the data set's own class names.

    Raises:
        DatasetError: labels that cannot be mapped (named in the message).
    """
    from hemascope.taxonomy import try_to_vocabulary, vocabulary as get_vocab

    labels = sorted(set(ds.box_counts()) | set(ds.classes))
    if classes is None and vocabulary is None:
        return list(ds.classes or labels), {lab: lab for lab in labels}
    if classes is None:
        vocab = get_vocab(vocabulary)
        concepts = {lab: try_to_vocabulary(lab, vocab) for lab in labels}
        mapping = {lab: (vocab.display_name(c) if c else None) for lab, c in concepts.items()}
        bad = [lab for lab, m in mapping.items() if m is None and lab in ds.box_counts()]
        if bad:
            raise DatasetError(f"labels {', '.join(map(repr, bad))} do not map into the {vocabulary!r} "
                               f"classes ({', '.join(vocab.display)}); pass --vocabulary none to "
                               "train on the data set's own class names")
        used = set(m for lab, m in mapping.items() if lab in ds.box_counts())
        return [c for c in vocab.display if c in used], mapping
    mapping = {lab: next((c for c in classes if lab == c or _is_under(lab, c)), None)
               for lab in labels}
    return list(classes), mapping


def _is_under(label: str, cls: str) -> bool:
    """``label`` names ``cls`` or a descendant of it in the taxonomy."""
    from hemascope.errors import UnknownLabelError
    from hemascope.taxonomy import ancestors, resolve

    try:
        return resolve(cls) in ancestors(label)
    except UnknownLabelError:
        return label.strip().lower() == cls.strip().lower()


def prepare_fields(ds: DetectionSet, classes: Sequence[str], mapping: dict[str, str | None], *,
                   max_side: int | None = None, strict_labels: bool = True,
                   masks: bool = False) -> FieldSet:
    """Decode every image of ``ds`` once; boxes in (possibly downscaled) image pixels.

    Args:
        max_side: images larger than this are downscaled (with their boxes) to save memory.
        strict_labels: an instance whose label maps to no class raises; ``False`` drops it
            and records a problem.
        masks: also make one mask per box (from polygons, else classical pseudo-labels).
    """
    from hemascope.io.image import ImageReadError, read_image

    index = {c: i + 1 for i, c in enumerate(classes)}
    fields: list[Field] = []
    problems = list(ds.problems)
    unknown: set[str] = set()
    for im in ds.images:
        path = Path(ds.image_root) / im.file_name
        try:
            img = read_image(path)
        except ImageReadError as e:
            problems.append(Problem(im.file_name, "unreadable_image", str(e)))
            continue
        boxes, labels, polys = _instances(im, index, mapping, unknown, problems)
        img, boxes, polys = _limit(img, boxes, polys, max_side)
        crops = None
        if masks:
            from hemascope.detect.masks import mask_crops

            crops = tuple(mask_crops(img, boxes, polys)[0])
        fields.append(Field(im.file_name, img, boxes, labels, crops))
    if unknown and strict_labels:
        raise DatasetError(f"labels {', '.join(sorted(map(repr, unknown)))} map to none of the classes "
                           f"{', '.join(classes)}")
    if not fields:
        raise DatasetError("no readable images with annotations in the data set")
    return FieldSet(fields, list(classes), problems)


def _instances(im: ImageAnnotation, index: dict[str, int], mapping: dict[str, str | None],
               unknown: set[str], problems: list[Problem]):
    boxes, labels, polys = [], [], []
    for inst in im.instances:
        cls = mapping.get(inst.label)
        if cls is None or cls not in index:
            unknown.add(inst.label)
            problems.append(Problem(im.file_name, "unknown_label", f"{inst.label!r} dropped"))
            continue
        x0, y0, x1, y1 = inst.box
        if im.width and im.height:
            x0, x1 = np.clip([x0, x1], 0, im.width)
            y0, y1 = np.clip([y0, y1], 0, im.height)
        if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
            continue  # degenerate: reported by the reader, useless as a target
        boxes.append([x0, y0, x1, y1])
        labels.append(index[cls])
        polys.append(inst.polygons)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), polys


def _limit(img: np.ndarray, boxes: np.ndarray, polys: list, max_side: int | None):
    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, boxes, polys
    import cv2

    s = max_side / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    polys = [tuple(tuple((x * s, y * s) for x, y in poly) for poly in ps) for ps in polys]
    return small, boxes * s, polys


# ----------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class FieldAugment:
    """Probabilities and ranges of the online field augmentation (all train-only)."""

    zoom_p: float = 0.5
    zoom_range: tuple[float, float] = (0.6, 1.0)
    flip: bool = True
    rot90: bool = True
    hsv_p: float = 0.8
    hue: float = 0.04
    saturation: float = 0.35
    brightness: float = 0.25
    contrast: float = 0.25
    paste_p: float = 0.2
    interference_p: float = 0.3
    interference_severity: tuple[float, float] = (0.2, 0.8)
    mosaic_p: float = 0.25
    min_visible: float = 0.4


def augment_field(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, *,
                  rng: np.random.Generator, cfg: FieldAugment = FieldAugment()
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random augmentation of a field; returns new arrays (inputs untouched).

    ``image`` may carry one instance mask per box after its 3 colour channels
    (``H x W x (3 + N)``): masks follow every geometric change; colour changes, copy-paste
    and interference factors touch only the colour channels (copy-paste is skipped).
    """
    img, b, lab = image, boxes.astype(np.float32), labels
    with_masks = image.shape[2] > 3
    if rng.random() < cfg.zoom_p:
        img, b, lab, keep = _zoom_crop(img, b, lab, rng, cfg)
        if with_masks:
            img = img[..., np.concatenate([[0, 1, 2], 3 + np.flatnonzero(keep)])]
    if cfg.flip and rng.random() < 0.5:
        img, b = img[:, ::-1], _hflip(b, img.shape[1])
    if cfg.flip and rng.random() < 0.5:
        img, b = img[::-1], _vflip(b, img.shape[0])
    if cfg.rot90 and rng.random() < 0.5:
        img, b = np.ascontiguousarray(np.rot90(img)), _rot90(b, img.shape[1])
    img = np.ascontiguousarray(img)
    if with_masks:
        masks, img = img[..., 3:], np.ascontiguousarray(img[..., :3])
    if rng.random() < cfg.paste_p and len(b) and not with_masks:
        from hemascope.interference import paste_cells

        img, new, src = paste_cells(img, b, severity=float(rng.uniform(0.3, 1.0)), rng=rng)
        b, lab = np.concatenate([b, new.astype(np.float32)]), np.concatenate([lab, lab[src]])
    if rng.random() < cfg.interference_p:
        from hemascope.interference import apply_interference

        name = str(rng.choice(["colour_cast", "low_illumination", "defocus", "stain_debris",
                               "giant_platelets", "degenerated_cells", "ph_high", "ph_low"]))
        img, _ = apply_interference(img, name, boxes=b, seed=int(rng.integers(1 << 31)),
                                    severity=float(rng.uniform(*cfg.interference_severity)))
    if rng.random() < cfg.hsv_p:
        img = colour_jitter(img, rng=rng, hue=cfg.hue, saturation=cfg.saturation,
                            brightness=cfg.brightness, contrast=cfg.contrast)
    if with_masks:
        img = np.concatenate([img, masks], 2)
    return np.ascontiguousarray(img), b, lab


def colour_jitter(image: np.ndarray, *, rng: np.random.Generator, hue: float = 0.04,
                  saturation: float = 0.35, brightness: float = 0.25, contrast: float = 0.25
                  ) -> np.ndarray:
    """Random hue rotation, saturation, brightness and contrast (stain / camera variation)."""
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 180) % 180
    hsv[..., 1] *= rng.uniform(1 - saturation, 1 + saturation)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out *= rng.uniform(1 - brightness, 1 + brightness)
    m = out.mean()
    out = (out - m) * rng.uniform(1 - contrast, 1 + contrast) + m
    return np.clip(out, 0, 255).astype(np.uint8)


def mosaic(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *,
           size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four ``(image, boxes, labels)`` fields at half scale in a 2x2 grid of ``size`` (h, w).

    Instance masks after the colour channels (see :func:`augment_field`) are carried along.
    """
    import cv2

    if len(parts) != 4:
        raise ValueError("mosaic takes exactly four fields")
    h, w = size
    hh, hw = h // 2, w // 2
    extra = [p[0].shape[2] - 3 for p in parts]
    canvas = np.zeros((h, w, 3 + sum(extra)), np.uint8)
    all_b, all_l = [], []
    for k, (img, b, lab) in enumerate(parts):
        oy, ox = (k // 2) * hh, (k % 2) * hw
        th, tw = (hh if k < 2 else h - hh), (hw if k % 2 == 0 else w - hw)
        sy, sx = th / img.shape[0], tw / img.shape[1]
        canvas[oy:oy + th, ox:ox + tw, :3] = cv2.resize(np.ascontiguousarray(img[..., :3]), (tw, th),
                                                        interpolation=cv2.INTER_AREA)
        if extra[k]:  # masks: nearest neighbour
            ys = np.minimum((np.arange(th) / sy).astype(int), img.shape[0] - 1)
            xs = np.minimum((np.arange(tw) / sx).astype(int), img.shape[1] - 1)
            c0 = 3 + sum(extra[:k])
            canvas[oy:oy + th, ox:ox + tw, c0:c0 + extra[k]] = img[ys][:, xs, 3:]
        all_b.append(b * np.array([sx, sy, sx, sy], np.float32) + np.array([ox, oy, ox, oy], np.float32))
        all_l.append(lab)
    return canvas, np.concatenate(all_b).reshape(-1, 4), np.concatenate(all_l)


def _zoom_crop(img, b, lab, rng, cfg: FieldAugment):
    h, w = img.shape[:2]
    s = rng.uniform(*cfg.zoom_range)
    ch, cw = max(8, int(h * s)), max(8, int(w * s))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    nb = b - np.array([x0, y0, x0, y0], np.float32)
    clipped = np.clip(nb, 0, [cw, ch, cw, ch]).astype(np.float32)
    area = np.prod(np.clip(nb[:, 2:] - nb[:, :2], 1e-6, None), axis=1)
    vis = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1) / area
    keep = (vis >= cfg.min_visible) & ((clipped[:, 2:] - clipped[:, :2]) >= MIN_BOX_SIDE).all(1)
    return crop, clipped[keep], lab[keep], keep


def _hflip(b: np.ndarray, w: int) -> np.ndarray:
    return np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1).astype(np.float32).reshape(-1, 4)


def _vflip(b: np.ndarray, h: int) -> np.ndarray:
    return np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], 1).astype(np.float32).reshape(-1, 4)


def _rot90(b: np.ndarray, w: int) -> np.ndarray:
    # np.rot90 turns counter-clockwise: (x, y) -> (y, w - x)
    return np.stack([b[:, 1], w - b[:, 2], b[:, 3], w - b[:, 0]], 1).astype(np.float32).reshape(-1, 4)
