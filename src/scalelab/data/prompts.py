"""Versioned prompts as data files: `data/prompts/<name>.yaml` (built-in) or any YAML path.

A prompt file has exactly these keys (any other is an error naming the file and the key):

    name: rationale_cot          # letters, digits, _ . -
    version: 1                   # an int >= 1; bump it whenever the text a model sees changes
    description: ...             # for people; not part of the fingerprint
    template: |-                 # Jinja2 (sandboxed, undefined names are errors), given
      ...                        #   question, answer and shots (objects with question,
                                 #   rationale and answer)
    stop: ["\\n\\nQuestion:"]      # strings that end a completion
    max_tokens: 256              # default new-token budget
    shots: 4                     # default number of few-shot examples
    examples:                    # optional: the shots, written in the file (the first
      - question: ...            #   `shots` of them, in order, for every problem), for
        answer: ...              #   data with no gold rationales to draw shots from
        rationale: ...           #   (multiple choice); without it shots are drawn from
                                 #   the task's training problems (`choose_shots`)
    task_kinds: [mcqa]           # optional: the task kinds it is written for (math, mcqa;
                                 #   empty: any); another kind's task refuses it at spec time

`PromptTemplate.fingerprint` hashes everything but the description, so it belongs in cache
keys and run ids: any change to what is rendered or how generation stops gives another.
A problem or a shot is any object (or mapping) with `question`, `rationale` and `answer`
(and `id` for `choose_shots`), like `scalelab.data.math_data.Problem`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from scalelab.config import Strict, read_yaml_model
from scalelab.errors import ScalelabError, shown

PROMPTS_DIR = Path(__file__).parent / "prompts"
VARIABLES = frozenset({"question", "answer", "shots"})  # what a template is rendered with


def _jinja_env():
    """Sandboxed (a prompt file is user input) and strict: an undefined name is an error,
    not an empty string; a trailing newline in a template is kept."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


class PromptExample(Strict):
    """One worked example written in a prompt file."""

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    rationale: str = ""


class PromptTemplate(Strict):
    """One prompt (the keys of its YAML file; see the module docstring). Frozen."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.-]*$")
    version: StrictInt = Field(ge=1)
    description: str = ""
    template: str = Field(min_length=1)
    stop: tuple[str, ...] = ()
    max_tokens: StrictInt = Field(256, ge=1)
    shots: StrictInt = Field(4, ge=0)
    examples: tuple[PromptExample, ...] = ()
    task_kinds: tuple[Literal["math", "mcqa"], ...] = ()

    @field_validator("template")
    @classmethod
    def _compiles(cls, value: str) -> str:
        """The template parses and uses no variable beyond question, answer and shots."""
        from jinja2 import TemplateSyntaxError, meta

        try:
            names = meta.find_undeclared_variables(_jinja_env().parse(value))
        except TemplateSyntaxError as err:
            raise ValueError(f"template error at line {err.lineno}: {err.message}") from None
        unknown = sorted(names - VARIABLES)
        if unknown:
            raise ValueError(
                f"unknown template variable(s) {', '.join(unknown)} (known: question, "
                "answer, shots)"
            )
        return value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("a stop string is empty (it would end every completion at once)")
        return value

    @model_validator(mode="after")
    def _enough_examples(self) -> PromptTemplate:
        if self.examples and self.shots > len(self.examples):
            raise ValueError(f"shots: {self.shots} but only {len(self.examples)} examples")
        return self

    def shots_for(self, k: int, pool: Sequence[Any], seed: int, exclude_id: str | None) -> list:
        """The k shots of one request: the file's first k `examples` when it has them,
        else k drawn from `pool` (`choose_shots`). Raises ScalelabError when there are too
        few of either."""
        if not self.examples:
            return choose_shots(pool, k, seed, exclude_id=exclude_id)
        if k > len(self.examples):
            raise ScalelabError(
                f"prompt {self.name!r}: {k} shots asked for, but it has {len(self.examples)} "
                "examples"
            )
        return [e.model_dump() for e in self.examples[:k]]

    @property
    def uses_rationales(self) -> bool:
        """Whether the template shows shots' rationales (then drawn shots need gold ones)."""
        return "rationale" in self.template

    @property
    def shows_answer(self) -> bool:
        """Whether the template shows the asked problem's own answer (`{{ answer }}`): a
        teacher-forcing prompt for writing rationales, never one for evaluating a model."""
        from jinja2 import meta

        return "answer" in meta.find_undeclared_variables(_jinja_env().parse(self.template))

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of name, version, template, stop, max_tokens, shots and examples as
        canonical JSON; the description and task_kinds are left out (they change no output)."""
        content = self.model_dump(exclude={"description", "task_kinds"})
        content["stop"] = list(self.stop)
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def render(self, problem: Any, shots: Sequence[Any] = ()) -> str:
        """The prompt text for `problem` after `shots` (in the order given).

        Raises ScalelabError when the template needs a field the problem or a shot lacks."""
        from jinja2 import TemplateError

        values = {
            "question": _field(problem, "question"),
            "answer": _field(problem, "answer"),
            "shots": list(shots),
        }
        try:
            return _jinja_env().from_string(self.template).render(**values)
        except TemplateError as err:  # an undefined field of a shot, a sandbox refusal
            raise ScalelabError(f"prompt {self.name!r} v{self.version}: {err}") from None


_MISSING = object()


def _field(item: Any, name: str) -> Any:
    """`item.name` or `item[name]`; a missing field renders as Jinja's undefined (an error
    only if the template uses it)."""
    if isinstance(item, dict):
        return item.get(name, _undefined(name))
    value = getattr(item, name, _MISSING)
    return _undefined(name) if value is _MISSING else value


def _undefined(name: str) -> Any:
    from jinja2 import StrictUndefined

    return StrictUndefined(name=name)


def _id(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else getattr(item, "id", None)


def list_prompts() -> list[str]:
    """The built-in prompt names (the YAML files shipped in data/prompts/), sorted."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))


