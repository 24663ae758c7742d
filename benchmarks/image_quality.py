"""How often the image checks of ``hemascope.io.quality`` fire: on every real image here
(each warning is a false alarm: these are ordinary smear photographs and cell crops; the
limits were set after looking at the statistics of 300-image samples of these same sets, so
this is a check, not a held-out measurement), on
degraded copies that must be caught, and on mild changes that must pass.

    python benchmarks/image_quality.py [--sample 200] [--seed 0]

Writes results/image_quality.{json,md}. Real sets: PBC (all 17,092 cells), CellaVision
(100 cells), BCCD and CBC (every field of every split).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import shared_data, write_results

from hemascope.io.image import is_image_file, read_image
from hemascope.io.quality import QualityLimits, image_stats, image_warnings


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if is_image_file(p))


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    s = side / min(h, w)
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                     Image.BILINEAR))


#: Copies that must be caught: the name of the warning each must raise.
DEGRADED = {
    "grayscale": ("grayscale", lambda a: np.repeat(
        (a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        .round().astype(np.uint8), 3, axis=2)),
    "dark (x0.3)": ("very dark", lambda a: (a * 0.3).astype(np.uint8)),
    "washed out (10 % image, 90 % white)": ("washed out",
                                            lambda a: (a * 0.1 + 0.9 * 255).astype(np.uint8)),
    "tiny (shorter side 24 px)": ("only", lambda a: _resize(a, 24)),
    "blank (mean colour)": ("blank", lambda a: np.broadcast_to(
        a.reshape(-1, 3).mean(0).astype(np.uint8), a.shape).copy()),
}
#: Mild changes a lab's images may show: they must pass.
MILD = {
    "darker (x0.7)": lambda a: (a * 0.7).astype(np.uint8),
    "brighter (10 % white)": lambda a: (a * 0.9 + 0.1 * 255).astype(np.uint8),
    "low saturation (50 % gray)": lambda a: (0.5 * a + 0.5 * a.mean(axis=2, keepdims=True)).astype(np.uint8),
    "small (shorter side 64 px)": lambda a: _resize(a, 64),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=200, help="images per set for the copies")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = shared_data()
    sets = {"PBC": _files(data / "pbc" / "PBC_dataset_normal_DIB", "*/*"),
            "CellaVision": _files(data / "cellavision", "*.bmp"),
            "BCCD": _files(data / "bccd" / "JPEGImages", "*"),
            "CBC": _files(data / "cbc", "*/Images/*")}
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    real, copies = {}, {}
    for name, files in sets.items():
        if not files:
            print(f"{name}: no images, left out")
            continue
        stats, warned, sample = [], [], set(rng.choice(len(files), min(args.sample, len(files)),
                                                       replace=False).tolist())
        caught = {k: 0 for k in DEGRADED}
        named = {k: 0 for k in DEGRADED}
        passed = {k: 0 for k in MILD}
        for i, f in enumerate(files):
            a = read_image(f)
            st = image_stats(a)
            stats.append((st.min_side, st.contrast, st.colour, st.brightness))
            if image_warnings(a):
                warned.append(f"{f.relative_to(data)}: {'; '.join(image_warnings(a))}")
            if i in sample:
                for k, (want, fn) in DEGRADED.items():
                    ws = image_warnings(fn(a))
                    caught[k] += bool(ws)
                    named[k] += any(w.startswith(want) for w in ws)
                for k, fn in MILD.items():
                    passed[k] += not image_warnings(fn(a))
        s = np.array(stats)
        real[name] = {"images": len(files), "warned": len(warned), "warned_files": warned[:20],
                      "min_side_min": int(s[:, 0].min()), "contrast_min": round(float(s[:, 1].min()), 1),
                      "colour_min": round(float(s[:, 2].min()), 1),
                      "brightness_range": [round(float(s[:, 3].min()), 1), round(float(s[:, 3].max()), 1)]}
        copies[name] = {"n": len(sample), "caught": caught, "named": named, "passed": passed}
        print(f"{name}: {len(files)} images, {len(warned)} warned ({time.perf_counter() - t0:.0f} s)")
    lim = QualityLimits()
    lines = ["## Image checks (`hemascope.io.quality`): false alarms on real images, degraded copies caught",
             "",
             f"Limits: shorter side >= {lim.min_side} px, luminance spread >= {lim.min_contrast}, "
             f"colour spread (99th pct of max-min channel) >= {lim.min_colour}, mean brightness "
             f"{lim.min_brightness:.0f}-{lim.max_brightness:.0f}.",
             "",
             "| set | images | warned (false alarms) | smallest side | lowest luminance spread "
             "| lowest colour spread | mean brightness range |",
             "|---|---|---|---|---|---|---|"]
    for name, r in real.items():
        lo, hi = r["brightness_range"]
        lines.append(f"| {name} | {r['images']} | {r['warned']} | {r['min_side_min']} | "
                     f"{r['contrast_min']} | {r['colour_min']} | {lo}-{hi} |")
    lines += ["", "Copies of a seeded sample per set: caught = some warning fired (in brackets: "
              "the warning named after the change, e.g. a field washed out to 10 % is called "
              "blank instead); passed = no warning.", "",
              "| change | " + " | ".join(copies) + " |", "|---|" + "---|" * len(copies)]
    for k in DEGRADED:
        lines.append(f"| caught: {k} | " + " | ".join(
            f"{c['caught'][k]} / {c['n']} ({c['named'][k]})" for c in copies.values()) + " |")
    for k in MILD:
        lines.append(f"| passed: {k} | " + " | ".join(
            f"{c['passed'][k]} / {c['n']}" for c in copies.values()) + " |")
    lines += ["", f"Command: `python benchmarks/image_quality.py --sample {args.sample} --seed "
              f"{args.seed}` ({time.perf_counter() - t0:.0f} s)."]
    write_results("image_quality", {"limits": lim.__dict__, "sample": args.sample,
                                    "seed": args.seed, "real": real, "copies": copies},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
