"""Image / part-mask pairs for cell-part segmentation, and their fixed-size tensors.

Two layouts are read: masks beside the images with the same name and a ``.png`` suffix
(CellaVision: ``001.bmp`` + ``001.png``), or ``images/`` and ``masks/`` sub-folders with
the same file stems. Masks follow the CellaVision convention (255 nucleus, 128 cytoplasm,
0 other) or hold part indices (:data:`hemascope.taxonomy.CELL_PARTS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hemascope.errors import DatasetError, ImageReadError
from hemascope.io.image import is_image_file, read_image
from hemascope.io.masks import read_part_mask
from hemascope.problems import Problem


@dataclass(frozen=True)
class MaskPair:
    image: Path
    mask: Path


def find_mask_pairs(folder: str | Path) -> tuple[list[MaskPair], list[Problem]]:
    """Pairs of a folder (either layout); images without a mask are listed as problems.

    Raises:
        DatasetError: the folder does not exist or holds no pair at all.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    pairs, problems = [], []
    if (root / "images").is_dir() and (root / "masks").is_dir():
        masks = {p.stem: p for p in (root / "masks").iterdir() if is_image_file(p)}
        for img in sorted(p for p in (root / "images").iterdir() if is_image_file(p)):
            if img.stem in masks:
                pairs.append(MaskPair(img, masks[img.stem]))
            else:
                problems.append(Problem(str(img), "unannotated_image", "no mask with this name in masks/"))
    else:
        files = sorted(p for p in root.iterdir() if is_image_file(p))
        stems_png = {p.stem: p for p in files if p.suffix.lower() == ".png"}
        for img in files:
            if img.suffix.lower() == ".png":
                continue  # masks (an image that is itself a PNG needs the images/ + masks/ layout)
            if img.stem in stems_png:
                pairs.append(MaskPair(img, stems_png[img.stem]))
            else:
                problems.append(Problem(str(img), "unannotated_image", f"no mask {img.stem}.png beside it"))
    if not pairs:
        raise DatasetError(f"no image/mask pairs in {root}: expected NAME.bmp|jpg + NAME.png side "
                           "by side, or images/ and masks/ sub-folders with the same file names")
    return pairs, problems


def load_pair(pair: MaskPair) -> tuple[np.ndarray, np.ndarray]:
    """The RGB image and its part-index mask, checked to be the same size.

    Raises:
        ImageReadError: unreadable image or mask, unknown mask values, or sizes that differ
            (the message names the file).
    """
    image = read_image(pair.image)
    mask = read_part_mask(pair.mask)
    if mask.shape != image.shape[:2]:
        raise ImageReadError(pair.mask, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                             f"{pair.image.name} is {image.shape[1]}x{image.shape[0]}")
    return image, mask


def resize_pair(image: np.ndarray, mask: np.ndarray | None, size: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Square ``size`` x ``size``: bilinear for the image, nearest for the mask (pure)."""
    from PIL import Image

    img = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    if mask is None:
        return img, None
    m = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST))
    return img, m


def annotated_parts(pairs: Sequence[MaskPair]) -> set[str]:
    """Names of the parts that at least one readable mask of ``pairs`` holds."""
    from hemascope.taxonomy import CELL_PARTS

    held: set[int] = set()
    for p in pairs:
        try:
            held.update(int(v) for v in np.unique(read_part_mask(p.mask)))
        except ImageReadError:
            continue  # load_pairs reports it
    names = list(CELL_PARTS.classes)
    return {names[i] for i in held if 0 <= i < len(names)}


def load_pairs(pairs: list[MaskPair], size: int, *, other_parts: Sequence[str] = ()
               ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Stacked ``(N, size, size, 3)`` images and ``(N, size, size)`` masks; bad pairs skipped.
    ``other_parts`` (``vacuole``, ``platelet``, ``rbc``) are added to the masks as classical
    pseudo-labels (:func:`hemascope.segment.parts.add_pseudo_parts`), at the image's own
    size before resizing; a part that any mask of the set holds is annotated, so it is
    pseudo-labelled in none of them."""
    if other_parts:
        other_parts = [p for p in other_parts if p not in annotated_parts(pairs)]
    images, masks, errors = [], [], {}
    for p in pairs:
        try:
            image, mask = load_pair(p)
            if other_parts:
                from hemascope.segment.parts import add_pseudo_parts

                mask = add_pseudo_parts(image, mask, other_parts)
            img, m = resize_pair(image, mask, size)
        except ImageReadError as e:
            errors[str(p.image)] = e.reason
            continue
        images.append(img)
        masks.append(m)
    if not images:
        raise DatasetError("no readable image/mask pair: " + "; ".join(
            f"{k}: {v}" for k, v in list(errors.items())[:3]))
    return np.stack(images), np.stack(masks), errors
