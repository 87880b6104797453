"""Every YAML file in the repo loads: experiment specs expand into runs, multiple-choice
task files (`mc_tasks/`) build their questions, prompt files (`prompts/`) render, the
default verbalisers (`data/verbalizers.yaml`) name every label of their datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalelab.data.wordnet import INSTALL
from scalelab.errors import ScalelabError
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
    if "mc_tasks" in path.parts:  # a task file, not an experiment
        from scalelab.data.multiple_choice import load_mc_task

        questions = load_mc_task(str(path)).questions(2, limit=3)
        assert len(questions) == 3 and all(0 <= q.gold < len(q.choices) for q in questions)
        return
    if "prompts" in path.parts:  # a prompt file: it renders a problem with its shots
        from types import SimpleNamespace

        from scalelab.data.prompts import load_prompt

        q = SimpleNamespace(id="q", question="2 + 3?", rationale="2 + 3 = 5.", answer="5")
        text = load_prompt(str(path)).render(q, [q])
        assert text.count("2 + 3?") == 2
        return
    if path.name == "verbalizers.yaml":  # default verbalisers: each catalog dataset's labels
        from scalelab.data.catalog import DATASETS
        from scalelab.data.zero_shot import default_verbalizers, resolve_verbalizers

        for dataset, words in default_verbalizers().items():
            entry = DATASETS.get(dataset)
            assert entry.kind == "classification" and set(words) == set(entry.label_names)
            assert resolve_verbalizers(list(entry.label_names), dataset, None) == [
                words[n] for n in entry.label_names
            ]
        return
    try:
        runs = expand(load_spec(path))
    except ScalelabError as err:
        if INSTALL in str(err):  # EDA's synonyms need WordNet, which this machine lacks
            pytest.skip(str(err))
        raise
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_quickstart_is_a_size_ladder():
    runs = expand(load_spec(REPO / "examples" / "quickstart.yaml"))
    assert len({r.model for r in runs}) >= 5 and {r.method for r in runs} == {"pretrain"}
