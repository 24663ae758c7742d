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
