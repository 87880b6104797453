"""Revisions of a pretraining run (`keep_checkpoints`): the model after the first step that
reaches each token count is kept in `revisions/<count>/`, equal to a run trained straight to
that step, loadable like the final model and nameable in a later stage (`@stage@<count>`);
a resumed run keeps what it already saved; bad counts are one-line spec errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import cli, write_spec

from scalelab.errors import ScalelabError
from scalelab.grid.spec import expand, load_spec
from scalelab.grid.store import ResultsStore
from scalelab.models.backends import open_backend
from scalelab.models.registry import resolve_model

B, T = 8, 32  # batch size, sequence length: one step is 256 tokens
TASK = {"kind": "lm", "seq_len": T, "tokenizer": {"kind": "byte"}, "eval": {"max_tokens": 1000}}
# A constant lr without warmup: the model after step s does not depend on the run's length.
COMMON = {"batch_size": B, "lr": 3e-3, "schedule": "constant", "warmup_frac": 0.0}
EARLY, LATE = 5 * B * T, 12 * B * T - 100  # 1280 tokens: step 5; 2972 tokens: step 12


def revision_spec(path: Path, corpus: Path, out: Path, **over) -> Path:
    """A 20-step gpt-d1 run keeping revisions at steps 5 and 12, runs trained straight to
    those steps, and a stage that continues from the early revision."""
    stages = {
        "base": {"models": "gpt-d1", "methods": "pretrain",
                 "params": {**COMMON, "tokens": 20 * B * T, "keep_checkpoints": [EARLY, LATE]}},
        "straight": {"models": "gpt-d1", "methods": "pretrain",
                     "params": {**COMMON, "tokens": [5 * B * T, 12 * B * T]}},
        "more": {"models": f"@base@{EARLY}", "methods": "pretrain",
                 "params": {**COMMON, "tokens": 4 * B * T}},
    }  # fmt: skip
    for name, changes in over.items():
        if changes is None:
            stages.pop(name)
        else:
            stages[name] = {**stages[name], **changes}
    return write_spec(path, name="revisions", output_dir=str(out),
                      tasks={**TASK, "dataset": str(corpus)},
                      seeds=[1], stages=stages, runtime={"threads": 1})  # fmt: skip


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("revisions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALELAB_HOME", str(root / "home"))
        spec = revision_spec(root / "r.yaml", corpus, root / "out")
        assert cli("run", spec, "--quiet", "--executor", "serial")[0] == 0
    table = ResultsStore(root / "out" / "results.sqlite").table()
    return spec, root / "out", table


def test_a_revision_is_the_model_after_the_first_step_reaching_its_tokens(finished):
    _, out, table = finished
    base = table[table["stage"] == "base"].iloc[0]
    kept = out / "runs" / base["run_id"] / "revisions"
    assert sorted(p.name for p in kept.iterdir()) == sorted([str(EARLY), str(LATE)])
    straight = table[table["stage"] == "straight"].set_index("params.tokens")
    for count, steps in ((EARLY, 5), (LATE, 12)):
        twin = out / "runs" / straight.loc[steps * B * T, "run_id"] / "model"
        ours, theirs = weights(kept / str(count)), weights(twin)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), count  # bit for bit
    final = weights(out / "runs" / base["run_id"] / "model")
    early = weights(kept / str(EARLY))
    assert any(not torch.equal(early[k], final[k]) for k in final)
    assert "revisions" in str(base["products"])


def test_a_revision_loads_and_scores_text_like_the_final_model(finished):
    _, out, table = finished
    run = out / "runs" / table[table["stage"] == "base"].iloc[0]["run_id"]
    text = "the quick brown fox jumps over the lazy dog"
    scores = {}
    for name in (f"{run}/model@{EARLY}", f"{run}@{LATE}", f"{run}/model"):
        backend = open_backend(resolve_model(name), cache=False)
        scores[name] = backend.loglikelihood_rolling([text])[0]
    assert all(s < 0 for s in scores.values())
    assert len(set(scores.values())) == 3


def test_a_later_stage_continues_from_a_revision_with_its_own_run_id(finished, tmp_path, corpus):
    spec, out, table = finished
    base = table[table["stage"] == "base"].iloc[0]["run_id"]
    more = table[table["stage"] == "more"].iloc[0]
    assert more["status"] == "done" and more["model"] == f"run:{base}@{EARLY}"
    # `@base` and `@base@<count>` are different models, so different runs.
    other = revision_spec(tmp_path / "o.yaml", corpus, out, more={"models": "@base"})
    ids = {r.stage: r.run_id for r in expand(load_spec(spec))}
    ids_final = {r.stage: r.run_id for r in expand(load_spec(other))}
    assert ids["base"] == ids_final["base"] and ids["more"] != ids_final["more"]
    assert ids["more"] == more["run_id"]


def test_keep_checkpoints_leaves_run_ids_of_runs_without_it_alone(tmp_path, corpus):
    spec = revision_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", more=None)
    runs = {r.stage: r for r in expand(load_spec(spec))}
    assert "keep_checkpoints" in runs["base"].config["params"]
    assert "keep_checkpoints" not in runs["straight"].config["params"]


def test_a_resumed_run_keeps_the_revisions_it_already_saved(tmp_path, corpus):
    out = tmp_path / "out"
    spec = revision_spec(tmp_path / "s.yaml", corpus, out, straight=None, more=None,
                         base={"params": {**COMMON, "tokens": 8 * B * T,
                                          "keep_checkpoints": [2 * B * T, 4 * B * T]}})  # fmt: skip
    (run,) = expand(load_spec(spec))
    earlier = out / "runs" / run.run_id / "revisions" / str(2 * B * T)
    earlier.mkdir(parents=True)
    (earlier / "saved-before.txt").write_text("from before the resume")
    assert cli("run", spec, "--quiet", "--executor", "serial")[0] == 0
    assert [p.name for p in earlier.iterdir()] == ["saved-before.txt"]  # not rewritten
    assert (earlier.parent / str(4 * B * T) / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ([20 * B * T + 1], "params.keep_checkpoints: 5121 is more than the run trains"),
        ([B * T - 1], "params.keep_checkpoints: 255 is less than one batch"),
        ([5 * B * T - 10, 5 * B * T], "params.keep_checkpoints: 1270 and 1280 are both saved"),
    ],
)
def test_bad_keep_checkpoints_are_one_line_spec_errors(tmp_path, corpus, keep, message):
    params = {**COMMON, "tokens": 20 * B * T, "keep_checkpoints": keep}
    spec = revision_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", base={"params": params})
    with pytest.raises(ScalelabError, match=re.escape(message)):
        expand(load_spec(spec))
    assert cli("run", spec, "--dry-run")[0] == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"more": {"models": "@base@1000"}},
         "stages.more.models[0]: @base@1000: run gpt-d1 of stage 'base' keeps no revision "
         "1000 (revisions: 1280, 2972)"),
        ({"more": {"models": f"@straight@{EARLY}"}}, "keeps no revision 1280 (revisions: none"),
        ({"more": {"models": "@base@early"}}, "bad stage reference"),
    ],
)  # fmt: skip
def test_a_reference_to_a_revision_a_run_does_not_keep_is_a_spec_error(
    tmp_path, corpus, over, message
):
    spec = revision_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", **over)
    with pytest.raises(ScalelabError, match=re.escape(message)):
        expand(load_spec(spec))


def test_a_run_from_a_revision_is_shown_as_its_runs_model_at_that_count(finished):
    from scalelab.analysis.table import shown_models

    _, _, table = finished
    shown = dict(zip(table["stage"], shown_models(table), strict=True))
    assert shown["more"] == f"gpt-d1 (stage base)@{EARLY}"


def test_keeping_a_mup_revision_leaves_training_alone_and_saves_plain_gpt2(tmp_path, corpus):
    mup = {**COMMON, "tokens": 6 * B * T, "parametrization": "mup", "mup_base_width": 32}
    stages = {"kept": {"models": "gpt-d1w64", "methods": "pretrain",
                       "params": {**mup, "keep_checkpoints": [3 * B * T]}},
              "plain": {"models": "gpt-d1w64", "methods": "pretrain", "params": mup}}  # fmt: skip
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "m.yaml", name="mup", output_dir=str(out),
                      tasks={**TASK, "dataset": str(corpus)}, seeds=[1], stages=stages,
                      runtime={"threads": 1})  # fmt: skip
    assert cli("run", spec, "--quiet", "--executor", "serial")[0] == 0
    rows = ResultsStore(out / "results.sqlite").table().set_index("stage")
    assert rows.loc["kept", "test_loss"] == rows.loc["plain", "test_loss"]
    folder = out / "runs" / rows.loc["kept", "run_id"]
    backend = open_backend(resolve_model(f"{folder}@{3 * B * T}"), cache=False)
    assert backend.loglikelihood_rolling(["a plain GPT-2"])[0] < 0
