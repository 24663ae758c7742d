"""Small helpers shared by the command modules: output, progress, formatter."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from hemascope.io.atomic import write_json


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description's line breaks.

    An on/off flag (``--no-zoom``, ``--tta``) shows no default: "(default: True)" under
    ``--no-zoom`` reads as if the flag were on by default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help
        return super()._get_help_string(action)


def number(kind: type = int, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False):
    """An argparse ``type`` for a number within bounds: a bad value is a usage error (exit 2)
    that states the bounds, instead of a failure deep in the run."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if (v != v or v in (float("inf"), float("-inf")) or (low is not None and (v <= low if low_open else v < low))
                or (high is not None and (v >= high if high_open else v > high))):
            lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low}"
            hi = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(f"must be in {lo}, {hi}, got {text}")
        return v

    parse.__name__ = kind.__name__
    return parse


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                        help="machine-readable JSON: to stdout, or to the file OUT")


def emit_json(obj: Any, dest: str) -> None:
    """Print JSON to stdout (``-``) or write it atomically to a file."""
    if dest == "-":
        json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        write_json(dest, obj)
        print(f"wrote {dest}", file=sys.stderr)


def output_stems(files: Sequence[Path]) -> dict[Path, str]:
    """A distinct output name stem for every input file: its own stem, or, where stems
    repeat (``a/x.jpg``, ``b/x.jpg``, ``a/x.png``), its path below the inputs' common folder
    with the suffix kept (``a__x_jpg``), so that no output overwrites another."""
    import os
    from collections import Counter

    from hemascope.pipeline.analyzer import image_key

    counts = Counter(f.stem for f in files)
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else Path()
    out, used = {}, set()
    for f in files:
        stem = f.stem if counts[f.stem] == 1 else image_key(f, root, keep_suffix=True)
        base, n = stem, 1
        while stem in used:
            n += 1
            stem = f"{base}_{n}"
        used.add(stem)
        out[f] = stem
    return out


def progress(items: Iterable, *, desc: str, total: int | None = None) -> Iterable:
    """A tqdm bar on an interactive terminal, the bare iterable otherwise."""
    if not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, total=total, unit="img", leave=False)


def iter_images(paths, *, desc: str, limit: int | None = None):
    """Yield ``(path, image or None, error or None)`` for files and folders (recursive).

    Unreadable files come back with their reason instead of raising, so a batch goes on.
    """
    from hemascope.classify import expand_paths
    from hemascope.errors import ImageReadError
    from hemascope.io.image import read_image

    files = expand_paths(paths)[:limit]
    for f in progress(files, desc=desc, total=len(files)):
        try:
            yield f, read_image(f), None
        except ImageReadError as e:
            yield f, None, e.reason


def print_skipped(errors: dict[str, str]) -> None:
    for path, reason in errors.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)


def finish_batch(errors: dict[str, str], n_done: int) -> int:
    """List the skipped files; the exit code: 0, or 1 with an ``error:`` line when no input
    could be used at all."""
    print_skipped(errors)
    if n_done:
        return 0
    print(f"error: none of the {len(errors)} input file(s) could be used (reasons above)",
          file=sys.stderr)
    return 1
