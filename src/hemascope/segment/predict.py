"""Cell-part segmentation with a trained U-Net folder: part indices at the image's own size."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hemascope.models.artifact import LoadedModel, ModelError, load_weights, read_config, resolve_model_dir


def load_segmenter(spec: str | Path | None = "default") -> LoadedModel:
    """A part-segmentation folder (``hemascope train segmentation``) in eval mode.

    Raises:
        ModelError: missing files, another kind of model, or weights that do not fit.
    """
    from hemascope.segment.unet import UNet

    path = resolve_model_dir(spec, "segmentation")
    cfg = read_config(path)
    if cfg.get("task") != "segmentation":
        raise ModelError(f"{path} holds a {cfg.get('task', 'classification')} model, not a "
                         "part-segmentation model (train one with `hemascope train segmentation`)")
    model = UNet(len(cfg["classes"]), width=int(cfg["width"]), depth=int(cfg.get("depth", 4)))
    load_weights(model, path, cfg)
    return LoadedModel(model.eval().to(memory_format=torch.channels_last), cfg, path)


#: ``zoom``: a cell whose share of the image is off the training cells' median share
#: (config ``cell_fraction``) by more than ZOOM_TOLERANCE in scale is segmented again in a
#: window that gives it the training share; the rescaling stays within ZOOM_RANGE.
ZOOM_TOLERANCE, ZOOM_RANGE = 1.3, (1 / 3, 3.0)

#: Default of ``centre`` (keep the centre cell's parts only) in :func:`segment_arrays`,
#: ``segment predict`` and ``evaluate segmentation``.
CENTRE_CELL = True

#: Default of ``mirror`` (flat margins refilled by mirroring) in :func:`segment_arrays`,
#: ``segment predict`` and ``evaluate segmentation``. On: on the 5-fold shift benchmark
#: (``benchmarks/results/segmentation_shift_mirror.md``) it lifted cells shrunk on a flat
#: margin from 0.790 to 0.866 cytoplasm IoU and moved no other row by more than 0.003.
MIRROR_MARGINS = True
#: How the zoom pass pads its window where it leaves the image: ``border`` (the image's
#: border colour) or ``mirror`` (the image mirrored).
ZOOM_PADS = ("border", "mirror")


@torch.inference_mode()
def segment_arrays(loaded: LoadedModel, images: Sequence[np.ndarray], *,
                   return_probs: bool = False, batch_size: int = 32,
                   at_input_size: bool = False, balance: bool = True,
                   zoom: bool = True, centre: bool = CENTRE_CELL,
                   mirror: bool = MIRROR_MARGINS, zoom_pad: str = "border") -> list[np.ndarray]:
    """Part indices ``(H, W)`` uint8 for each RGB uint8 image, at its own size.

    The image is resized to the model's square input, the logits are resized back
    (bilinear) and the arg-max taken, so thin borders are not blocky. Consecutive images of
    one size go through the network together, on the model's device. ``at_input_size``
    skips the resizing back: maps come at the model's square input size (faster, for
    outlines that are scaled back as polygons).

    Models that record their training images' background colour (``background`` in the
    config) white-balance each image onto it first unless ``balance`` is off
    (:mod:`hemascope.stain.background`: another lamp, camera or stain). ``zoom`` (models
    that record ``cell_fraction``) adds a second pass for a cell much smaller or larger in
    its image than the training cells: the window around the centre cell (padded with the
    border colour where it leaves the image) that gives it the training share is segmented
    and pasted over the first pass where either pass sees a cell part (elsewhere the first
    pass keeps its background, red cells and platelets). With a model trained down to half size
    (``min_scale``) it pays on CellaVision cells under simulated magnification changes
    (``benchmarks/segmentation_shift.py``), so it is on by default. ``zoom`` needs maps at
    the image's size, so it is skipped with ``at_input_size``. ``centre`` keeps the parts of
    the centre cell only (:func:`hemascope.segment.outline.keep_centre_cell`): one white cell
    per single-cell image, as the CellaVision masks hold; on by default, as it paid on
    every simulated shift of the same benchmark. ``mirror`` refills an image's flat margins
    (a crop padded with one colour; :mod:`hemascope.segment.margins`) by mirroring its
    content before segmenting, and leaves the margins background: the U-Net's training
    margins are mirrored; on by default. ``zoom_pad`` pads the zoom window with the
    image's ``border`` colour (the default) or by ``mirror``-ing the image: measured, the
    mirror lifted cytoplasm IoU on most simulated shifts (+0.010 on average) but cost
    enlarged cells 0.013 nucleus IoU, so it is an option.
    """
    if zoom_pad not in ZOOM_PADS:
        raise ValueError(f"zoom_pad must be one of {ZOOM_PADS}, not {zoom_pad!r}")
    cfg = loaded.config
    margins = None
    if mirror:
        from hemascope.segment.margins import flat_margins, mirror_margins

        margins = [flat_margins(np.asarray(im)) for im in images]
        images = [mirror_margins(np.asarray(im), m) for im, m in zip(images, margins)]
    if balance and cfg.get("background"):
        from hemascope.stain.background import balance_background

        images = [balance_background(np.asarray(im), cfg["background"]) for im in images]
    out = _segment(loaded, images, return_probs=return_probs, batch_size=batch_size,
                   at_input_size=at_input_size)
    if zoom and not at_input_size and cfg.get("cell_fraction"):
        out = [_rezoom(loaded, np.asarray(im), o, return_probs=return_probs, pad=zoom_pad)
               for im, o in zip(images, out)]
    if margins is not None:
        from hemascope.segment.margins import clear_margins, scale_margins

        out = [clear_margins(o, scale_margins(m, np.asarray(im).shape[:2], o.shape[-2:]))
               for o, m, im in zip(out, margins, images)]
    if centre:
        from hemascope.segment.outline import keep_centre_cell

        out = [keep_centre_cell(o, cfg["classes"]) for o in out]
    return out


#: :func:`adapt_batchnorm` needs at least this many images (batch-norm statistics of fewer
#: say little about a lab).
MIN_ADAPT_IMAGES = 8


def adapt_batchnorm(loaded: LoadedModel, images: Sequence[np.ndarray], *, balance: bool = True,
                    mirror: bool = MIRROR_MARGINS, limit: int = 400, seed: int = 0) -> LoadedModel:
    """A copy of the part model whose batch-norm statistics are re-estimated on ``images``
    (AdaBN, :mod:`hemascope.adapt.batchnorm`; no labels): each image prepared as
    :func:`segment_arrays` prepares it (flat margins mirrored, white balance), resized to
    the model's input. At most ``limit`` images (a seeded sample) are used. The copy's
    config records ``adapted``.

    Measured, it does not pay (``benchmarks/results/segmentation_shift_adabn.md``: 5-fold
    CellaVision CV, re-estimated on each fold's 20 shifted cells): nucleus IoU fell under
    every simulated shift, cytoplasm IoU under all but defocus, and both collapsed on cells
    of another size (enlarged x1.4: 0.936 / 0.857 -> 0.625 / 0.511); a likely reason, not
    tested, is that the U-Net's feature statistics carry how much of the frame the cell
    fills. So no CLI offers it; it stays for that benchmark.

    Raises:
        ValueError: fewer than :data:`MIN_ADAPT_IMAGES` images.
    """
    import copy

    from hemascope.adapt.batchnorm import reestimate_batchnorm
    from hemascope.segment.data import resize_pair

    if len(images) < MIN_ADAPT_IMAGES:
        raise ValueError(f"adapting the part model needs at least {MIN_ADAPT_IMAGES} images of "
                         f"the lab, got {len(images)}")
    pick = (np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))
            if len(images) > limit else np.arange(len(images)))
    cfg = loaded.config
    size = int(cfg["image_size"])
    prepared = []
    for i in pick:
        im = np.asarray(images[int(i)])
        if mirror:
            from hemascope.segment.margins import flat_margins, mirror_margins

            im = mirror_margins(im, flat_margins(im))
        if balance and cfg.get("background"):
            from hemascope.stain.background import balance_background

            im = balance_background(im, cfg["background"])
        prepared.append(resize_pair(im, None, size)[0])
    model = copy.deepcopy(loaded.model)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32)
    std = torch.tensor(cfg["std"], dtype=torch.float32)
    n = reestimate_batchnorm(model, np.stack(prepared), mean, std, batch_size=32)
    new_cfg = {**cfg, "adapted": {"method": "bn", "images": int(len(prepared)), "layers": n}}
    return LoadedModel(model.eval(), new_cfg, loaded.path)


def _segment(loaded: LoadedModel, images: Sequence[np.ndarray], *, return_probs: bool,
             batch_size: int, at_input_size: bool) -> list[np.ndarray]:
    from hemascope.segment.data import resize_pair
    from hemascope.train.device import module_device

    cfg = loaded.config
    size = int(cfg["image_size"])
    dev = module_device(loaded.model)
    mean = torch.tensor(cfg["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=dev).view(1, 3, 1, 1)
    out: list[np.ndarray] = []
    i = 0
    while i < len(images):
        shape = np.asarray(images[i]).shape[:2]
        j = i + 1
        while j < len(images) and j - i < batch_size and np.asarray(images[j]).shape[:2] == shape:
            j += 1
        small = np.stack([resize_pair(np.asarray(im), None, size)[0] for im in images[i:j]])
        x = torch.from_numpy(small).to(dev).permute(0, 3, 1, 2).float().div_(255)
        logits = loaded.model(((x - mean) / std).contiguous(memory_format=torch.channels_last))
        if not at_input_size:
            logits = F.interpolate(logits, size=shape, mode="bilinear", align_corners=False)
        res = logits.softmax(1) if return_probs else logits.argmax(1).to(torch.uint8)
        out.extend(r.cpu().numpy() for r in res)
        i = j
    return out


def zoom_window(shape: tuple[int, int], box: tuple[float, float, float, float], area: int,
                cell_fraction: float) -> tuple[int, int, int] | None:
    """``(x0, y0, side)`` of the square window centred on a cell (``box``, ``area`` px) in
    which it has the training share ``cell_fraction``, or ``None`` when its share in the
    image is already within ZOOM_TOLERANCE (in scale) of it."""
    h, w = shape
    r = float(np.sqrt(cell_fraction * h * w / max(area, 1)))  # > 1: the cell is too small
    if 1 / ZOOM_TOLERANCE <= r <= ZOOM_TOLERANCE:
        return None
    r = float(np.clip(r, *ZOOM_RANGE))
    side = max(8, int(round(np.sqrt(h * w) / r)))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def border_colour(image: np.ndarray) -> np.ndarray:
    """Median RGB (uint8) of an image's outermost rows and columns: the fill for padding it."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(border, axis=0).astype(np.uint8)


def _rezoom(loaded: LoadedModel, image: np.ndarray, first: np.ndarray, *,
            return_probs: bool, pad: str = "border") -> np.ndarray:
    from hemascope.segment.outline import outline_from_parts

    labels = first.argmax(0) if return_probs else first
    found = outline_from_parts(labels, loaded.config["classes"], min_area_fraction=0.002)
    if found is None:
        return first
    h, w = labels.shape
    win = zoom_window((h, w), found.box, found.cell_area, float(loaded.config["cell_fraction"]))
    if win is None:
        return first
    x0, y0, side = win
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if pad == "mirror":
        import cv2

        window = cv2.copyMakeBorder(np.ascontiguousarray(image[iy0:iy1, ix0:ix1]), iy0 - y0,
                                    y0 + side - iy1, ix0 - x0, x0 + side - ix1,
                                    cv2.BORDER_REFLECT_101)
    else:
        window = np.empty((side, side, 3), np.uint8)
        window[:] = border_colour(image)
        window[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
    second = _segment(loaded, [window], return_probs=return_probs, batch_size=1,
                      at_input_size=False)[0]
    inner = second[..., iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    out = first.copy()
    # the window decides the cell's parts; where neither pass sees a cell part, the first
    # pass's label stays, so red cells and platelets cut by the window's edge stay whole
    from hemascope.segment.outline import part_indices

    cell, _ = part_indices(loaded.config["classes"])
    lab_in = inner.argmax(0) if return_probs else inner
    lab_first = labels[iy0:iy1, ix0:ix1]
    take = np.isin(lab_in, cell) | np.isin(lab_first, cell)
    region = out[..., iy0:iy1, ix0:ix1]
    region[..., take] = inner[..., take]
    return out


def overlay_parts(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The image with each part tinted in its palette colour (background untouched)."""
    from hemascope.io.masks import PALETTE

    img = np.asarray(image, np.float32).copy()
    colours = np.array(PALETTE, np.float32)
    fg = mask > 0
    img[fg] = (1 - alpha) * img[fg] + alpha * colours[mask[fg]]
    return img.clip(0, 255).astype(np.uint8)
