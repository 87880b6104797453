"""Final answers of math word problems (GSM8K style): extraction from a completion, canonical
numbers, exact match. Pure functions over strings.

Which number is the answer (`extract_answer`), in order of preference:

1. the first number after the first `####` (GSM8K's own answer line);
2. the first number after the first "the answer is" / "answer:" (any case), the form the
   `fewshot_cot` prompt teaches ("... The answer is 12.");
3. the last number in the text (lm-eval's "flexible-extract" rule).

The *first* marker wins over later ones because a small model that is not stopped in time
goes on to write a new question and answer it too. When the marker's line reads like
"The answer is 5 + 7 = 12", the number after the last "=" on that line is taken.

Numbers: `1,200` (comma thousands groups), `$1,200.50`, `-3` / `−3` (unicode minus), `2.50`,
`.5`, `3/4`; a unit or `%` after a number is ignored ("12 apples", "45%", "3 km"). Digits
glued after a letter ("H2O", "COVID19", "x2") are part of a word, not a number. A "-"
right after a digit is an operator ("5-3"), not a sign.

Canonical form (`normalize_number`): plain decimal notation, no thousands separators, no
trailing zeros, no "+" and no "-0": "1,200" -> "1200", "2.50" -> "2.5", "3.0" -> "3",
"-0.0" -> "0". Fractions become their decimal value ("3/4" -> "0.75"; "1/3" ->
"0.3333333333333333333333333333", 28 significant digits), because GSM8K golds are decimals
and a model writing "3/4" for 0.75 has the answer right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, DivisionByZero, InvalidOperation, localcontext

from scalelab.errors import ScalelabError
from scalelab.eval.multiple_choice import _mean_stderr

# One number as written in prose; group "num" is what normalize_number reads.
_NUMBER = re.compile(
    r"""
    (?<![\w.])                               # not glued to a word or a decimal point
    (?P<num>
      [-−]?\$?                               # sign, then currency ("-$5")
      (?: (?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)? # 1,200 / 1200 / 1200.50
        | \.\d+ )                            # .5
      (?:/\d+(?!\.\d))?                      # 3/4 (not a date like 1/2.5)
    )
    (?!\d)                                   # "1,2345" is 1 and 2345, not a broken group
    """,
    re.VERBOSE,
)
_HASHES = re.compile(r"####")
_ANSWER = re.compile(r"\banswer\s*(?:is\b|:)", re.IGNORECASE)

# A canonical string: what normalize_number reads after cleaning.
_PLAIN = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION = re.compile(r"(-?\d+)/(\d+)")
REL_TOL = Decimal("1e-6")  # exact_match: numbers equal within this relative difference


def _numbers(text: str) -> list[str]:
    return [m.group("num") for m in _NUMBER.finditer(text)]


def _after_marker(text: str, marker: re.Pattern) -> str | None:
    """The answer in the sentence after the first `marker`: its first number, or the number
    after the sentence's last "=" ("The answer is 5 + 7 = 12")."""
    found = marker.search(text)
    if found is None:
        return None
    line = text[found.end() :].lstrip(" \t:*").split("\n", 1)[0]
    line = re.split(r"\.\s", line, maxsplit=1)[0]  # its sentence: "is 12. Then 3 = 3" is 12
    if "=" in line:
        after = _numbers(line.rsplit("=", 1)[1])
        if after:
            return after[0]
    numbers = _numbers(line)
    return numbers[0] if numbers else None


def extract_answer(text: str) -> str | None:
    """The final answer of a completion, canonical ("1200", "-3", "2.5"), or None when the
    text holds no number. See the module docstring for which number is chosen."""
    for marker in (_HASHES, _ANSWER):
        raw = _after_marker(text, marker)
        if raw is not None:
            return normalize_number(raw)
    numbers = _numbers(text)
    return normalize_number(numbers[-1]) if numbers else None


def _to_decimal(s: str) -> Decimal | None:
    """The value of a number as written ("$1,200.50", "-3", "3/4", "45%"), or None."""
    t = s.strip().replace("−", "-").replace("$", "").replace(",", "").rstrip("%.").strip()
    if t.startswith("+"):
        t = t[1:]
    with localcontext() as ctx:
        ctx.prec = 28
        frac = _FRACTION.fullmatch(t)
        if frac:
            try:
                return Decimal(frac.group(1)) / Decimal(frac.group(2))
            except (DivisionByZero, InvalidOperation):
                return None  # "3/0" is no number
        if not _PLAIN.fullmatch(t):
            return None
        return Decimal(t)


def _canonical(value: Decimal) -> str:
    if value == 0:
        return "0"  # "-0", "0.00" and "-0.0" alike
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def normalize_number(s: str) -> str | None:
    """Canonical form of a number written as a model or a dataset writes it (see the
    module docstring): "$1,200.50" -> "1200.5", "-0" -> "0", "3/4" -> "0.75"; None when `s`
    is not one number ("twelve", "", "1.2.3", "3/0")."""
    value = _to_decimal(s) if isinstance(s, str) else None
    return None if value is None else _canonical(value)


def exact_match(pred: str | None, gold: str) -> bool:
    """Whether a predicted answer equals the gold one as numbers (within REL_TOL relative
    difference); a missing prediction (None) or one that is no number never matches.

    Raises ScalelabError when `gold` is not a number (a broken dataset, not a wrong model).
    """
    want = _to_decimal(gold) if isinstance(gold, str) else None
    if want is None:
        raise ScalelabError(f"gold answer {gold!r} is not a number")
    got = _to_decimal(pred) if isinstance(pred, str) else None
    if got is None:
        return False
    return got == want or abs(got - want) <= REL_TOL * max(abs(got), abs(want))


def em_metrics(
    preds: Sequence[str | None], golds: Sequence[str], hits: Sequence[bool] | None = None
) -> dict[str, float]:
    """Exact match over questions: preds are extracted answers (None: no number found);
    hits: whether each is right, when another rule than `exact_match` judges (an option
    letter, `eval/choice.py`).

    Returns exact_match (fraction right), exact_match_stderr (sample std over questions /
    sqrt(n), lm-eval's mean_stderr; NaN for one question), n_questions and n_no_answer.
    Raises ScalelabError on zero questions (a score over nothing must never be stored) or
    when preds and golds differ in length.
    """
    if len(preds) != len(golds):
        raise ScalelabError(f"{len(preds)} predictions for {len(golds)} gold answers")
    if not golds:
        raise ScalelabError("exact match over zero questions: nothing was evaluated")
    if hits is None:
        hits = [exact_match(p, g) for p, g in zip(preds, golds, strict=True)]
    elif len(hits) != len(golds):
        raise ScalelabError(f"{len(hits)} verdicts for {len(golds)} gold answers")
    mean, stderr = _mean_stderr([float(h) for h in hits])
    return {
        "exact_match": mean,
        "exact_match_stderr": stderr,
        "n_questions": len(golds),
        "n_no_answer": sum(p is None for p in preds),
    }
