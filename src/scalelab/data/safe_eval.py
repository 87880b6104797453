"""A restricted expression evaluator over Python's `ast`: never `eval` or `exec`.

Template files (GSM-Symbolic's `#init:`, `#conditions:`, `#answer:` lines and the `{expr}`
slots of worked solutions) are data from a package, so their expressions are parsed with
`ast.parse(mode="eval")` and walked here over a whitelist:

* constants (numbers, strings, booleans, None), lists and tuples;
* names, looked up in the variables given (never Python builtins);
* arithmetic `+ - * / // % **`, unary `- + not`, comparisons (chained), `and`/`or`,
  `a if c else b`;
* calls by plain name to the functions given (`functions`; `SAFE_FUNCTIONS` by default),
  positional arguments only;
* subscripts with one integer index (a template reads `pair[1]`), no slices.

Everything else (attributes, lambdas, comprehensions, f-strings, keyword arguments, calls
of anything but a whitelisted name, ...) is refused when parsing, with `ExpressionError`.
Resource caps: `**` with an exponent over `MAX_EXPONENT` or a result over `MAX_INT_BITS`
bits, and sequence repetition past `MAX_SEQUENCE` items (or of a list holding anything but
numbers), are refused too.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

from scalelab.errors import ScalelabError

MAX_EXPONENT = 1000
MAX_INT_BITS = 16_384
MAX_SEQUENCE = 10_000
MAX_SOURCE = 2_000  # characters of one expression

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
# Node types that may appear anywhere; operators are checked through the tables above.
_ALLOWED = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.List, ast.Tuple, ast.BinOp,
    ast.UnaryOp, ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.IfExp, ast.Call,
    ast.Subscript, *_BINOPS, *_CMPOPS, *_UNARY,
)  # fmt: skip


class ExpressionError(ScalelabError):
    """An expression that is refused (not in the whitelist) or fails to evaluate."""


def is_int(value: Any) -> bool:
    """Whether `value` is a whole number (int, integral Fraction, or a float within 1e-6)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, Fraction):
        return value.denominator == 1
    return isinstance(value, float) and abs(value - round(value)) < 1e-6


def divides(a: Any, b: Any) -> bool:
    """Whether `b` divides `a` (`a % b == 0`); False for b == 0 (a condition, not an error)."""
    return b != 0 and a % b == 0


SAFE_FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "int": int,
    "float": float,
    "round": round,
    "abs": abs,
    "min": min,
    "max": max,
    "sum": sum,
    "len": len,
    "divides": divides,
    "is_int": is_int,
}


@lru_cache(maxsize=8192)
def parse(source: str) -> ast.expr:
    """Parse one expression and check it against the whitelist.

    Raises ExpressionError for a syntax error, a source over `MAX_SOURCE` characters, or
    any construct outside the whitelist (the message names it and quotes the source).
    Cached by source text: templates repeat their expressions thousands of times.
    """
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"expression longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"not an expression: {source!r} ({err.msg})") from None
    for node in ast.walk(tree):
        why = _refusal(node)
        if why:
            raise ExpressionError(f"refused in {source.strip()!r}: {why}")
    return tree.body


def _refusal(node: ast.AST) -> str | None:
    """Why `node` is not allowed; None when it is."""
    if not isinstance(node, _ALLOWED):
        return f"{type(node).__name__} is not allowed"
    if isinstance(node, ast.Name) and node.id.startswith("__"):
        return f"name {node.id!r} is not allowed"
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            return "only calls of a function by its plain name are allowed"
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            return "keyword and starred arguments are not allowed"
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        return "slices are not allowed"
    if isinstance(node, ast.Constant) and not isinstance(
        node.value, int | float | str | bool | type(None)
    ):
        return f"constant of type {type(node.value).__name__} is not allowed"
    return None


def evaluate(
    source: str,
    variables: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]] = SAFE_FUNCTIONS,
) -> Any:
    """The value of expression `source` with `variables`, calling only `functions`.

    Raises ExpressionError when the expression is refused (see `parse`), names an unknown
    variable or function, exceeds a resource cap, or fails (division by zero, a type
    error, ...); the message quotes the expression.
    """
    tree = parse(source)
    try:
        return _Walker(variables, functions).eval(tree)
    except ExpressionError as err:
        raise ExpressionError(f"{source.strip()!r}: {err}") from None
    except (ArithmeticError, TypeError, ValueError, IndexError, KeyError) as err:
        raise ExpressionError(f"{source.strip()!r}: {type(err).__name__}: {err}") from None


class _Walker:
    """Evaluates an already checked tree."""

    def __init__(self, variables: Mapping[str, Any], functions: Mapping[str, Callable]):
        self.variables = variables
        self.functions = functions

    def eval(self, node: ast.expr) -> Any:  # noqa: C901 - one branch per node type
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in self.variables:
                raise ExpressionError(f"unknown name {node.id!r}")
            return self.variables[node.id]
        if isinstance(node, ast.List):
            return [self.eval(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.eval(e) for e in node.elts)
        if isinstance(node, ast.BinOp):
            return _binop(type(node.op), self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self.eval(node.operand))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self.eval(v) for v in node.values)
            return any(self.eval(v) for v in node.values)
        if isinstance(node, ast.IfExp):
            return self.eval(node.body if self.eval(node.test) else node.orelse)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        raise ExpressionError(f"{type(node).__name__} is not allowed")  # parse() refused it

    def _compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def _call(self, node: ast.Call) -> Any:
        name = node.func.id  # type: ignore[attr-defined]  # parse() allows plain names only
        if name not in self.functions:
            raise ExpressionError(f"function {name!r} is not allowed")
        return self.functions[name](*(self.eval(a) for a in node.args))

    def _subscript(self, node: ast.Subscript) -> Any:
        target, index = self.eval(node.value), self.eval(node.slice)
        if not isinstance(target, list | tuple | str) or type(index) is not int:
            raise ExpressionError("only a list, tuple or string indexed by an int is allowed")
        return target[index]


def _binop(op: type, left: Any, right: Any) -> Any:
    """`left op right` with the caps on powers and sequence repetition."""
    if op is ast.Pow:
        _check_power(left, right)
    elif op is ast.Mult:
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                if len(seq) * times > MAX_SEQUENCE:
                    raise ExpressionError(f"repetition longer than {MAX_SEQUENCE} items")
                # Repeating a list of lists would multiply the cap: [[1]*10**4]*10**4.
                if not isinstance(seq, str) and any(not isinstance(x, int | float) for x in seq):
                    raise ExpressionError("only strings and lists of numbers may be repeated")
    return _BINOPS[op](left, right)


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | float | Fraction) and abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(f"exponent {exponent} is over {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if base.bit_length() * exponent > MAX_INT_BITS:
            raise ExpressionError(f"power with more than {MAX_INT_BITS} bits")