def load_prompt(name_or_path: str) -> PromptTemplate:
    """A built-in prompt by name, or the prompt YAML at a path.

    Raises ScalelabError (one line naming the file) for an unknown name, an unreadable or
    invalid YAML file, an unknown or missing key, a bad value or a template that does not
    parse or uses an unknown variable."""
    if name_or_path in list_prompts():
        path = PROMPTS_DIR / f"{name_or_path}.yaml"
    elif name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
    else:
        raise ScalelabError(
            f"unknown prompt {shown(name_or_path)} (built-in: {', '.join(list_prompts())}; "
            "or a path to a prompt YAML)"
        )
    return read_yaml_model(path, PromptTemplate, "prompt")


def choose_shots(
    pool: Sequence[Any], k: int, seed: int, exclude_id: str | None = None
) -> list[Any]:
    """k few-shot examples drawn from `pool` without replacement, never the one whose `.id`
    is `exclude_id` (the problem being asked).

    lm-eval's rule: draw k + 1 with `random.Random(seed)`, drop the excluded one, keep the
    first k; so every problem gets the same shots unless it is one of them (then the spare
    replaces it). The same pool order, k and seed always give the same shots.
    Raises ScalelabError for k < 0 or a pool with fewer than k others.
    """
    if k < 0:
        raise ScalelabError(f"number of shots must be >= 0, not {k}")
    others = sum(1 for p in pool if exclude_id is None or _id(p) != exclude_id)
    if others < k:
        raise ScalelabError(
            f"{k} shots asked for, but the shot pool has only {others} problems"
            + (f" besides {exclude_id!r}" if exclude_id is not None else "")
        )
    drawn = random.Random(seed).sample(list(pool), min(k + 1, len(pool)))
    kept = [p for p in drawn if exclude_id is None or _id(p) != exclude_id]
    if len(kept) < k:  # the excluded id is in the pool more than once: draw from the rest
        kept = random.Random(seed).sample([p for p in pool if _id(p) != exclude_id], k)
    return kept[:k]
