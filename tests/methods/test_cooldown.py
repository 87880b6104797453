"""Cooldown branches of a wsd run: a branch started from the stable run's saved state ends
exactly where one run trained straight through to the same step and cooled down ends; each
branch is its own row with its budget; bad branch declarations are one-line spec errors."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import cli, write_spec

from scalelab.errors import ScalelabError
from scalelab.grid.spec import expand, load_spec
from scalelab.grid.store import ResultsStore

B, T = 8, 32  # batch size, sequence length: one step is 256 tokens
TASK = {"kind": "lm", "seq_len": T, "tokenizer": {"kind": "byte"}, "eval": {"max_tokens": 2000}}


def branch_spec(path: Path, corpus: Path, out: Path, **over) -> Path:
    """Stable gpt-d1 run of 40 steps (warmup 4, cooldown from 32) keeping branches at 12 and
    20 steps (and a revision at 30, which its branches do not inherit); the 20-step branch; a 20-step wsd run trained straight through with the same
    4 warmup steps (warmup_frac 0.2 of 20) for comparison."""
    common = {"batch_size": B, "lr": 3e-3, "schedule": "wsd", "cooldown_frac": 0.2}
    stages = {
        "stable": {"models": "gpt-d1", "methods": "pretrain",
                   "params": {**common, "tokens": 40 * B * T, "warmup_frac": 0.1,
                              "branch_tokens": [12 * B * T, 20 * B * T],
                              "keep_checkpoints": [30 * B * T]}},
        "branches": {"models": "@stable", "methods": "cooldown",
                     "params": {"tokens": [20 * B * T]}},
        "straight": {"models": "gpt-d1", "methods": "pretrain",
                     "params": {**common, "tokens": 20 * B * T, "warmup_frac": 0.2}},
        "cosine": {"models": "gpt-d1", "methods": "pretrain",
                   "params": {"batch_size": B, "lr": 3e-3, "tokens": [12 * B * T, 20 * B * T]}},
    }  # fmt: skip
    for name, changes in over.items():
        stages[name] = {**stages[name], **changes}
    return write_spec(path, name="wsd-branches", output_dir=str(out),
                      tasks={**TASK, "dataset": str(corpus)},
                      seeds=[3], stages=stages, runtime={"threads": 1})  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("wsd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALELAB_HOME", str(root / "home"))
        spec = branch_spec(root / "wsd.yaml", corpus, root / "out")
        assert cli("run", spec, "--quiet", "--executor", "serial")[0] == 0
    table = ResultsStore(root / "out" / "results.sqlite").table()
    return spec, root / "out", table[table["stage"] != "cosine"].set_index("stage")


def test_a_branch_equals_a_run_trained_straight_through_and_cooled_down(finished):
    _, _, rows = finished
    branch, straight = rows.loc["branches"], rows.loc["straight"]
    for metric in ("test_loss", "val_loss", "train_loss"):
        assert branch[metric] == straight[metric], metric  # the same arithmetic, bit for bit
    assert branch["tokens"] == straight["tokens"] == 20 * B * T
    assert branch["steps"] == 20 and branch["cooldown_tokens"] == 4 * B * T
    assert branch["seed"] == rows.loc["stable", "seed"] == 3  # the stable run's batches
    assert rows.loc["stable", "test_loss"] != branch["test_loss"]


def test_a_branch_curve_goes_on_from_its_start_point(finished):
    _, out, rows = finished
    curves = ResultsStore(out / "results.sqlite").curves()
    branch = curves[curves["run_id"] == rows.loc["branches", "run_id"]]
    steps, tokens = branch["step"].tolist(), branch["tokens"].tolist()
    assert steps == sorted(steps) and tokens == sorted(tokens)  # no jump back to 0
    assert tokens[-1] == 20 * B * T and steps[-1] == 20
    assert any(s <= 16 for s in steps)  # the stable run's points up to the branch point
    straight = curves[curves["run_id"] == rows.loc["straight", "run_id"]]
    assert straight["tokens"].tolist()[-1] == tokens[-1]


def test_the_stable_run_keeps_a_state_per_branch_as_a_product(finished):
    _, out, rows = finished
    stable = rows.loc["stable"]
    kept = out / "runs" / stable["run_id"] / "branches"
    assert sorted(p.name for p in kept.iterdir()) == [str(12 * B * T), str(20 * B * T)]
    assert (kept / str(20 * B * T) / "manifest.json").exists()
    assert "branches" in str(stable["products"])


def test_a_missing_stable_state_fails_the_branch_and_nothing_is_stored_as_done(finished, tmp_path):
    spec, out, rows = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    stable = rows.loc["stable", "run_id"]
    shutil.rmtree(copy / "runs" / stable / "branches" / str(20 * B * T))
    branch = rows.loc["branches", "run_id"]
    with sqlite3.connect(copy / "results.sqlite") as db:  # as if it had never run
        db.execute("DELETE FROM runs WHERE run_id = ?", (branch,))
    store = ResultsStore(copy / "results.sqlite")
    text = Path(spec).read_text().replace(str(out), str(copy))
    (tmp_path / "wsd.yaml").write_text(text)
    assert cli("run", tmp_path / "wsd.yaml", "--quiet", "--executor", "serial")[0] != 0
    row = store.table().set_index("run_id").loc[branch]
    assert row["status"] == "failed" and "cannot start from checkpoint" in row["error"]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"branches": {"params": {"tokens": 16 * B * T}}},
         "params.tokens: 4096 is not a branch of stable run"),
        ({"branches": {"seeds": [0]}}, "stages.branches.seeds: method 'cooldown' continues"),
        ({"branches": {"models": "gpt-d1"}}, "a cooldown branch continues a stable run"),
        ({"branches": {"models": "@straight"}}, "keeps no cooldown branches: a stable run needs"),
        ({"stable": {"params": {"tokens": 40 * B * T, "branch_tokens": [20 * B * T]}}},
         "params.branch_tokens needs params.schedule: wsd"),
        ({"stable": {"params": {"tokens": 40 * B * T, "schedule": "wsd",
                                "branch_tokens": [40 * B * T]}}},
         "params.branch_tokens: 10240 is not between one batch"),
        ({"stable": {"params": {"tokens": 40 * B * T, "schedule": "wsd", "warmup_frac": 0.5,
                                "branch_tokens": [20 * B * T]}}},
         "inside the warmup (10 steps)"),
        ({"stable": {"params": {"batch_size": B, "schedule": "wsd", "tokens": 40 * B * T,
                                "warmup_frac": 0.1, "branch_tokens": [20 * B * T],
                                "keep_checkpoints": [20 * B * T]}},
          "branches": {"models": f"@stable@{20 * B * T}"}},
         "a cooldown branch continues its stable run's training state"),
    ],
)  # fmt: skip
def test_bad_branch_declarations_are_one_line_spec_errors(tmp_path, corpus, over, message):
    spec = branch_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", **over)
    with pytest.raises(ScalelabError, match=re.escape(message)):
        expand(load_spec(spec))
    assert cli("run", spec, "--dry-run")[0] == 2
    assert not (tmp_path / "out").exists()


def test_a_branch_depends_on_its_stable_run_by_id(tmp_path, corpus):
    spec = branch_spec(tmp_path / "s.yaml", corpus, tmp_path / "out")
    runs = {r.stage: r for r in expand(load_spec(spec))}
    assert "branch_tokens" in runs["stable"].config["params"]
    assert runs["branches"].deps == (runs["stable"].run_id,)
    assert runs["branches"].config["model"] == f"run:{runs['stable'].run_id}"


def test_savings_count_tokens_per_size_and_compare_matched_budgets(finished):
    from scalelab.analysis.wsd import branch_savings, savings_text

    _, out, _ = finished
    table = ResultsStore(out / "results.sqlite").table()
    s = branch_savings(table)
    (row,) = s.per_model.to_dict("records")
    # budgets run: the stable run's 40 steps and the 20-step branch (the kept 12-step state
    # has no branch run); wsd trains 40 + 4 cooldown steps, cosine 20 + 40.
    assert row["budgets"] == [20 * B * T, 40 * B * T]
    assert row["wsd_tokens"] == 44 * B * T and row["cosine_tokens"] == 60 * B * T
    assert s.ratio == pytest.approx(60 / 44)
    (m,) = s.matched.to_dict("records")  # only 20 steps has a cosine run
    cos = table[(table["stage"] == "cosine") & (table["tokens"] == 20 * B * T)]["val_loss"]
    assert m["tokens"] == 20 * B * T and m["cosine"] == cos.item()
    assert m["diff"] == m["wsd"] - m["cosine"] and m["within"] is None  # one seed: no band
    assert "1.36x fewer tokens" in " ".join(savings_text(s))


def test_the_report_shows_the_branches_against_cosine(finished, tmp_path):
    spec, _, _ = finished
    assert cli("report", spec, "--out", tmp_path / "r")[0] == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Cooldown branches vs cosine" in page and "1.36x" in page
    assert "<title>scalelab report: wsd-branches</title>" in page  # the spec's name
    assert (tmp_path / "r" / "wsd_branches.png").stat().st_size > 10_000
