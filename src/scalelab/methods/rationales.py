"""rationales: a teacher model writes a worked solution for every training problem.

The first half of rationale distillation (TinyLLM, Tian et al. 2024; "Distilling step by
step", Hsieh et al. 2023): a teacher that does not hand over logits (another vocabulary,
or behind an API) explains the gold answer of each training problem, and students learn
from the text (`methods/rationale_distill.py`). One run per teacher:

    stages:
      teach:
        models: [smollm2-135m, gemma-3-270m, "http://127.0.0.1:8000/v1#my-model"]
        tasks: {dataset: gsm_symbolic, train_size: 200}
        methods: {name: rationales, prompt: rationale_cot, shots: 4}

- The prompt is a versioned data file (`data/prompts.py`, built-in `rationale_cot`:
  teacher forcing, the gold answer is in the prompt, then "Let's think step by step");
  its k in-context examples are other training problems with their gold rationales, drawn
  with `shot_seed`. The prompt's fingerprint is in the run id (a new version reruns).
- Generation is greedy, batched by the backend, and cached in the backend's SQLite
  request cache (`models/backends/cache.py`, keyed by the model's fingerprint and the
  exact request): rerunning the stage, or a second grid that asks the same teacher the
  same thing, makes no model calls. Finished chunks are appended to
  `rationales.partial.jsonl`, so a killed run resumes where it was.
- Filters: the final answer a rationale reaches (`eval.math.extract_answer`) must equal
  the gold answer, else the rationale is `inconsistent` (no final number counts as
  inconsistent: nothing shows it agrees); `consistency: drop` leaves those out of what
  students read, `flag` keeps them, marked. A rationale that only restates the answer (no
  number besides the answer, fewer than RESTATE_WORDS words; multiple choice: nothing but
  the letter or the gold option's text before "the answer is") is flagged `restates`.

Product: `rationales.jsonl`, one row per training problem: {"id", "rationale", "found"
(the answer it reached, or null), "consistent", "restates", "gold", "kept",
"finish_reason"}.
Metrics: how many survive (`rationales_kept`, `kept_frac`, `n_inconsistent`,
`n_restates`) and the cost (`requests`, `cached_requests`, `prompt_tokens`,
`completion_tokens`, `gen_seconds`, `gen_tokens_per_s`).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from scalelab import metrics as mx
from scalelab.config import Strict
from scalelab.errors import ScalelabError
from scalelab.io import PartialRows, read_jsonl_rows
from scalelab.methods.base import MethodDef, RunContext, RunResult, register_method
from scalelab.methods.evaluate import _open

PRODUCT = "rationales.jsonl"
PARTIAL = "rationales.partial.jsonl"
RESTATE_WORDS = 12
RESTATE_CHOICE_WORDS = 3  # a multiple-choice explanation needs a few words of its own
_ANSWER_MARKER = re.compile(r"(?:so\s+)?the\s+answer\s+is", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class RationalesParams(Strict):
    """prompt: a built-in prompt name or a prompt YAML path (`data/prompts.py`; None:
    `rationale_cot` for math, `rationale_mc` for mcqa); shots:
    in-context examples per request (None: the prompt's default); shot_seed: which
    training problems are the examples; max_tokens: the most new tokens per rationale (None:
    the prompt's default); consistency: `drop` rationales whose final answer is not the gold
    one, or `flag` them and keep them; dtype: weights' dtype for a local teacher (None: the
    checkpoint's); batch_size: requests per forward pass / HTTP batch (not in run ids: it
    changes nothing but float rounding)."""

    ID_OMIT: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    prompt: str | None = None
    shots: int | None = Field(None, ge=0, le=16)
    shot_seed: int = Field(0, ge=0)
    max_tokens: PositiveInt | None = Field(None, le=2048)
    consistency: Literal["drop", "flag"] = "drop"
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    batch_size: PositiveInt = 16


def restates_only(rationale: str, answer: str) -> bool:
    """Whether a rationale only restates the answer: no number in it other than the answer
    itself, and fewer than RESTATE_WORDS words (e.g. "The answer is 18.")."""
    from scalelab.eval.math import exact_match

    others = [n for n in _NUMBER.findall(rationale) if not exact_match(n, answer)]
    return not others and len(rationale.split()) < RESTATE_WORDS


def restates_choice(rationale: str, problem) -> bool:
    """Whether a multiple-choice rationale only restates the answer: before its "the answer
    is" (if any), with option letters "(B)" removed, fewer than RESTATE_CHOICE_WORDS words
    are left, or only the gold option's own text ("So the answer is (A).", "(A) a tree.")."""
    from scalelab.eval.choice import LETTERS

    body = _ANSWER_MARKER.split(rationale, maxsplit=1)[0]
    body = re.sub(r"\([A-Ja-j]\)", " ", body)
    words = re.findall(r"[\w'-]+", body.lower())
    gold = problem.options[LETTERS.index(problem.answer)] if problem.answer in LETTERS else ""
    return len(words) < RESTATE_CHOICE_WORDS or words == re.findall(r"[\w'-]+", gold.lower())


def judge(rationale: str, problem) -> dict:
    """{"found", "consistent", "restates"} of one rationale against the problem's gold
    answer (a number, or an option letter: `eval/choice.py`; restating: `restates_only`,
    `restates_choice`)."""
    from scalelab.eval.choice import answer_of, is_correct

    found = answer_of(problem, rationale)
    if problem.options:
        restates = restates_choice(rationale, problem)
    else:
        restates = restates_only(rationale, problem.answer)
    return {"found": found, "consistent": is_correct(problem, found), "restates": restates}


def read_rationales(run_dir: Path) -> dict[str, dict]:
    """The `rationales.jsonl` product of a `rationales` run: problem id -> row. Raises
    ScalelabError when it is missing or unreadable."""
    path = Path(run_dir) / PRODUCT
    if not path.is_file():
        raise ScalelabError(f"{path}: missing (the rationales run has not finished)")
    rows = read_jsonl_rows(path, "id")
    if len(rows) != sum(1 for line in path.read_bytes().splitlines() if line.strip()):
        raise ScalelabError(f"{path}: a line is not a rationale row (a damaged file)")
    return rows


def prompt_requests(p, prompt, problems: list, pool: list) -> list:
    """One greedy GenRequest per problem from params `p` (shots, shot_seed, max_tokens;
    None: the prompt's own) and `prompt` (a PromptTemplate): the prompt rendered after
    `shots` examples (the prompt's written ones, or drawn from `pool`, never the problem
    itself: one draw per problem, fixed by (shot_seed, its position), so shots vary across
    problems and never between reruns). Raises ScalelabError when there are too few."""
    from scalelab.models.backends import GenRequest

    k = prompt.shots if p.shots is None else p.shots
    limit = p.max_tokens or prompt.max_tokens
    return [
        GenRequest(prompt.render(q, prompt.shots_for(k, pool, p.shot_seed * 1_000_003 + i,
                                                     exclude_id=q.id)), limit, stop=prompt.stop)
        for i, q in enumerate(problems)
    ]  # fmt: skip


def run_rationales(ctx: RunContext) -> RunResult:
    """Write every training problem's rationale (resuming from saved chunks); metrics."""
    from scalelab.data.problems import load_problems
    from scalelab.io import atomic_write_text

    t0 = time.perf_counter()
    train = load_problems(ctx.task).get("train") or []
    if not train:
        raise ScalelabError("task: the training split has no problems to explain")
    prompt = resolve_prompt(ctx.params, ctx.task)
    requests = prompt_requests(ctx.params, prompt, train, train)
    saved = PartialRows(ctx.run_dir / PARTIAL, "id", [q.id for q in train])
    todo = [i for i, q in enumerate(train) if q.id not in saved]
    ctx.report({"step": len(saved), "total": len(train), "info": "rationales written"})
    cost = {"requests": 0, "cached_requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
            "cost_usd": 0.0}  # fmt: skip
    gen_seconds = 0.0
    with _open(ctx, cache=True) as backend:
        step = ctx.params.batch_size  # problems per generate call: what a kill can lose
        for k in range(0, len(todo), step):
            chunk = todo[k : k + step]
            t = time.perf_counter()
            gens = _generate(backend, [requests[i] for i in chunk], cost)
            gen_seconds += time.perf_counter() - t
            saved.add([_row(train[i], g, ctx.params.consistency)
                       for i, g in zip(chunk, gens, strict=True)])  # fmt: skip
            ctx.report({"step": len(saved), "total": len(train),
                        "info": f"rationales written; {_cost_line(cost, gen_seconds)}"})  # fmt: skip
    rows = [saved.rows[q.id] for q in train]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write_text(ctx.run_dir / PRODUCT, text)
    saved.done()
    return RunResult(metrics=_metrics(rows, cost, gen_seconds, time.perf_counter() - t0))


def _generate(backend, requests: list, cost: dict) -> list:
    """Generations (text, finish_reason) for `requests`; counts what was asked of the model
    (tokens and dollars of cached answers are not spent again: not counted)."""
    gens = backend.generate_full(requests)
    for g in gens:
        if g.cached:
            cost["cached_requests"] += 1
            continue
        cost["requests"] += 1
        cost["prompt_tokens"] += g.prompt_tokens
        cost["completion_tokens"] += g.completion_tokens
        cost["cost_usd"] += g.cost
    return gens


def _cost_line(cost: dict, seconds: float) -> str:
    """What generation has cost so far, in one line (dollars only where reported)."""
    line = (f"{cost['requests']} requests ({cost['cached_requests']} cached), "
            f"{cost['prompt_tokens']:,} + {cost['completion_tokens']:,} tokens, {seconds:.0f} s")  # fmt: skip
    return line + (f", ${cost['cost_usd']:.4f}" if cost["cost_usd"] else "")


def _row(problem, gen, consistency: str) -> dict:
    rationale = gen.text.strip()
    verdict = judge(rationale, problem)
    kept = verdict["consistent"] or consistency == "flag"
    return {"id": problem.id, "rationale": rationale, **verdict, "gold": problem.answer,
            "kept": kept, "finish_reason": gen.finish_reason}  # fmt: skip


def _metrics(rows: list[dict], cost: dict, gen_seconds: float, seconds: float) -> dict:
    n = len(rows)
    kept = sum(r["kept"] for r in rows)
    if kept == 0:
        raise ScalelabError(
            f"no rationale of {n} survived the consistency filter (none reached the gold "
            "answer): a student would learn nothing from this teacher; try consistency: flag, "
            "more max_tokens or another prompt"
        )
    made, paid = cost["completion_tokens"], cost.pop("cost_usd")
    return {
        "rationales_kept": kept,
        "rationales_total": n,
        "consistent_frac": sum(r["consistent"] for r in rows) / n,
        "kept_frac": kept / n,
        "n_inconsistent": sum(not r["consistent"] for r in rows),
        "n_restates": sum(r["restates"] for r in rows),
        "n_truncated": sum(r["finish_reason"] == "length" for r in rows),
        **cost,
        "gen_seconds": gen_seconds,
        # Only where the model was asked something: a rerun from the cache has no speed.
        **({"gen_tokens_per_s": made / gen_seconds} if made and gen_seconds > 0 else {}),
        **({"cost_usd": paid} if paid else {}),  # only what an endpoint reported
        "wall_s": seconds,
    }


def check_problem_task(task, needs: tuple[str, ...], shots: int = 0, prompt=None) -> None:
    """Spec time: the task (math or mcqa) has the splits a method reads, and, for shots
    drawn from its training problems, enough of them besides the problem itself, with the
    gold rationales `prompt` shows. Raises ScalelabError naming the field."""
    from scalelab.data.problems import gold_rationale_gap, problem_splits, train_size

    have = problem_splits(task)
    for split in needs:
        if split not in have:
            raise ScalelabError(
                f"tasks.dataset: {task.dataset!r} has no {split} split (it has: "
                f"{', '.join(have) or 'none'}); this method needs {', '.join(needs)}"
            )
    if prompt is not None and prompt.examples:  # the prompt's own written shots
        if shots > len(prompt.examples):
            raise ScalelabError(
                f"params.shots: {shots}, but prompt {prompt.name!r} has {len(prompt.examples)} "
                "written examples"
            )
        return
    if not shots:
        return
    n = train_size(task)
    if n is not None and shots >= n:
        raise ScalelabError(
            f"params.shots: {shots} examples need more than task.train_size ({n}) training "
            "problems (a problem is never its own example)"
        )
    gap = gold_rationale_gap(task) if prompt is not None and prompt.uses_rationales else None
    if gap:
        raise ScalelabError(
            f"params.prompt: {prompt.name!r} shows worked examples drawn from the training "
            f"problems, but {gap}: use a prompt with written examples (rationale_mc, "
            "fewshot_mc), direct_mc, or shots: 0"
        )


# The built-in prompt of each method when params.prompt is None, per task kind.
DEFAULT_PROMPTS = {
    "rationales": {"math": "rationale_cot", "mcqa": "rationale_mc"},
    "evaluate": {"math": "fewshot_cot", "mcqa": "fewshot_mc"},
}


def resolve_prompt(params, task, evaluating: bool = False):
    """`params.prompt` loaded (None: the task kind's default); an evaluation prompt must not
    show the asked problem's answer. Raises ScalelabError naming params.prompt."""
    from scalelab.data.prompts import load_prompt

    name = params.prompt or DEFAULT_PROMPTS["evaluate" if evaluating else "rationales"][task.kind]
    try:
        prompt = load_prompt(name)
    except ScalelabError as err:
        raise ScalelabError(f"params.prompt: {err}") from None
    if prompt.task_kinds and task.kind not in prompt.task_kinds:
        raise ScalelabError(
            f"params.prompt: {name!r} is written for {' and '.join(prompt.task_kinds)} tasks, "
            f"not {task.kind} (built-in for {task.kind}: "
            f"{', '.join(_builtins_for(task.kind)) or 'none'})"
        )
    if evaluating and prompt.shows_answer:
        raise ScalelabError(
            f"params.prompt: {name!r} shows each problem's own answer ({{{{ answer }}}}): a "
            "prompt for writing rationales, not for evaluating (use fewshot_cot or fewshot_mc)"
        )
    return prompt


def _builtins_for(kind: str) -> list[str]:
    from scalelab.data.prompts import list_prompts, load_prompt

    return [n for n in list_prompts() if kind in (load_prompt(n).task_kinds or (kind,))]


def prompt_identity(task, params, evaluating: bool = False) -> dict:
    """What a run id records of its prompt: the fingerprint of the file it renders (a new
    version, or an edited prompt YAML, gives new runs; the cache keys change with the text)."""
    return {"prompt": resolve_prompt(params, task, evaluating).fingerprint}


def check(task, params: RationalesParams) -> None:
    """Spec time: the prompt loads; the task has training problems for the shots."""
    prompt = resolve_prompt(params, task)
    shots = prompt.shots if params.shots is None else params.shots
    check_problem_task(task, ("train",), shots, prompt)


METRICS = (
    mx.MetricDef("consistent_frac", True, ".1%", "fraction of rationales that reach the gold "
                 "answer", bounds=(0.0, 1.0)),
    mx.MetricDef("kept_frac", True, ".1%", "fraction of rationales students will read (all "
                 "with consistency: flag)", bounds=(0.0, 1.0)),
    mx.MetricDef("rationales_kept", None, ",d", "rationales students will read", kind="info"),
    mx.MetricDef("rationales_total", None, ",d", "training problems explained", kind="info"),
    mx.MetricDef("n_inconsistent", None, ",d", "rationales whose final answer is not the gold one",
                 kind="info"),
    mx.MetricDef("n_restates", None, ",d", "rationales that only restate the answer",
                 kind="info"),
    mx.MetricDef("n_truncated", None, ",d", "rationales cut at max_tokens", kind="info"),
    mx.MetricDef("requests", None, ",d", "generation requests sent to the model (not cached)",
                 kind="cost"),
    mx.MetricDef("cached_requests", None, ",d", "requests answered from the request cache",
                 kind="cost"),
    mx.MetricDef("prompt_tokens", None, ",d", "prompt tokens of the requests", kind="cost"),
    mx.MetricDef("completion_tokens", None, ",d", "tokens generated", kind="cost"),
    mx.MetricDef("gen_seconds", None, ".1f", "seconds spent generating", kind="cost"),
    mx.MetricDef("cost_usd", None, ".4f", "dollars the endpoint reported (0: none reported)",
                 kind="cost"),
    mx.MetricDef("gen_tokens_per_s", None, ".1f", "generated tokens per second", kind="cost"),
    mx.WALL_S,
)  # fmt: skip

register_method(
    MethodDef(
        name="rationales",
        params=RationalesParams,
        entry="scalelab.methods.rationales:run_rationales",
        task_kinds=("math", "mcqa"),
        description="a teacher model writes a rationale for every training problem (TinyLLM)",
        check=check,
        data_identity=prompt_identity,
        metrics=METRICS,
        products=(PRODUCT,),
    )
)
