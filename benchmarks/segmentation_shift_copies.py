"""How much of the old "mirrored" shift rows' ground truth was mirrored copies of the cell.

    python benchmarks/segmentation_shift_copies.py

Until 2026-11-27 ``segmentation_shift.py`` padded a shrunk CellaVision cell back to size by
mirroring image *and mask*, so mirrored copies of the white cell counted as cell. This
counts, over all 100 cells, the share of nucleus and cytoplasm mask pixels that lay in the
mirrored margin (copies) at each scale. Writes ``results/segmentation_shift_copies.{json,md}``.
"""

from __future__ import annotations

import cv2
import numpy as np

from _common import shared_data, write_results
from segmentation_shift import _resize


def main() -> None:
    from hemascope.segment.data import find_mask_pairs, load_pair

    pairs, _ = find_mask_pairs(shared_data() / "cellavision")
    shares = {}
    for f in (0.6, 0.45):
        outside = {1: 0, 2: 0}
        total = {1: 0, 2: 0}
        for pair in pairs:
            image, mask = load_pair(pair)
            h, w = mask.shape
            _, m = _resize(image, mask, f)
            t, l = (h - m.shape[0]) // 2, (w - m.shape[1]) // 2
            mirrored = cv2.copyMakeBorder(m, t, h - m.shape[0] - t, l, w - m.shape[1] - l,
                                          cv2.BORDER_REFLECT_101)
            inner = np.zeros(mask.shape, bool)
            inner[t:t + m.shape[0], l:l + m.shape[1]] = True
            for c in (1, 2):
                outside[c] += int(((mirrored == c) & ~inner).sum())
                total[c] += int((mirrored == c).sum())
        shares[str(f)] = {"nucleus": round(outside[1] / total[1], 3),
                          "cytoplasm": round(outside[2] / total[2], 3)}
        print(f, shares[str(f)], flush=True)
    lines = ["## Old mirrored shift rows: share of mask pixels that were mirrored copies", "",
             "| scale | nucleus | cytoplasm |", "|---|---|---|"]
    lines += [f"| x{f} | {v['nucleus']:.3f} | {v['cytoplasm']:.3f} |" for f, v in shares.items()]
    write_results("segmentation_shift_copies", {"n_images": len(pairs), "copies": shares},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
