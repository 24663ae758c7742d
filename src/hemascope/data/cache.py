"""Decode and resize a list of images once; keep them as one uint8 array on disk.

Training on two cores cannot afford JPEG decoding every epoch: :func:`load_cached`
decodes each image once (in parallel), resizes it with :func:`letterbox_resize` and
stores ``(N, S, S, 3)`` uint8 in ``$HEMASCOPE_CACHE`` (default ``~/.cache/hemascope``),
keyed by the file list, sizes, modification times and ``S``. Epochs then read memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hemascope.data.preprocess import letterbox_resize
from hemascope.errors import ImageReadError


@dataclass(frozen=True)
class CachedImages:
    """Resized images and what could not be read.

    Attributes:
        images: ``(N_ok, S, S, 3)`` uint8, in the order of ``index``.
        index: positions (into the requested path list) of the images in ``images``.
        errors: ``{path: reason}`` for files that could not be decoded (left out).
    """

    images: np.ndarray
    index: np.ndarray
    errors: dict[str, str]


def cache_dir() -> Path:
    return Path(os.environ.get("HEMASCOPE_CACHE", Path.home() / ".cache" / "hemascope"))


def _key(paths: Sequence[Path], size: int) -> str:
    h = hashlib.sha1(f"letterbox-bicubic-v1:{size}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:20]


def _decode(args: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    from hemascope.io.image import read_image

    path, size = args
    try:
        return letterbox_resize(read_image(path), size), None
    except ImageReadError as e:
        return None, e.reason


def _note_inputs(paths: Sequence[str | Path]) -> None:
    from hemascope.io.atomic import note_input

    for p in paths:
        note_input(p)


def decode_images(paths: Sequence[str | Path], size: int, *, workers: int = 2,
                  progress=None) -> CachedImages:
    """Decode and resize ``paths`` (no disk cache); unreadable files are reported."""
    _note_inputs(paths)
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    errors: dict[str, str] = {}
    jobs = [(str(p), size) for p in paths]
    wrap = progress or (lambda it, total: it)
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            results = wrap(pool.map(_decode, jobs, chunksize=64), len(jobs))
            for i, (arr, err) in enumerate(results):
                _store(i, arr, err, out, ok, errors, jobs)
    else:
        for i, (arr, err) in enumerate(wrap(map(_decode, jobs), len(jobs))):
            _store(i, arr, err, out, ok, errors, jobs)
    idx = np.flatnonzero(ok)
    return CachedImages(out[idx] if len(idx) < len(paths) else out, idx, errors)


def _store(i, arr, err, out, ok, errors, jobs) -> None:
    if arr is None:
        errors[jobs[i][0]] = err or "unreadable"
    else:
        out[i] = arr
        ok[i] = True


def load_cached(paths: Sequence[str | Path], size: int, *, workers: int = 2,
                use_disk: bool = True, progress=None) -> CachedImages:
    """Like :func:`decode_images` but reuses (or writes) the on-disk cache."""
    paths = [Path(p) for p in paths]
    _note_inputs(paths)  # read from the cache or by worker processes: still this command's inputs
    if not use_disk:
        return decode_images(paths, size, workers=workers, progress=progress)
    folder = cache_dir() / "images"
    key = _key(paths, size)
    arr_file, meta_file = folder / f"{key}.npy", folder / f"{key}.json"
    if arr_file.is_file() and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            images = np.load(arr_file)  # into memory: epochs index it at random
            return CachedImages(images, np.asarray(meta["index"], np.int64), meta["errors"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    cached = decode_images(paths, size, workers=workers, progress=progress)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.npy"
        np.save(tmp, cached.images)
        os.replace(tmp, arr_file)
        from hemascope.io.atomic import write_json

        write_json(meta_file, {"index": cached.index.tolist(), "errors": cached.errors,
                               "size": size, "n": len(paths)})
    except OSError:
        pass  # a read-only cache folder only costs speed
    return cached
