"""scalelab's multiple-choice evaluation gives lm-evaluation-harness's numbers (issue 12).

The proof, on a tiny random GPT-2 with GPT-2's real BPE tokenizer: for three built-in
tasks at 0 and 5 shots, lm-eval 0.4.13 (on the task `export_for_lm_eval` writes) and
scalelab (`load_mc_task` -> `questions` -> `score_questions` on a LocalBackend) give the
same acc and acc_norm and every request's loglikelihood within 1e-4, with the same
is_greedy. A variant that drops the target delimiter is shown to break the comparison, so
the check has teeth. benchmarks/mc_eval_parity.py is the same comparison with timings.
"""

from __future__ import annotations

import dataclasses

import pytest
from helpers import load_benchmark

pytest.importorskip("lm_eval")

TASKS = ("piqa", "commonsense_qa", "openbookqa")
LIMIT = 12
TOL = 1e-4


def _ref():
    return load_benchmark("lm_eval_ref")


def _by_key(rows):
    return {(r["doc_id"], r["choice"]): r for r in rows}


def _ours(scores):
    return [
        {"doc_id": s.doc_id, "choice": i, "loglikelihood": ll, "is_greedy": g}
        for s in scores
        for i, (ll, g) in enumerate(zip(s.ll, s.greedy, strict=True))
    ]


def test_same_numbers_as_lm_eval_on_builtin_tasks(tmp_path, monkeypatch):
    import datasets

    from scalelab.data.multiple_choice import export_for_lm_eval, load_mc_task
    from scalelab.eval.multiple_choice import mc_metrics, score_questions
    from scalelab.models.backends import open_backend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    ref = _ref()
    model = ref.make_tiny_gpt2(tmp_path / "model")  # GPT-2's real BPE, 2 layers, width 64
    lm, _ = ref.make_lm(str(model), batch_size=8)
    backend = open_backend(str(model), batch_size=8, dtype="float32", cache=False)

    from lm_eval.tasks import TaskManager

    export = tmp_path / "export"
    names = {name: export_for_lm_eval(load_mc_task(name), export) for name in TASKS}
    manager = TaskManager(include_path=str(export), include_defaults=False)  # ours alone
    checked = 0
    for name in TASKS:
        task = load_mc_task(name)
        for shots in (0, 5):
            theirs = ref.run_lm_eval(
                str(model), str(export), names[name], shots, LIMIT, 8, lm=lm,
                task_manager=manager,
            )  # fmt: skip
            questions = task.questions(shots, LIMIT)
            scores = score_questions(backend, questions)
            metrics = mc_metrics(scores)
            where = (name, shots)
            assert metrics["acc"] == theirs["acc"], where
            assert metrics["acc_norm"] == theirs["acc_norm"], where
            mine, ref_rows = _by_key(_ours(scores)), _by_key(theirs["requests"])
            assert mine.keys() == ref_rows.keys(), where
            for key, r in ref_rows.items():
                got = mine[key]["loglikelihood"]
                assert got == pytest.approx(r["loglikelihood"], abs=TOL), (where, key)
                assert mine[key]["is_greedy"] == r["is_greedy"], (where, key)
            checked += len(ref_rows)

            if shots == 5 and name == "piqa":  # the comparison can fail
                broken = [dataclasses.replace(q, target_delimiter="") for q in questions]
                bad = _by_key(_ours(score_questions(backend, broken)))
                worst = max(
                    abs(bad[k]["loglikelihood"] - r["loglikelihood"]) for k, r in ref_rows.items()
                )
                assert worst > 100 * TOL
    assert checked == LIMIT * (2 + 5 + 4) * 2  # piqa 2, commonsense_qa 5, openbookqa 4 choices
