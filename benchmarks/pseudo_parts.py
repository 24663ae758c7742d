"""The classical pseudo-labels of all cell parts (``segment pseudo --all-parts``): what can be
checked without pixel masks for vacuoles, platelets and red cells.

    python benchmarks/pseudo_parts.py [--n 1500] [--name pseudo_parts]

- **Vacuoles vs WBCAtt**: a seeded sample of ``--n`` WBCAtt cells (all three splits; the
  rules learn nothing, so no split is needed) whose ``cytoplasm_vacuole`` is annotated. A
  cell is called vacuolated when the rules find any vacuole pixel; precision, recall and F1
  of that call against the annotation, overall and per cell type.
- **Red cells and platelets on CellaVision**: the expert masks mark the white cell (nucleus
  and cytoplasm) and nothing else, so the share of pseudo red-cell and platelet pixels that
  fall on the expert's white cell is an error rate (lower is better); the share of images
  with a red cell found is reported beside it.
- **Rates on the same PBC sample**: how often each part is found, and the median share of
  the image labelled red cell.

The thresholds of the rules were fixed before this script first ran. Writes
``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from _common import machine, shared_data, write_results

VACUOLE, PLATELET, RBC = 3, 4, 5


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    p = tp / max(int(pred.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "called": int(pred.sum()), "annotated": int(truth.sum()), "cells": int(len(truth))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--name", default="pseudo_parts")
    args = ap.parse_args()

    from hemascope.data.tables import read_wbcatt_folder
    from hemascope.io.image import read_image
    from hemascope.io.masks import read_part_mask
    from hemascope.segment.data import find_mask_pairs
    from hemascope.segment.parts import classical_parts

    data = shared_data()
    ds = read_wbcatt_folder(data / "wbcatt", image_root=data / "pbc")
    rows = [s for s in ds.samples if s.attributes.get("cytoplasm_vacuole") in ("yes", "no")]
    pick = np.sort(np.random.default_rng(0).choice(len(rows), min(args.n, len(rows)),
                                                   replace=False))
    truth, called, kinds, found, rbc_share = [], [], [], defaultdict(int), []
    t = time.perf_counter()
    for i in pick:
        s = rows[i]
        parts = classical_parts(read_image(ds.root / s.path), all_parts=True)
        truth.append(s.attributes["cytoplasm_vacuole"] == "yes")
        called.append(bool((parts == VACUOLE).any()))
        kinds.append(s.label)
        for k, name in ((VACUOLE, "vacuole"), (PLATELET, "platelet"), (RBC, "red cell")):
            found[name] += bool((parts == k).any())
        rbc_share.append(float((parts == RBC).mean()))
    seconds = (time.perf_counter() - t) / len(pick)
    truth, called, kinds = np.array(truth), np.array(called), np.array(kinds)
    vac = {"all": prf(called, truth),
           **{k: prf(called[kinds == k], truth[kinds == k]) for k in sorted(set(kinds))}}

    pairs, _ = find_mask_pairs(data / "cellavision")
    on_cell = {"red cell": [0, 0], "platelet": [0, 0]}
    with_rbc = 0
    for pair in pairs:
        parts = classical_parts(read_image(pair.image), all_parts=True)
        cell = read_part_mask(pair.mask) > 0
        for k, name in ((RBC, "red cell"), (PLATELET, "platelet")):
            on_cell[name][0] += int(((parts == k) & cell).sum())
            on_cell[name][1] += int((parts == k).sum())
        with_rbc += bool((parts == RBC).any())
    cv = {name: {"pixels": n, "on_expert_white_cell": hit, "share_on_cell": hit / max(n, 1)}
          for name, (hit, n) in on_cell.items()}
    payload = {"vacuoles_vs_wbcatt": vac, "pbc_sample": {
        "cells": int(len(pick)), "found": {k: v / len(pick) for k, v in found.items()},
        "median_red_cell_share": float(np.median(rbc_share)), "seconds_per_image": seconds},
        "cellavision": {"images": len(pairs), "with_red_cell": with_rbc, **cv},
        "machine": machine()}
    vrows = [f"| {k} | {v['cells']} | {v['annotated']} | {v['called']} | {v['precision']:.3f} | "
             f"{v['recall']:.3f} | {v['f1']:.3f} |" for k, v in vac.items()]
    table = f"""## Classical pseudo-labels of all cell parts (`segment pseudo --all-parts`)

Vacuoles against WBCAtt's `cytoplasm_vacuole` (a seeded sample of {len(pick)} annotated cells;
called when the rules find any vacuole pixel):

| cells | n | annotated yes | called yes | precision | recall | F1 |
|---|---|---|---|---|---|---|
{chr(10).join(vrows)}

Red cells and platelets on CellaVision ({len(pairs)} cells with expert white-cell masks): a red
cell was found in {with_rbc} images; {cv['red cell']['share_on_cell']:.1%} of the red-cell pixels and
{cv['platelet']['share_on_cell']:.1%} of the platelet pixels lie on the expert's white cell (errors).

On the PBC sample: a red cell is found in {found['red cell'] / len(pick):.0%} of the images, a platelet
in {found['platelet'] / len(pick):.0%}, a vacuole in {found['vacuole'] / len(pick):.0%}; red cells cover a median
{np.median(rbc_share):.0%} of the image. {seconds * 1000:.0f} ms per image."""
    write_results(args.name, payload, table)


if __name__ == "__main__":
    main()
