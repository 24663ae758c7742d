"""Join the output folders of sharded ``analyze`` runs into one run (``hemascope report merge``).

An archive too large for one machine is analysed as n jobs, ``analyze --shard k/n`` each
into its own folder (a cluster array job, or n terminals). Every image keeps the key it
would have in a single run, so the parts never collide. :func:`merge_runs` checks that the
parts belong together (finished, same models and options, shards 1..n each once), copies
their per-image files, and writes the run-level files (cells.csv, differential.csv, COCO,
CVAT, errors, manifest, report) over all of them, as a single run would have.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hemascope.errors import HemascopeError
from hemascope.io.atomic import atomic_write
from hemascope.pipeline.analyzer import AnalysisResult
from hemascope.pipeline.outputs import (RUN_FORMAT, clear_earlier_run, fingerprint_diff,
                                        prepare_out_dir, write_run_outputs)
from hemascope.pipeline.records import RESULT_FORMAT, ImageResult

#: Per-image outputs besides images/<key>.json, as (folder, pattern) with {key}.
_PER_IMAGE = (("overlays", "{key}.png"), ("geojson", "{key}.geojson"), ("review", "{key}_*.png"))


@dataclass
class MergeResult(AnalysisResult):
    """A merged run, and the shards (``k/n``) it lacks (only with ``allow_missing``)."""

    missing_shards: list[str] = field(default_factory=list)


def merge_runs(runs: Sequence[str | Path], out_dir: str | Path, *,
               allow_missing: bool = False) -> MergeResult:
    """Merge finished ``analyze`` output folders into ``out_dir`` (created; an earlier run
    there is replaced; the parts are only read).

    Args:
        runs: the output folders of the parts (usually ``analyze --shard k/n`` runs).
        out_dir: the merged run's folder; not one of ``runs`` nor inside one.
        allow_missing: merge even when shards of the same split are missing (the manifest
            lists which); otherwise that is an error.

    Raises:
        HemascopeError: a folder that is no finished run, parts made with other models or
            options, a shard given twice or missing, an image found in two parts.
    """
    if not runs:
        raise HemascopeError("no run folder to merge")
    folders = [Path(r).resolve() for r in runs]
    out = Path(out_dir).resolve()
    if len(set(folders)) != len(folders):
        raise HemascopeError("a run folder is given twice")
    manifests = [_manifest(f) for f in folders]
    for f in folders:
        if out == f or f in out.parents or out in f.parents:
            raise HemascopeError(f"the merged folder {out} and the run {f} must not contain each other")
    _check_same(folders, manifests)
    missing = _check_shards(folders, manifests)
    if missing and not allow_missing:
        raise HemascopeError(f"shards {', '.join(missing)} are missing: give every part's folder, "
                             "or --allow-missing to merge what is there")
    results, sources, errors = [], {}, {}
    for f in folders:
        for r in _results(f):
            where = sources.get(r.key)
            if where is not None:
                raise HemascopeError(f"image {r.file} (key {r.key}) is in both {where} and {f}: "
                                     "were the parts made from the same inputs and shard count?")
            sources[r.key] = f
            results.append(r)
        errors.update(_errors(f))
    prepare_out_dir(out)
    clear_earlier_run(out)
    for r in results:
        src = sources[r.key]
        for sub, pattern in _PER_IMAGE:
            for p in sorted((src / sub).glob(pattern.format(key=r.key))):
                _copy(p, out / sub / p.name)
    for r in results:  # images/<key>.json last, as analyze does: it marks an image done
        _copy(sources[r.key] / "images" / f"{r.key}.json", out / "images" / f"{r.key}.json")
    results.sort(key=lambda r: (r.source or r.file, r.key))
    seconds: dict[str, float] = {}
    for m in manifests:
        for k, v in (m.get("seconds") or {}).items():
            seconds[k] = round(seconds.get(k, 0.0) + float(v), 3)
    result = MergeResult(out, results, errors, sum(int(m.get("resumed", 0)) for m in manifests),
                         seconds, missing_shards=missing)
    write_run_outputs(out, result, _merged_manifest(folders, manifests, result, missing))
    return result


def _manifest(folder: Path) -> dict[str, Any]:
    p = folder / "manifest.json"
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HemascopeError(f"{folder} is not an analyze output folder (no manifest.json)") from None
    except (OSError, ValueError) as e:
        raise HemascopeError(f"cannot read {p}: {e}") from None
    if not isinstance(m, dict) or m.get("format") != RUN_FORMAT:
        raise HemascopeError(f"{p} is not the manifest of a hemascope analyze run")
    if not m.get("complete"):
        raise HemascopeError(f"the run in {folder} did not finish: finish it (`hemascope analyze "
                             "... --resume` with the same options) before merging")
    return m


def _check_same(folders: Sequence[Path], manifests: Sequence[dict[str, Any]]) -> None:
    first = manifests[0].get("fingerprint") or {}
    for f, m in zip(folders[1:], manifests[1:]):
        diff = fingerprint_diff(first, m.get("fingerprint") or {})
        if diff:
            raise HemascopeError(f"{f} was analysed with other settings than {folders[0]} "
                                 f"({'; '.join(diff)}): only parts of one run can be merged")


def _check_shards(folders: Sequence[Path], manifests: Sequence[dict[str, Any]]) -> list[str]:
    """The missing shards (``k/n``) of a split; raise on a shard given twice or mixed splits."""
    shards = [m.get("shard") for m in manifests]
    if not any(shards):
        return []
    if not all(shards):
        plain = [str(f) for f, s in zip(folders, shards) if not s]
        raise HemascopeError(f"{', '.join(plain)} is a whole run, not a shard: merge shards of "
                             "one split, or whole runs, not both")
    counts = {int(s[1]) for s in shards}
    if len(counts) != 1:
        raise HemascopeError(f"the parts come from splits into {sorted(counts)} shards: merge the "
                             "shards of one split")
    n = counts.pop()
    seen: dict[int, Path] = {}
    for f, s in zip(folders, shards):
        k = int(s[0])
        if k in seen:
            raise HemascopeError(f"shard {k}/{n} is given twice: {seen[k]} and {f}")
        seen[k] = f
    return [f"{k}/{n}" for k in range(1, n + 1) if k not in seen]


def _results(folder: Path) -> list[ImageResult]:
    out = []
    for p in sorted((folder / "images").glob("*.json")):
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(d, dict) or d.get("format") != RESULT_FORMAT:
                continue
            out.append(ImageResult.from_dict(d))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HemascopeError(f"damaged result {p}: {e} (analyse that part again with "
                                 "--resume)") from None
    return out


def _errors(folder: Path) -> dict[str, str]:
    p = folder / "errors.csv"
    if not p.is_file():
        return {}
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            return {row["file"]: row["reason"] for row in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error) as e:
        raise HemascopeError(f"cannot read {p}: {e}") from None


def _copy(src: Path, dst: Path) -> None:
    """Copy a file into place atomically (a crash leaves no half file)."""
    try:
        with src.open("rb") as fin, atomic_write(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    except OSError as e:
        raise HemascopeError(f"cannot copy {src} to {dst}: {e.strerror or e}") from None


def _merged_manifest(folders: Sequence[Path], manifests: Sequence[dict[str, Any]],
                     result: AnalysisResult, missing: list[str]) -> dict[str, Any]:
    first = manifests[0]
    done = sum(int(m.get("analysed_now", 0)) for m in manifests)
    work = sum(v for k, v in result.seconds.items() if k != "total")
    return {"format": RUN_FORMAT, "complete": True, "versions": first.get("versions"),
            "options": first.get("options"), "models": first.get("models"),
            "fingerprint": first.get("fingerprint"),
            "merged_from": [{"folder": str(f), "shard": m.get("shard"),
                             "inputs": m.get("inputs"), "errors": m.get("errors"),
                             "machine": m.get("machine")} for f, m in zip(folders, manifests)],
            "missing_shards": missing,
            "inputs": sum(int(m.get("inputs", 0)) for m in manifests), "analysed_now": done,
            "resumed": result.resumed, "errors": len(result.errors), "cells": len(result.cells),
            "seconds": result.seconds,  # summed over the parts: machine time, not wall time
            "seconds_per_image": round(work / max(done, 1), 4)}
