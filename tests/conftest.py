"""Shared fixtures: synthetic images and annotations, and the optional real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("HEMASCOPE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it are skipped when it is absent."""
    root = _shared_data()
    if not root.is_dir():
        pytest.skip(f"real data not available at {root}")
    return root


@pytest.fixture
def cell_folder(tmp_path: Path) -> Path:
    """A tiny class-folder set: 3 classes x 4 synthetic cells, named like PBC files."""
    from hemascope.io.image import write_image
    from hemascope.synthetic import make_cell

    root = tmp_path / "cells"
    prefixes = {"neutrophil": ("SNE", "BNE"), "lymphocyte": ("LY",), "eosinophil": ("EO",)}
    for folder, kind in (("Neutrophil", "neutrophil"), ("LYMPHOCYTE", "lymphocyte"),
                         ("eosinophils", "eosinophil")):
        for i in range(4):
            pre = prefixes[kind][i % len(prefixes[kind])]
            write_image(root / folder / f"{pre}_{i}.png", make_cell(kind, seed=i, size=32).image)
    return root
