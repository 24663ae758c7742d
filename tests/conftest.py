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


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the image cache of tests out of the user's ~/.cache."""
    old = os.environ.get("HEMASCOPE_CACHE")
    os.environ["HEMASCOPE_CACHE"] = str(tmp_path_factory.mktemp("hemascope-cache"))
    yield
    if old is None:
        os.environ.pop("HEMASCOPE_CACHE", None)
    else:
        os.environ["HEMASCOPE_CACHE"] = old


@pytest.fixture(scope="session")
def synthetic_cells(tmp_path_factory) -> Path:
    """4 classes x 16 synthetic cells (48 px), a set a tiny CNN learns in seconds."""
    from hemascope.io.image import write_image
    from hemascope.synthetic import make_cell

    root = tmp_path_factory.mktemp("synthetic_cells")
    for kind in ("eosinophil", "lymphocyte", "monocyte", "neutrophil"):
        for i in range(16):
            write_image(root / kind / f"{i:02d}.png", make_cell(kind, seed=100 + i, size=48).image)
    return root


@pytest.fixture(scope="session")
def shifted(tmp_path_factory) -> Path:
    """Another "lab": 2 classes x 6 synthetic cells with a colour cast (for adaptation)."""
    import numpy as np

    from hemascope.io.image import write_image
    from hemascope.synthetic import make_cell

    root = tmp_path_factory.mktemp("shifted")
    for kind in ("lymphocyte", "neutrophil"):
        for i in range(6):
            img = make_cell(kind, seed=700 + i, size=48).image.astype(float) * [0.7, 0.85, 1.15]
            write_image(root / kind / f"{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def tiny_model(synthetic_cells, tmp_path_factory) -> Path:
    """A tinycnn trained for a few epochs on ``synthetic_cells`` (a real model folder)."""
    from hemascope.data.folder import read_class_folders
    from hemascope.train.classifier import train_classifier
    from hemascope.train.config import ClassifierTrainConfig

    out = tmp_path_factory.mktemp("tiny_model")
    cfg = ClassifierTrainConfig(arch="tinycnn", image_size=32, epochs=8, batch_size=16, lr=3e-3,
                                threads=1)
    train_classifier(read_class_folders(synthetic_cells), cfg, out, log=lambda s: None)
    return out
