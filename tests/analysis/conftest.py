"""Shared fixtures: the published reference tables copied into `tests/analysis/data`."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def shared_csv():
    """Path to a reference table in tests/analysis/data (see its README for sources and
    licences); a missing file is an error, never a skip."""

    def get(name: str) -> Path:
        path = DATA / name
        assert path.is_file(), f"{path} is missing from the repository"
        return path

    return get
