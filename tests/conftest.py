"""Shared fixtures: an isolated scalelab home and a tiny corpus written by the test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from scalelab.builtins import load_builtins

load_builtins()  # the test session is an entry point, like the CLI

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

WORDS = (
    "the cat dog sat on a mat and ran to big small red blue house tree "
    "it was very quick slow happy one two three"
).split()


def make_corpus(folder: Path, n_lines: int = 1500, seed: int = 0) -> Path:
    """train/valid/test .txt files of simple random sentences (learnable structure)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_lines, "valid": n_lines // 10, "test": n_lines // 10}
    for split, n in sizes.items():
        lines = []
        for _ in range(n):
            k = rng.randint(4, 10)
            lines.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(autouse=True)
def scalelab_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("scalelab_home")
    monkeypatch.setenv("SCALELAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))
