"""Shared fixtures: the reference data folder `shared/data` beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def shared_csv():
    """Path to a file in shared/data, or skip where the folder (or file) is absent."""

    def get(name: str) -> Path:
        path = SHARED / name
        if not path.is_file():
            pytest.skip(f"{path} not available")
        return path

    return get
