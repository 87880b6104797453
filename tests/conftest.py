"""Shared fixtures: an isolated scalelab home and a tiny corpus written by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalelab.builtins import load_builtins
from scalelab.testing import make_corpus

load_builtins()  # the test session is an entry point, like the CLI

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def scalelab_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("scalelab_home")
    monkeypatch.setenv("SCALELAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster per test module (2 CPUs, no dashboard): executors find it
    initialized and use it, and leave it running."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
