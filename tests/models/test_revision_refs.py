"""Naming a run's kept model (a revision, `revisions/<tokens>/` beside `model/`): a run
folder or its model folder with `@<tokens>`, a run product with a revision; a missing one
names those that exist; Hub ids keep their revision for `from_pretrained`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import save_tiny

from scalelab.errors import ScalelabError
from scalelab.models import registry
from scalelab.models.registry import ModelRef, model_path, resolve_model


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder as pretrain leaves it: model/ and revisions/<tokens>/ (a temp folder of
    an interrupted write beside them)."""
    run = tmp_path / "runs" / "0123456789abcdef"
    save_tiny(run / "model", "gpt2", n_layer=1)
    for tokens in ("20000", "3000"):
        save_tiny(run / "revisions" / tokens, "gpt2", n_layer=1)
    (run / "revisions" / ".20000.tmp-host-1-abcd").mkdir()
    return run


def test_a_run_or_model_folder_at_a_revision_is_that_revisions_folder(run_dir):
    for name in (f"{run_dir}/model@3000", f"{run_dir}@3000"):
        ref = resolve_model(name)
        assert (ref.kind, ref.revision, ref.name) == ("local", "3000", name)
        assert model_path(ref) == (str(run_dir / "revisions" / "3000"), {})
        # both spellings are one model to the run id: the revision's folder
        assert ref.config_name == str(run_dir / "revisions" / "3000")
    assert model_path(resolve_model(f"{run_dir}/model")) == (str(run_dir / "model"), {})


def test_a_missing_revision_names_those_that_exist(run_dir):
    message = f"no revision '1000' in {run_dir / 'revisions'} (revisions: 3000, 20000)"
    with pytest.raises(ScalelabError, match=re.escape(message)):
        resolve_model(f"{run_dir}/model@1000")
    bare = run_dir.parent / "other"
    save_tiny(bare / "model", "gpt2", n_layer=1)
    with pytest.raises(ScalelabError, match=r"\(revisions: none; pretrain keeps them with"):
        resolve_model(f"{bare}/model@1000")


def test_a_run_product_at_a_revision_has_its_own_config_name_and_folder(run_dir):
    runs = run_dir.parent
    final = ModelRef.for_run(run_dir.name, runs)
    early = ModelRef.for_run(run_dir.name, runs, revision="3000")
    late = ModelRef.for_run(run_dir.name, runs, "@teacher:gpt-d1@20000", "20000")
    assert final.config_name == f"run:{run_dir.name}"
    assert early.config_name == f"run:{run_dir.name}@3000" == early.name
    assert len({final.config_name, early.config_name, late.config_name}) == 3
    assert model_path(early)[0] == str(run_dir / "revisions" / "3000")
    assert model_path(late)[0] == str(run_dir / "revisions" / "20000")
    with pytest.raises(ScalelabError, match=r"no revision '5' .*\(revisions: 3000, 20000\)"):
        model_path(ModelRef.for_run(run_dir.name, runs, revision="5"))


def test_a_hub_id_keeps_its_revision_for_from_pretrained(monkeypatch):
    monkeypatch.setattr(registry, "check_hub_available", lambda ref: None)
    ref = resolve_model("org/name@abc123")
    assert ref.kind == "hub" and model_path(ref) == ("org/name", {"revision": "abc123"})
