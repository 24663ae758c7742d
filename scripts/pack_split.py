"""Pack the train/val images of a class-folder set small enough to travel to a GPU machine.

The GPU machine sees only the repository (64 MiB in all), not ``../shared``. This writes
each image of the chosen parts of a split file letterboxed to ``--size`` (exactly what
training would cache) as WebP under ``OUT/<folder>/``, and ``OUT/split.json`` naming the
copies, so that the ordinary command trains there::

    python scripts/pack_split.py --data ../shared/data/pbc/PBC_dataset_normal_DIB \
        --split splits/pbc8_seed0.json --out .devdata/pbc8 --size 160 --quality 80
    hemascope train classifier --data .devdata/pbc8/PBC_dataset_normal_DIB \
        --split .devdata/pbc8/split.json --image-size 160 ...

The test part is never packed: the trained model is scored here on the original images
(``hemascope evaluate classifier --split test`` with the original split file).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from pack_wbcatt import pack_all

from hemascope.data.splits import load_split, save_split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="class-folder data set")
    ap.add_argument("--split", required=True, help="split file of that set")
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="train,val")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--quality", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    data, out, keep = Path(a.data), Path(a.out), set(a.parts.split(","))
    split = load_split(a.split)
    chosen = {k: p for k, p in split.assignments.items() if p in keep}
    if not chosen:
        raise SystemExit(f"{a.split}: no image in the parts {sorted(keep)}")
    renamed = {Path(k).with_suffix(".webp").as_posix(): p for k, p in chosen.items()}
    jobs = [(str(data / k), str(out / data.name / Path(k).with_suffix(".webp")), a.size, a.quality)
            for k in chosen]
    summary = pack_all(jobs, a.workers)
    save_split(out / "split.json", replace(split, assignments=renamed,
                                           dataset=f"{split.dataset} (packed: {a.parts})"))
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
