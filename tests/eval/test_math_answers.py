"""Final-answer extraction, canonical numbers and exact match for math word problems."""

from __future__ import annotations

import math

import pytest

from scalelab.errors import ScalelabError
from scalelab.eval.math import em_metrics, exact_match, extract_answer, normalize_number


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # GSM8K's "####" line wins over everything else
        ("She pays 3 * 4 = 12 dollars.\n#### 12", "12"),
        ("#### 1,200", "1200"),
        ("So 7 left.\n#### -3\nQuestion: 5 apples", "-3"),
        ("#### 12\nQuestion: Tom has 5 cars.\nAnswer: 9", "12"),  # the first answer line
        # "The answer is" / "answer:", any case; the first one wins
        ("5 + 7 = 12. The answer is 12.", "12"),
        ("Ten minus two. the ANSWER IS 8", "8"),
        ("Answer: $1,200.50", "1200.5"),
        ("The answer is: **42**", "42"),
        ("The answer is 12.\n\nQuestion: Ann has 3 dogs. The answer is 3.", "12"),
        ("The answer is 5 + 7 = 12.", "12"),  # a sum written out: after the last "="
        ("The answer is 12. Then 3 = 3 more.", "12"),  # "=" in a later sentence
        ("The final answer is 45%.", "45"),
        ("The answer is 3 km.", "3"),
        ("The answer is -$5.", "-5"),
        ("The answer is 3/4.", "0.75"),
        ("The answer is\nclearly 7 and then 9", "9"),  # no number on the marker's line
        # otherwise the last number
        ("He buys 12 apples and eats 5, so 7 are left", "7"),
        ("It costs $1,200.50 in total", "1200.5"),
        ("The price is 2.50", "2.5"),
        ("So it is 3.0", "3"),
        ("so he has 12.", "12"),  # a sentence's period is no decimal point
        ("So the total is 007", "7"),
        ("half is .5", "0.5"),
        ("the temperature is −4 degrees", "-4"),  # unicode minus
        ("we get 5-3 = 2", "2"),
        ("5-3", "3"),  # "-" after a digit is an operator, not a sign
        ("It was -0", "0"),
        ("lists 1,2 and 1,2345", "2345"),  # "1,2" is not a thousands group
        ("12th of 30 days, so 30", "30"),
        ("the 2nd box", "2"),
        ("numbers 3, then 4 ; 1/2.5", "2.5"),  # "1/2.5" is no fraction
        # numbers glued to words are not numbers
        ("water is H2O", None),
        ("Step1: COVID19 and mp3 files", None),
        ("x2 and 8 then abc123", "8"),
        ("no numbers here", None),
        ("", None),
        ("The answer is unknown", None),
        ("####", None),
    ],
)
def test_extract_answer(text, want):
    assert extract_answer(text) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("1200", "1200"),
        ("1,200", "1200"),
        ("$1,200.50", "1200.5"),
        ("2.50", "2.5"),
        ("3.0", "3"),
        ("-0", "0"),
        ("-0.00", "0"),
        ("+5", "5"),
        ("12.", "12"),
        ("45%", "45"),
        (" 7 ", "7"),
        ("−3", "-3"),
        ("1000000", "1000000"),  # no exponent notation
        ("0.000001", "0.000001"),
        ("3/4", "0.75"),
        ("-1/8", "-0.125"),
        ("1/3", "0.3333333333333333333333333333"),
        ("3/0", None),
        ("1.2.3", None),
        ("twelve", None),
        ("", None),
        ("nan", None),
        ("1e3", None),
    ],
)
def test_normalize_number(raw, want):
    assert normalize_number(raw) == want


def test_exact_match():
    assert exact_match("1200", "1200")
    assert exact_match("1,200.00", "1200")
    assert exact_match("0.75", "3/4")
    assert exact_match("1000000.5", "1000000.5000001")  # within 1e-6 relative
    assert not exact_match("1.001", "1")
    assert not exact_match("0.0000001", "0")
    assert exact_match("-0", "0")
    assert not exact_match(None, "3")
    assert not exact_match("three", "3")
    assert not exact_match("-3", "3")
    with pytest.raises(ScalelabError, match="gold answer 'abc'"):
        exact_match("3", "abc")


def test_em_metrics():
    out = em_metrics(["12", None, "3", "4.0"], ["12", "5", "2", "4"])
    assert out["exact_match"] == 0.5
    assert out["n_questions"] == 4 and out["n_no_answer"] == 1
    # sample std of [1, 0, 0, 1] is sqrt(1/3); / sqrt(4)
    assert out["exact_match_stderr"] == pytest.approx(math.sqrt(1 / 3) / 2)
    assert math.isnan(em_metrics(["1"], ["1"])["exact_match_stderr"])
    with pytest.raises(ScalelabError, match="zero questions"):
        em_metrics([], [])
    with pytest.raises(ScalelabError, match="2 predictions for 1"):
        em_metrics(["1", "2"], ["1"])
