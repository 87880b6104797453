"""benchmarks/lm_eval_ref.py: lm-evaluation-harness runs offline on a tiny local GPT-2 and
a tiny local multiple-choice task, and its logged requests are complete (issue 12)."""

from __future__ import annotations

import math

import pytest
from helpers import load_benchmark

pytest.importorskip("lm_eval")


def _load():
    return load_benchmark("lm_eval_ref")


def test_run_lm_eval_tiny_gpt2(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    ref = _load()
    model = ref.make_tiny_gpt2(tmp_path / "model", n_layer=1, n_embd=32, tokenizer="byte")
    task_dir = ref.write_tiny_task(tmp_path / "task")

    res = ref.run_lm_eval(str(model), str(task_dir), ref.TINY_TASK, 0, 10, batch_size=4)

    assert res["n_docs"] == 10
    reqs = res["requests"]
    assert len(reqs) == 20  # two choices per doc
    assert [(r["doc_id"], r["choice"]) for r in reqs] == [(d, c) for d in range(10) for c in (0, 1)]
    for r in reqs:
        assert r["context"].startswith("Question: ") and r["context"].endswith("\nAnswer:")
        assert r["continuation"].startswith(" ")  # target_delimiter + choice
        assert math.isfinite(r["loglikelihood"]) and r["loglikelihood"] <= 0
        assert isinstance(r["is_greedy"], bool)
    assert 0 <= res["acc"] <= 1 and 0 <= res["acc_norm"] <= 1
    assert res["wall_s"] >= res["loglikelihood_s"] > 0
    assert ref.acc_from_requests(reqs) == pytest.approx((res["acc"], res["acc_norm"]))
    # the tokenization rules in the module docstring reproduce lm-eval's numbers
    plain = ref.plain_loglikelihoods({"pretrained": str(model)}, reqs)
    for (ll, greedy), r in zip(plain, reqs, strict=True):
        assert ll == pytest.approx(r["loglikelihood"], abs=1e-4)
        assert greedy == r["is_greedy"]
