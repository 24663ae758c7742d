"""Atomic file writes: a reader never sees a half-written output, a crash leaves none.

Data is written to a temporary file in the target's folder, flushed, fsynced and renamed
over the target with :func:`os.replace` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from hemascope.errors import HemascopeError

#: Files read as inputs during the current command (see :func:`guarding_inputs`).
_inputs: set[str] | None = None


@contextlib.contextmanager
def guarding_inputs() -> Iterator[None]:
    """Within this block every file read as an input (images, masks, tables, model weights,
    stain references) is remembered, and no output may be written over one of them. The CLI
    runs each command inside it; the Python API leaves it to the caller."""
    global _inputs
    previous, _inputs = _inputs, set()
    try:
        yield
    finally:
        _inputs = previous


def note_input(path: str | Path) -> None:
    """Remember ``path`` as an input of the current command (no-op outside the guard)."""
    if _inputs is not None:
        with contextlib.suppress(OSError):
            _inputs.add(str(Path(path).resolve()))



@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, encoding: str = "utf-8",
                 protect: Iterable[str | Path] = ()) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing and move it into place on success.

    Args:
        path: final file path; its folder is created if needed.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding for ``"w"``.
        protect: input files that must never be overwritten (raises if ``path`` is one).
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write mode must be 'w' or 'wb'")
    target = Path(path)
    guard_inputs(target, protect)
    if _inputs and str(target.resolve()) in _inputs:
        raise HemascopeError(f"refusing to overwrite input file {target}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _write_error(target, e) from None
    try:
        with os.fdopen(fd, mode, **({"encoding": encoding, "newline": ""} if mode == "w" else {})) as fh:
            yield fh
            _finish(target, fh.flush, lambda: os.fsync(fh.fileno()))
        # mkstemp makes 0600 files; give the output the permissions a plain open() would
        _finish(target, lambda: os.chmod(tmp, 0o666 & ~_umask()), lambda: os.replace(tmp, target))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _finish(target: Path, *steps) -> None:
    """Run the closing steps of a write; an OS failure (disk full, a folder in the way)
    becomes a :class:`HemascopeError` that names the file."""
    try:
        for step in steps:
            step()
    except OSError as e:
        raise _write_error(target, e) from None


def _write_error(target: Path, e: OSError) -> HemascopeError:
    if target.is_dir():
        return HemascopeError(f"cannot write {target}: a folder of that name is in the way")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                return HemascopeError(f"cannot write {target}: {parent} is a file, not a folder")
            break
    return HemascopeError(f"cannot write {target}: {e.strerror or e}")


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_text(path: str | Path, text: str, **kw: Any) -> Path:
    with atomic_write(path, "w", **kw) as fh:
        fh.write(text)
    return Path(path)


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as standard JSON text: NaN and infinities (an undefined metric, e.g. the AP of
    a class a split lacks) become ``null``, which every JSON reader accepts."""
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, **kw: Any) -> Path:
    """Serialise ``obj`` as UTF-8 JSON atomically (keys kept in insertion order)."""
    return write_text(path, json_text(obj, indent=indent), **kw)


def guard_inputs(target: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise if ``target`` resolves to one of ``inputs`` (outputs never overwrite inputs)."""
    t = Path(target).resolve()
    for p in inputs:
        if Path(p).resolve() == t:
            raise HemascopeError(f"refusing to overwrite input file {p}")


def check_output_folder(out: str | Path, *, not_inside: Iterable[str | Path] = ()) -> Path:
    """Check, before any work and without creating anything, that a run's output folder can
    be made: not inside an input data folder (whose reader would take the outputs for
    data), not a file, under a folder that can be written. Returns it resolved.

    Raises:
        HemascopeError: naming the problem.
    """
    target = Path(out).resolve()
    for d in not_inside:
        d = Path(d).resolve()
        if d.is_dir() and (target == d or d in target.parents):
            raise HemascopeError(f"the output folder {out} lies inside the input folder {d}: "
                                 "choose a place outside it")
    if target.exists() and not target.is_dir():
        raise HemascopeError(f"the output folder {out} is a file")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise HemascopeError(f"cannot make the output folder {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HemascopeError(f"cannot make the output folder {out}: {existing} is not writable")
    return target


def refuse_existing(paths: Iterable[str | Path], *, overwrite: bool) -> None:
    """Raise if any of ``paths`` exists and ``overwrite`` is false (writers' default)."""
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise HemascopeError(f"refusing to overwrite existing {p} (--overwrite, or overwrite=True in Python, replaces it)")
