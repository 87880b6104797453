"""Shared fixtures: an isolated scalelab home and a tiny corpus written by the test."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from scalelab.builtins import load_builtins
from scalelab.testing import make_corpus

load_builtins()  # the test session is an entry point, like the CLI

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_finish(session):
    """Every run started in this process calls `gc.collect()` first (`release_freed_memory`):
    over the half a million objects the collected test modules, torch and pandas hold, that
    was 0.3 s a run. Freezing them (long-lived, never garbage) leaves each collection only
    what was made since; nothing a test asserts on is among them. Nothing is imported here
    for it: a subprocess inherits this process's peak RSS as its own `ru_maxrss` (vfork),
    which tests/data/test_token_scale.py's 1 GB bound counts (importing transformers'
    modelling early put it at 1.07 GB)."""
    gc.collect()
    gc.freeze()


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
