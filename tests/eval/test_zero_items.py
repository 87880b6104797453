"""A score over nothing is not a perfect score: zero tokens, examples or labels give NaN
(or a ScalelabError before training), never loss 0, perplexity 1 or accuracy 1."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import cli, write_spec

from scalelab.data.lm_tokens import prepare_lm_data
from scalelab.data.tasks import LMTask
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.eval.classification import (
    accuracy,
    classification_report,
    cross_entropy,
    macro_f1,
    predict,
    score,
)
from scalelab.eval.lm import LMScore, sliding_window_score, windows
from scalelab.models.build import build_causal_lm
from scalelab.testing import make_corpus

# --- language modelling ---------------------------------------------------------------------


def test_lm_score_over_zero_tokens_is_nan():
    empty = LMScore(nll_sum=0.0, n_tokens=0)
    assert math.isnan(empty.loss) and math.isnan(empty.ppl)
    assert math.isnan(empty.bits_per_byte(100))
    # Bytes of nothing: bits per byte is undefined even when tokens were scored.
    assert math.isnan(LMScore(nll_sum=5.0, n_tokens=3).bits_per_byte(0))


@pytest.mark.parametrize("n", [0, 1])
def test_sliding_window_over_too_few_tokens_is_nan(n):
    # One token has no target: nothing is scored, so there is no loss.
    torch.manual_seed(0)
    model = build_causal_lm("gpt-d1", vocab_size=50, n_positions=16).eval()
    s = sliding_window_score(model, torch.zeros(n, dtype=torch.int32), window=16)
    assert s.n_tokens == 0 and math.isnan(s.loss) and math.isnan(s.ppl)


def test_window_of_one_token_is_an_error():
    # A 1-token window holds no (context, target) pair; it used to score "0 nats" per token.
    with pytest.raises(ScalelabError, match="at least 2 tokens"):
        windows(10, 1, 1)


def test_split_shorter_than_one_window_names_split_and_count():
    from scalelab.data.lm_tokens import require_full_windows

    with pytest.raises(ScalelabError) as err:
        require_full_windows({"train": 500, "validation": 0, "test": 64}, 64, "corpus")
    msg = str(err.value)
    assert "validation split has 0 tokens" in msg and "test split has 64 tokens" in msg
    assert "train" not in msg.split(":")[1] and "65" in msg and "\n" not in msg
    require_full_windows({"train": 65, "validation": 65, "test": 65}, 64, "corpus")  # enough


def lm_task(dataset, seq_len: int) -> LMTask:
    """A byte-level LM task built without spec validation: the spec's own cheap check of
    local files (data/tasks.py) must not hide the run-time check under test."""
    return LMTask.model_construct(
        dataset=str(dataset), seq_len=seq_len, tokenizer=TokenizerSpec(kind="byte")
    )


def test_prepare_lm_data_rejects_an_empty_valid_file(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n_lines=200)
    (corpus / "valid.txt").write_text("")
    with pytest.raises(ScalelabError, match="validation split has 0 tokens"):
        prepare_lm_data(lm_task(corpus, 64))


def test_prepare_lm_data_rejects_a_split_one_token_short(tmp_path):
    # 64 bytes are 64 byte-level tokens: one short of a window of seq_len + 1 = 65.
    corpus = make_corpus(tmp_path / "corpus", n_lines=200)
    (corpus / "test.txt").write_text("x" * 63 + "\n")
    with pytest.raises(ScalelabError, match="test split has 64 tokens") as err:
        prepare_lm_data(lm_task(corpus, 64))
    assert "validation" not in str(err.value)


def test_prepare_lm_data_checks_splits_scalelab_draws_from_one_file(tmp_path):
    # 40 lines of 32 bytes: the contiguous 90/5/5 cut gives validation and test 2 lines each,
    # 64 tokens, one short of a window.
    path = tmp_path / "one.txt"
    path.write_text("".join(f"line {i:02d} ".ljust(31, "x") + "\n" for i in range(40)))
    with pytest.raises(ScalelabError, match=r"validation split has 64 tokens.*90/5/5"):
        prepare_lm_data(lm_task(path, 64))


# The case (an empty valid.txt, a one-line test.txt) is refused at spec time (exit 2,
# nothing written: fewer bytes than seq_len); a valid.txt of 64 bytes passes that cheap byte
# check and is caught once tokenized: a failed run naming the split.
@pytest.mark.parametrize(
    "valid,test,spec_time",
    [
        ("", "The cat sat on a mat. " * 5 + "\n", True),
        ("x" * 63 + "\n", "The cat sat on a mat. " * 5 + "\n", False),
    ],
    ids=["empty", "one-token-short"],
)
def test_cli_run_on_a_short_valid_split_never_reports_done(
    tmp_path, capsys, valid, test, spec_time
):
    corpus = make_corpus(tmp_path / "corpus", n_lines=300)
    (corpus / "valid.txt").write_text(valid)
    (corpus / "test.txt").write_text(test)
    spec = write_spec(
        tmp_path / "exp.yaml",
        name="zero",
        output_dir=str(tmp_path / "out"),
        models="gpt-d1",
        tasks={"dataset": str(corpus), "kind": "lm", "seq_len": 64, "tokenizer": {"kind": "byte"}},
        methods="pretrain",
        params={"tokens": 8 * 64 * 2, "batch_size": 8},
        seeds=[0],
        runtime={"threads": 1},
    )
    code, _, err = cli("run", spec, "--quiet", capsys=capsys)
    if spec_time:
        assert code == 2 and "validation 0 bytes" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()
        return
    assert code == 1, err  # the run was attempted: it must be recorded as failed, naming the split
    _, out, _ = cli("results", spec, "--format", "json", capsys=capsys)
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["failed"], rows
    assert f"validation split has {len(valid)} tokens" in rows[0]["error"]
    assert not any(r.get("val_loss") == 0 for r in rows)


# --- classification -------------------------------------------------------------------------


def test_classification_metrics_over_no_examples_are_nan():
    assert math.isnan(accuracy([], []))
    assert math.isnan(macro_f1([], [], 3))
    assert math.isnan(cross_entropy(np.zeros((0, 3)), []))
    assert all(math.isnan(v) for v in score(np.zeros((0, 3)), [], 3).values())
    rep = classification_report([], [], ["a", "b", "c"])
    assert rep["n"] == 0 and rep["macro_labels"] == []
    assert all(math.isnan(rep[k]) for k in ("accuracy", "macro_f1", "macro_recall"))


def test_perfect_classifier_with_a_class_absent_from_the_split_scores_one():
    # Class 2 exists in training but not in this test split; every prediction is right.
    y = [0, 1, 1, 0, 1]
    assert macro_f1(y, y, 3) == 1.0
    rep = classification_report(y, y, ["a", "b", "c"])
    assert rep["macro_f1"] == rep["macro_precision"] == rep["macro_recall"] == 1.0
    assert rep["macro_labels"] == ["a", "b"]
    assert rep["per_class"]["c"]["support"] == 0


def test_macro_f1_by_hand_with_absent_and_wrongly_predicted_classes():
    # Labels {0, 1}; predictions also use 2 (never true): labels 0, 1, 2 are averaged.
    # F1: class 0 P=1/1 R=1/2 -> 2/3; class 1 P=1/1 R=1/1 -> 1; class 2 P=0/1 R=0 -> 0.
    # Class 3 neither occurs nor is predicted and is left out.
    assert macro_f1([0, 0, 1], [0, 2, 1], 4) == pytest.approx((2 / 3 + 1 + 0) / 3)
    # A class that occurs but is never predicted counts as 0: it is a real miss.
    assert macro_f1([0, 1], [0, 0], 3) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 12))
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
        want = sklearn_metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
        assert macro_f1(y_true, y_pred, k) == pytest.approx(want), (y_true, y_pred)
        rep = classification_report(y_true, y_pred, [str(i) for i in range(k)])
        for name, fn in (
            ("macro_precision", sklearn_metrics.precision_score),
            ("macro_recall", sklearn_metrics.recall_score),
        ):
            assert rep[name] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0))


def test_predict_on_an_empty_split_gives_empty_logits():
    class Stub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("Config", (), {"num_labels": 4})()

    logits = predict(Stub(), [], pad_id=0, batch_size=8, amp=None, device="cpu")
    assert logits.shape == (0, 4)
    assert math.isnan(score(logits, [], 4)["accuracy"])
