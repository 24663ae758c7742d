"""hemascope: white-blood-cell differentials with evidence from smear images.

``import hemascope`` is kept cheap: submodules (and torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("cli", "data", "errors", "io", "problems", "synthetic", "taxonomy")


def __getattr__(name: str) -> Any:
    if name == "analyze":  # the main job's Python API: hemascope.analyze(paths, out_dir=...)
        from hemascope.pipeline import analyze

        return analyze
    if name in _SUBMODULES:
        return importlib.import_module(f"hemascope.{name}")
    raise AttributeError(f"module 'hemascope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES, "analyze"])
