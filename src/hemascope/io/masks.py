"""Cell-part masks: CellaVision 0/128/255 images and indexed label images.

Internally a part mask is a 2-D ``uint8`` array whose values index
:data:`hemascope.taxonomy.CELL_PARTS` (0 background, 1 nucleus, 2 cytoplasm, 3 vacuole,
4 platelet, 5 red cell).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from hemascope.errors import ImageReadError
from hemascope.io.image import read_header, read_mask
from hemascope.taxonomy import CELL_PARTS

#: CellaVision convention (Zheng et al. 2018): grey value -> part index.
CELLAVISION_VALUES = {0: 0, 128: 2, 255: 1}
#: The finer parts the CellaVision convention has no value for, and what its masks call
#: them: a vacuole is inside the cytoplasm; platelets and red cells are "other" (0).
COARSE_PARTS = {"vacuole": "cytoplasm", "platelet": "background", "rbc": "background"}
#: Colours used when writing indexed masks (viewable, still indices underneath).
PALETTE = ((0, 0, 0), (95, 40, 140), (120, 170, 230), (255, 255, 255), (200, 110, 200),
           (220, 90, 90))


#: Image modes a mask beside its image can have (one channel, maybe with a palette).
MASK_MODES = frozenset({"1", "L", "P", "I", "I;16", "F"})


def paired_masks(files: Iterable[str | Path]) -> set[Path]:
    """The files that are part masks of other files in ``files``, by the two layouts of
    :mod:`hemascope.segment.data`, so that a folder of images and masks yields only its
    images:

    * ``NAME.png`` with one channel beside ``NAME.bmp`` (or ``.jpg``, ``.tif``...) in the same
      folder (CellaVision, Zheng et al. 2018); a colour PNG there is kept as an image;
    * ``masks/NAME.*`` whose ``images/NAME.*`` is also in ``files``.
    """
    files = [Path(f) for f in files]
    stems: dict[tuple[Path, str], set[str]] = {}
    for f in files:
        stems.setdefault((f.parent, f.stem), set()).add(f.suffix.lower())
    out = set()
    for f in files:
        if f.parent.name.lower() == "masks" and (f.parent.parent / "images", f.stem) in stems:
            out.add(f)
        elif (f.suffix.lower() == ".png" and stems[(f.parent, f.stem)] - {".png"}
              and _mask_mode(f)):
            out.add(f)
    return out


def _mask_mode(path: Path) -> bool:
    try:
        return read_header(path).mode in MASK_MODES
    except ImageReadError:
        return False


def read_part_mask(path: str | Path, *, convention: str = "auto") -> np.ndarray:
    """Read a part mask as indices into ``CELL_PARTS``.

    Args:
        path: PNG/BMP/TIFF mask.
        convention: ``"cellavision"`` (0 other, 128 cytoplasm, 255 nucleus), ``"indexed"``
            (values are part indices) or ``"auto"`` (cellavision if the values are a subset
            of {0, 128, 255} including 128 or 255, indexed if all values are < 6).

    Raises:
        ImageReadError: unreadable file, or values that fit neither convention.
    """
    raw = read_mask(path)
    return decode_part_mask(raw, convention=convention, path=path)


def decode_part_mask(raw: np.ndarray, *, convention: str = "auto",
                     path: str | Path = "<array>") -> np.ndarray:
    """Pure version of :func:`read_part_mask` for an already decoded 2-D array."""
    uniq, counts = np.unique(raw, return_counts=True)
    values = set(uniq.tolist())
    stray = int(counts[~np.isin(uniq, list(CELLAVISION_VALUES))].sum())
    # a few stray grey values (lossy re-saves of the published masks) are snapped to the
    # nearest of 0/128/255; more than 2 % of the pixels means another convention
    near_cellavision = values & {128, 255} and stray <= 0.02 * raw.size
    if convention == "auto":
        if near_cellavision and (stray == 0 or max(values) > len(CELL_PARTS) - 1):
            convention = "cellavision"
        elif max(values) < len(CELL_PARTS):
            convention = "indexed"
        elif (grey := _cytoplasm_grey(uniq, counts, raw.size)) is not None:
            return _snap(raw, {0: 0, grey: 2, 255: 1})
        else:
            raise ImageReadError(path, f"mask values {sorted(values)[:8]} fit neither the "
                                 "CellaVision 0/128/255 (white nucleus, grey cytoplasm, black "
                                 "other) nor the indexed 0..5 convention")
    if convention == "cellavision":
        bad = values - set(CELLAVISION_VALUES)
        if bad and (stray > 0.02 * raw.size or max(values) > 255):
            raise ImageReadError(path, f"CellaVision mask has values {sorted(bad)[:8]} "
                                 f"outside 0/128/255 on {stray} pixels")
        return _snap(raw, CELLAVISION_VALUES)
    if convention == "indexed":
        if max(values) >= len(CELL_PARTS):
            raise ImageReadError(path, f"indexed mask has value {max(values)}; parts are "
                                 f"0..{len(CELL_PARTS) - 1} ({', '.join(CELL_PARTS.classes)})")
        return raw.astype(np.uint8)
    raise ValueError(f"unknown mask convention {convention!r}")


def _cytoplasm_grey(uniq: np.ndarray, counts: np.ndarray, size: int) -> int | None:
    """The grey of a black / grey / white mask whose grey is not CellaVision's 128 (other
    releases of the convention: white nucleus, grey cytoplasm, black other): the one value
    strictly between 0 and 255 that, with 0 and 255, covers at least 98 % of the pixels."""
    major = uniq[counts >= 0.002 * size]
    greys = [int(v) for v in major if 0 < v < 255]
    if uniq.max() > 255 or len(greys) != 1 or not {0, 255} <= set(major.tolist()):
        return None
    covered = counts[np.isin(uniq, [0, greys[0], 255])].sum()
    return greys[0] if covered >= 0.98 * size else None


def _snap(raw: np.ndarray, values: dict[int, int]) -> np.ndarray:
    """Grey values -> part indices, each pixel by the nearest grey of ``values``."""
    greys = np.array(sorted(values))
    lut = np.array([values[int(greys[np.abs(greys - v).argmin()])] for v in range(256)],
                   np.uint8)
    return lut[raw.astype(np.uint8)]


def write_part_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write part indices as a palette PNG (indices preserved, colours for viewing)."""
    from PIL import Image

    from hemascope.io.atomic import atomic_write

    m = np.asarray(mask)
    if m.ndim != 2 or m.min(initial=0) < 0 or m.max(initial=0) >= len(CELL_PARTS):
        raise ValueError(f"part mask must be 2-D with values 0..{len(CELL_PARTS) - 1}")
    im = Image.fromarray(m.astype(np.uint8), mode="P")
    im.putpalette([c for rgb in PALETTE for c in rgb])
    with atomic_write(path, "wb") as fh:
        im.save(fh, format="PNG")
    return Path(path)
