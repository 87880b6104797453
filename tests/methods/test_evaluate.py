"""The `evaluate` method: multiple-choice scores through the grid, resume, a changed
checkpoint evaluated again, an HTTP model, and corpus loss of a run's model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import cli, run_stages, save_tiny, write_mc_task, write_spec

from scalelab.data.multiple_choice import load_mc_task
from scalelab.eval.multiple_choice import mc_metrics, score_questions
from scalelab.grid.api import load_experiment_tables
from scalelab.models.backends import open_backend


@pytest.fixture
def setup(tmp_path):
    model = save_tiny(tmp_path / "model", "gpt2")
    return model, write_mc_task(tmp_path / "task")


def spec_for(tmp_path, model, task, **params) -> Path:
    return write_spec(tmp_path / "eval.yaml", name="ev", output_dir=str(tmp_path / "out"),
                      models=[str(model)], tasks=[{"dataset": str(task)}], methods="evaluate",
                      params=params, runtime={"threads": 1})  # fmt: skip


def test_scores_equal_the_backend_and_a_rerun_skips(setup, tmp_path, capsys):
    model, task = setup
    spec = spec_for(tmp_path, model, task, shots=[0, 2])
    assert cli("run", spec, capsys=capsys)[0] == 0
    runs = load_experiment_tables(spec)[0].sort_values("params.shots")
    assert list(runs["params.shots"]) == [0, 2] and set(runs.status) == {"done"}
    for _, row in runs.iterrows():
        questions = load_mc_task(str(task)).questions(int(row["params.shots"]))
        want = mc_metrics(score_questions(open_backend(str(model)), questions))
        for key in ("acc", "acc_norm", "acc_bytes", "task_loss", "n_questions"):
            assert row[key] == pytest.approx(want[key], abs=1e-6), key
        scores = pd.read_parquet(tmp_path / "out" / "runs" / row.run_id / "scores.parquet")
        assert len(scores) == 30 and list(scores.doc_id) == list(range(30))
        assert all(len(ll) == 3 for ll in scores.ll)
        assert not (tmp_path / "out" / "runs" / row.run_id / "scores.partial.jsonl").exists()
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0 and "0 done" in out and "2 already done" in out


def test_a_changed_checkpoint_under_the_same_name_is_evaluated_again(setup, tmp_path, capsys):
    import torch
    from transformers import GPT2LMHeadModel

    model, task = setup
    spec = spec_for(tmp_path, model, task)
    assert cli("run", spec, capsys=capsys)[0] == 0
    before = load_experiment_tables(spec)[0].iloc[0]
    m = GPT2LMHeadModel.from_pretrained(model)
    with torch.no_grad():
        m.lm_head.weight.mul_(3.0)  # other weights, same folder and name
    m.save_pretrained(model)
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0 and "1 done" in out
    after = load_experiment_tables(spec)[0].iloc[0]
    assert after.run_id != before.run_id and after.task_loss != before.task_loss


def test_resume_keeps_the_saved_chunks_and_drops_a_torn_line(setup, tmp_path):
    """What a killed run left (complete chunks, then half a line) is read back; only the
    questions not saved are scored."""
    from scalelab.grid.spec import Runtime
    from scalelab.methods.base import RunContext
    from scalelab.methods.evaluate import EvaluateParams, run_multiple_choice
    from scalelab.models.registry import resolve_model

    model, task = setup
    questions = load_mc_task(str(task)).questions(0)
    saved = score_questions(open_backend(str(model)), questions[:10])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "scores.partial.jsonl", "w") as f:
        for s in saved:  # saved answers made all wrong: proof they are not scored again
            row = s.as_row()
            row["ll"] = [0.0 if i != s.gold else -50.0 for i in range(3)]
            f.write(json.dumps(row) + "\n")
        f.write('{"doc_id": 10, "gold": 1, "ll": [-1.0')  # the kill hit mid-line
    task_model = type("T", (), {"dataset": str(task), "kind": "multiple_choice"})()
    ctx = RunContext("r", resolve_model(str(model)), task_model, EvaluateParams(), 0, run_dir,
                     Runtime(threads=1))  # fmt: skip
    got = run_multiple_choice(ctx).metrics
    fresh = score_questions(open_backend(str(model)), questions[10:])
    want = sum(s.pick() == s.gold for s in fresh) / 30  # the 10 saved ones count as wrong
    assert got["acc"] == pytest.approx(want) and got["n_questions"] == 30
    assert not (run_dir / "scores.partial.jsonl").exists()
    assert len(pd.read_parquet(run_dir / "scores.parquet")) == 30


def test_an_http_model_through_scalelab_serve_scores_like_local(setup, tmp_path, capsys):
    from scalelab.testing import ServeProcess

    model, task = setup
    server = ServeProcess(model, tmp_path / "serve.log", name="tiny", home=tmp_path / "h")
    try:
        server.wait(600)
        spec = write_spec(tmp_path / "both.yaml", name="both", output_dir=str(tmp_path / "o"),
                          models=[str(model), f"{server.url}#tiny"],
                          tasks=[{"dataset": str(task)}], methods="evaluate",
                          params={"shots": 2}, runtime={"threads": 1})  # fmt: skip
        assert cli("run", spec, capsys=capsys)[0] == 0
    finally:
        server.stop()
    runs = load_experiment_tables(spec)[0]
    local, http = (runs[runs.model.str.startswith("http") == flag].iloc[0] for flag in (0, 1))
    for key in ("acc", "acc_norm", "acc_bytes", "task_loss"):
        assert http[key] == pytest.approx(local[key], abs=1e-4), key


def test_corpus_loss_of_a_run_model_equals_its_own_validation_loss(tmp_path, corpus, capsys):
    """evaluate on the corpus a model was trained on measures what pretraining reported."""
    stages = {
        "train": {"models": ["gpt-d1"], "methods": ["pretrain"],
                  "params": {"tokens": 8 * 32 * 20, "batch_size": 8}},
        "score": {"models": ["@train"], "methods": ["evaluate"]},
    }  # fmt: skip
    runs = run_stages(tmp_path, corpus, stages, capsys)
    train, score = (runs[runs.method == m].iloc[0] for m in ("pretrain", "evaluate"))
    assert score.val_loss == pytest.approx(train.val_loss, rel=1e-5)
    assert score.test_loss == pytest.approx(train.test_loss, rel=1e-5)
    assert score.non_embedding_params == train.non_embedding_params


def test_a_run_row_gains_its_evaluations_accuracy_and_standard_error(tmp_path, corpus, capsys):
    """A one-seed ladder still has an interval: the evaluated run's row carries acc@T and
    acc_stderr@T (what `smallest --reaches` tests a one-run cell with)."""
    task = write_mc_task(tmp_path / "mc")
    stages = {
        "train": {"models": ["gpt-d1"], "methods": ["pretrain"],
                  "params": {"tokens": 8 * 32 * 10, "batch_size": 8}},
        "score": {"models": ["@train"], "methods": ["evaluate"], "tasks": [{"dataset": str(task)}]},
    }  # fmt: skip
    runs = run_stages(tmp_path, corpus, stages, capsys)
    train, score = (runs[runs.method == m].iloc[0] for m in ("pretrain", "evaluate"))
    name = task.stem if task.suffix else task.name
    assert train[f"acc@{name}"] == score.acc and score.acc_stderr > 0
    assert train[f"acc_stderr@{name}"] == score.acc_stderr


def test_questions_longer_than_the_window_are_counted_and_answers_that_cannot_fit_skipped(
    setup, tmp_path, capsys
):
    """The tiny model's window is 64 tokens: 20 shots cut every context; one answer of 80
    words cannot be scored at all."""
    model, task = setup
    data = task.parent / "task.jsonl"
    lines = data.read_text().splitlines()
    doc = json.loads(lines[0])
    doc["options"][doc["label"]] = " ".join(["cat"] * 80)
    data.write_text("\n".join([json.dumps(doc), *lines[1:]]) + "\n")
    spec = spec_for(tmp_path, model, task, shots=20)
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 0, err
    row = load_experiment_tables(spec)[0].iloc[0]
    assert row.n_skipped == 1 and row.n_questions == 29 and row.n_truncated == 29
    assert "have an answer longer than the model's window (64 tokens)" in err
    assert "29 of 30 questions are longer than the model's window" in err


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"template": "doc_to_text: '{{txet}}'"}, "txet"),  # a field no document has
        ({"target": "doc_to_target: 7"}, "7"),  # a gold index outside the choices
        ({"params": {"shots": 40}}, "40 shots"),  # more shots than the split holds
        ({"task": {"dataset": "piqa", "kind": "lm"}}, "is a multiple_choice dataset"),
        ({"model": "gpt-d1"}, "untrained ladder"),
        ({"task": "corpus", "params": {"shots": 2}}, "params.shots"),
    ],
)
def test_bad_evaluations_are_one_line_at_spec_time(setup, tmp_path, corpus, capsys, change,
                                                   expect):  # fmt: skip
    model, task = setup
    text = task.read_text()
    if "template" in change:
        text = text.replace("doc_to_text: '{{text}}'", change["template"])
    if "target" in change:
        text = text.replace("doc_to_target: label", change["target"])
    task.write_text(text)
    entry = change.get("task", {"dataset": str(task)})
    if entry == "corpus":
        entry = {"dataset": str(corpus), "kind": "lm", "seq_len": 32,
                 "tokenizer": {"kind": "byte"}}  # fmt: skip
    spec = write_spec(tmp_path / "bad.yaml", name="bad", output_dir=str(tmp_path / "out"),
                      models=[change.get("model", str(model))], tasks=[entry],
                      methods="evaluate", params=change.get("params", {}))  # fmt: skip
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "out").exists()
