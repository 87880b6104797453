"""The set-up block: split sizes in the task kind's words, and evaluations set up as such."""

from __future__ import annotations

import pandas as pd

from scalelab.report.setup import setup_rows


def rows(runs: pd.DataFrame, reports=None, planned=None) -> dict[str, str]:
    return {r["item"]: r["value"] for r in setup_rows(runs, reports, planned)}


def test_classification_splits_are_examples_with_validation_and_test_from_eval_json():
    runs = pd.DataFrame({"run_id": ["a", "b"], "model": "minilm-l6", "method": "full",
                         "seed": [0, 1], "task.kind": "classification", "task.train_size": 400,
                         "task.val_size": 200, "train_examples": 400, "status": "done"})  # fmt: skip
    reports = {r: {"validation": {"n": 200}, "test": {"n": 500}} for r in ("a", "b")}
    assert rows(runs, reports)["splits"] == "train 400 / validation 200 / test 500 examples"
    # without the eval.json files: the sizes the task asked for (val_size spells validation)
    assert rows(runs)["splits"] == "train 400 / validation 200 examples"
    assert rows(runs)["seeds"] == "0, 1 (2)"


def test_multiple_choice_sizes_are_questions_and_math_sizes_problems():
    mc = pd.DataFrame({"run_id": ["a"], "method": "full", "task.kind": "mcqa",
                       "task.train_size": 200, "task.test_size": 100})  # fmt: skip
    assert rows(mc)["splits"] == "train 200 / test 100 questions"
    math = mc.assign(**{"task.kind": "math", "task.validation_size": 50})
    assert rows(math)["splits"] == "train 200 / validation 50 / test 100 problems"


def test_an_evaluation_has_no_training_seed_and_says_what_it_scored():
    runs = pd.DataFrame({"run_id": ["a", "b"], "model": "run:x", "method": "evaluate",
                         "seed": 0, "task.kind": "multiple_choice", "task.dataset": "piqa",
                         "params.limit": 300, "params.shots": 0, "n_questions": 260,
                         "n_skipped": 40, "n_truncated": [89, 0], "status": "done"})  # fmt: skip
    got = rows(runs, planned=runs[["run_id", "seed"]])
    assert got["seeds"] == "none (evaluation)"
    assert got["budget"] == "no training (evaluation, 0-shot)"
    assert got["splits"].startswith("260 questions scored (limit 300; 40 skipped: an answer")
    assert "89 with their context cut" in got["splits"] and got["dataset"] == "piqa"


def test_an_evaluate_stage_gets_its_set_up_block_before_the_evaluations(tmp_path):
    from scalelab.report.build import build_report

    base = [{"run_id": f"p{i}", "stage": "base", "status": "done", "model": m,
             "method": "pretrain", "seed": 0, "task.kind": "lm", "task.dataset": "wikitext2",
             "non_embedding_params": n, "val_loss": v}
            for i, (m, n, v) in enumerate([("gpt-d1", 1e4, 2.6), ("gpt-d2", 1e5, 2.4)])]  # fmt: skip
    ev = [{"run_id": f"e{i}", "stage": "ev", "status": "done", "model": f"run:p{i}",
           "method": "evaluate", "seed": 0, "task.kind": "multiple_choice",
           "task.dataset": "piqa", "params.limit": 300, "params.shots": 0, "n_questions": 260,
           "n_skipped": 40, "acc": 0.5, "acc_stderr": 0.03} for i in range(2)]  # fmt: skip
    page = build_report(pd.DataFrame(base + ev), None, tmp_path).read_text()
    heads = page.split("<h2>")[1:]
    titles = [h.split("</h2>")[0] for h in heads]
    assert titles.index("Set-up (stage ev)") == titles.index("Evaluations") - 1
    block = heads[titles.index("Set-up (stage ev)")]
    assert "none (evaluation)" in block and "260 questions scored (limit 300; 40 skipped" in block
