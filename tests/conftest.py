"""Shared fixtures: where the real data lives, and tiny settings for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (``../shared/data`` or ``$WEAKSEG_DATA``).

    In CI the data must be there: a missing folder is a failure, not a skip.
    """
    path = Path(os.environ.get("WEAKSEG_DATA", REPO.parent / "shared" / "data"))
    if not (path / "glas-train").is_dir():
        message = f"real data not found at {path}; set WEAKSEG_DATA"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def glas_dir(data_dir: Path) -> Path:
    return data_dir / "glas-train"


@pytest.fixture(scope="session")
def cmu_slide(data_dir: Path) -> Path:
    return data_dir / "slides" / "CMU-1-Small-Region.svs"
