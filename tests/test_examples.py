"""Every YAML file in the repo is an experiment spec that loads and expands."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalelab.grid.spec import expand, load_spec

REPO = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".git", "scalelab-results", "node_modules"}
YAMLS = sorted(
    p
    for p in [*REPO.rglob("*.yaml"), *REPO.rglob("*.yml")]
    if not SKIP & set(p.relative_to(REPO).parts)
)


def test_the_repo_has_examples():
    assert any(p.name == "quickstart.yaml" for p in YAMLS)


@pytest.mark.parametrize("path", YAMLS, ids=[str(p.relative_to(REPO)) for p in YAMLS])
def test_yaml_loads_and_expands(path):
    runs = expand(load_spec(path))
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_quickstart_is_a_size_ladder():
    runs = expand(load_spec(REPO / "examples" / "quickstart.yaml"))
    assert len({r.model for r in runs}) >= 5 and {r.method for r in runs} == {"pretrain"}
