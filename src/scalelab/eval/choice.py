"""Which option a completion chose (multiple choice answered in writing), and exact match.

`extract_choice(text, n_options)` returns the letter ("A".."J", within the first
`n_options`) a completion settles on, in order of preference:

1. after the first "the answer is" / "answer:" (any case, an optional ":"), a letter in
   parentheses, or alone and followed by ".", ")", ":", ",", a line end or the end:
   "So the answer is (D).", "The answer is: (b)", "Answer: C";
2. the same at the very start: " D", "B)", "(B) plants ...", "C. because" (a student's
   direct answer; "A plant needs light" is a sentence, not option A);
3. the last letter in parentheses anywhere: "... which is (c)".

A bare lowercase letter counts only in parentheses ("a" is also a word); a letter glued
to a word ("Dogs", "A1") never counts; a letter past the options (E of four) never
counts. The first marker wins over later ones, as in `eval/math.py`: a model that is not
stopped goes on to answer questions it made up. No letter found: None (always wrong).

`answer_of(problem, text)` and `is_correct(problem, found)` score a `Problem` of either
kind: an option letter when it has options, else a number (`eval/math.py`).
"""

from __future__ import annotations

import re

LETTERS = "ABCDEFGHIJ"
_MARKER = re.compile(r"(?:the\s+answer\s+is|answer\s*:)\s*:?\s*", re.IGNORECASE)
_PAREN = re.compile(r"\(([A-Ja-j])\)")
_LEADING = re.compile(r"[ \t]*(?:\(([A-Ja-j])\)|([A-J])(?=[.):,]|[ \t]*(?:\n|$)))")


def _within(letter: str | None, n_options: int) -> str | None:
    if letter is None:
        return None
    letter = letter.upper()
    return letter if LETTERS.index(letter) < n_options else None


def extract_choice(text: str, n_options: int) -> str | None:
    """The option letter `text` chose (see the module docstring), or None.

    Raises ValueError for n_options outside 1..10."""
    if not 1 <= n_options <= len(LETTERS):
        raise ValueError(f"n_options must be 1..{len(LETTERS)}, not {n_options}")
    marker = _MARKER.search(text)
    if marker:
        m = _LEADING.match(text, marker.end())
        if m and (found := _within(m.group(1) or m.group(2), n_options)):
            return found
    m = _LEADING.match(text)
    if m and (found := _within(m.group(1) or m.group(2), n_options)):
        return found
    for letter in reversed(_PAREN.findall(text)):
        if found := _within(letter, n_options):
            return found
    return None


def answer_of(problem, text: str) -> str | None:
    """The answer a completion gives to `problem`: a letter for a question with options,
    else a number (`eval.math.extract_answer`)."""
    if problem.options:
        return extract_choice(text, len(problem.options))
    from scalelab.eval.math import extract_answer

    return extract_answer(text)


def is_correct(problem, found: str | None) -> bool:
    """Whether `found` (from `answer_of`) is `problem`'s gold answer."""
    if found is None:
        return False
    if problem.options:
        return found == problem.answer
    from scalelab.eval.math import exact_match

    return exact_match(found, problem.answer)


def score_rows(problems, founds) -> dict[str, float]:
    """exact_match, its stderr, n_questions and n_no_answer over problems of either kind.
    Raises ScalelabError over zero problems."""
    from scalelab.eval.math import em_metrics

    return em_metrics(founds, [q.answer for q in problems],
                      hits=[is_correct(q, f) for q, f in zip(problems, founds, strict=True)])  # fmt: skip
