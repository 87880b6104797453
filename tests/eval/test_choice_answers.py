"""Which option a written answer chose (`eval/choice.py`): awkward completions."""

from __future__ import annotations

import pytest

from scalelab.data.math_data import Problem
from scalelab.eval.choice import answer_of, extract_choice, is_correct, score_rows


@pytest.mark.parametrize(
    ("text", "n", "want"),
    [
        ("So the answer is (D).", 4, "D"),
        ("The answer is: (b)", 4, "B"),  # lowercase in parentheses
        ("Answer: C\nQuestion: next one. The answer is (A).", 4, "C"),  # first marker wins
        (" D", 4, "D"),  # a student's direct answer
        ("B)", 2, "B"),  # after a prompt ending in "Answer: ("
        ("(B) plants sprouting", 4, "B"),
        ("C. because it is cold", 4, "C"),
        ("A plant needs light. So the answer is (D).", 4, "D"),  # "A" starts a sentence
        ("A plant needs light.", 4, None),
        ("a", 4, None),  # a bare lowercase letter is a word
        ("Dogs bark, which is (c).", 4, "C"),  # last letter in parentheses
        ("Not (a); I pick (c)", 4, "C"),
        ("The answer is (E).", 4, None),  # past the options
        ("The answer is (E).", 5, "E"),
        ("The answer is A1 steak sauce", 4, None),  # glued to a digit: a word
        ("", 3, None),
    ],
)
def test_extract_choice(text, n, want):
    assert extract_choice(text, n) == want


def test_a_number_of_options_outside_one_to_ten_is_refused():
    with pytest.raises(ValueError, match="n_options"):
        extract_choice("(A)", 11)


def test_problems_of_either_kind_are_scored_by_their_own_rule():
    mc = Problem(id="m", question="Q", rationale="", answer="B", options=("x", "y", "z"))
    math = Problem(id="n", question="Q", rationale="", answer="1200")
    assert answer_of(mc, "So the answer is (B).") == "B" and is_correct(mc, "B")
    assert not is_correct(mc, "C") and not is_correct(mc, None)
    assert answer_of(math, "It costs $1,200.") == "1200" and is_correct(math, "1,200.0")
    metrics = score_rows([mc, math, mc], ["B", "1200", None])
    assert metrics["exact_match"] == pytest.approx(2 / 3)
    assert metrics["n_questions"] == 3 and metrics["n_no_answer"] == 1
