"""Multiple-choice metrics on hand-computed log-likelihoods (eval/multiple_choice.py)."""

from __future__ import annotations

import math

import pytest

from scalelab.errors import ScalelabError
from scalelab.eval.multiple_choice import QuestionScore, mc_metrics


def q(ll, choices, gold, n_tokens=None, doc_id=0):
    n_tokens = n_tokens or [1] * len(ll)
    return QuestionScore(doc_id, gold, tuple(choices), tuple(ll), tuple(n_tokens),
                         (False,) * len(ll))  # fmt: skip


def test_acc_acc_norm_and_acc_bytes_by_hand():
    # Raw ll prefers "a" (-2 > -3); per character "a much longer" wins (-3/13 > -2/1);
    # per byte "é" (2 bytes) scores -1/2 = -0.5 against "zz" at -1.2/2 = -0.6.
    first = q([-2.0, -3.0], ["a", "a much longer"], gold=1)
    second = q([-1.0, -1.2], ["é", "zz"], gold=1)
    assert first.pick() == 0 and first.pick("chars") == 1 and first.pick("bytes") == 1
    # "é" is one character (-1.0 vs -0.6: zz wins) but two bytes (-0.5 vs -0.6: é wins).
    assert second.pick() == 0 and second.pick("chars") == 1 and second.pick("bytes") == 0
    m = mc_metrics([first, second])
    assert m["acc"] == 0.0 and m["acc_norm"] == 1.0 and m["acc_bytes"] == 0.5
    assert m["n_questions"] == 2
    assert m["acc_bytes_stderr"] == pytest.approx(0.5)  # sd([1, 0]) / sqrt(2) = 0.7071/1.414


def test_ties_go_to_the_first_choice_like_numpy_argmax():
    assert q([-1.0, -1.0, -2.0], ["x", "y", "z"], gold=1).pick() == 0


def test_task_loss_is_the_gold_continuation_nll_per_token():
    scores = [q([-6.0, -1.0], ["a", "b"], gold=0, n_tokens=[3, 1]),
              q([-1.0, -4.0], ["a", "b"], gold=1, n_tokens=[1, 2])]  # fmt: skip
    assert mc_metrics(scores)["task_loss"] == pytest.approx((6 / 3 + 4 / 2) / 2)


def test_zero_questions_is_an_error_not_a_result():
    with pytest.raises(ScalelabError, match="zero items"):
        mc_metrics([])


def test_one_question_has_no_stderr():
    assert math.isnan(mc_metrics([q([-1.0, -2.0], ["a", "b"], 0)])["acc_stderr"])
