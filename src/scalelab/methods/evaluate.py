"""evaluate: score a model on a task without training it.

* multiple_choice tasks (`data/multiple_choice.py`): each question's choices scored by
  log-likelihood through the model's backend (local weights or an OpenAI-compatible
  endpoint), reporting lm-evaluation-harness's acc, acc_norm and acc_bytes, and the task
  loss of Mayilvahanan et al. 2025 (`eval/multiple_choice.py`). Product: `scores.parquet`,
  one row per question with every choice's log-likelihood and token count. Scores are
  appended to `scores.partial.jsonl` chunk by chunk, so a killed run resumes where it was
  and loses at most the chunk in flight.
* lm tasks: the corpus loss of any causal LM on the task's validation and test splits,
  tokenized with the model's own tokenizer and scored with the sliding window pretraining
  uses (`eval/lm.py`), so a ladder model's loss on another corpus is measured the way its
  own validation loss was (loss-to-loss fits, Brandfonbrener et al. 2024).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from scalelab import metrics as mx
from scalelab.config import Strict
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, RunContext, RunResult, register_method

PARTIAL = "scores.partial.jsonl"
SCORES = "scores.parquet"


class EvaluateParams(Strict):
    """shots: few-shot examples before each question (lm-eval's num_fewshot); limit: only
    the first `limit` questions of the evaluation split (lm-eval's --limit); dtype: the
    weights' dtype for local models (None: the checkpoint's); batch_size: sequences per
    forward pass (local) or per request (HTTP), left out of run ids (it moves nothing but
    float rounding)."""

    ID_OMIT: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    shots: int = Field(0, ge=0, le=64)
    limit: PositiveInt | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    batch_size: PositiveInt = 16


class EvaluateMathParams(EvaluateParams):
    """`evaluate`'s params for math and mcqa tasks: shots (None: the prompt's default),
    limit (the first test problems only), dtype, batch_size, and prompt: a built-in prompt
    name or a prompt YAML path (`data/prompts.py`; None: `fewshot_cot` for math,
    `fewshot_mc` for mcqa); shot_seed: which training problems are the
    examples; max_tokens: the most new tokens per answer (None: the prompt's default)."""

    ID_OMIT: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    shots: int | None = Field(None, ge=0, le=64)  # type: ignore[assignment]
    prompt: str | None = None
    shot_seed: int = Field(0, ge=0)
    max_tokens: PositiveInt | None = Field(None, le=4096)


def _open(ctx: RunContext, cache: bool | None = None):
    """The run's model as a backend (`params.dtype`, `params.batch_size`). cache: None
    is the backend's default (HTTP cached: a rerun asks the server nothing again; local
    not); True caches every model (teachers' generations, which experiments repeat)."""
    from transformers.utils import logging as hf_logging

    from scalelab.engine.devices import prepare_device
    from scalelab.models.backends import open_backend

    hf_logging.disable_progress_bar()  # the grid's display shows progress
    p = ctx.params
    if ctx.model.kind == "http":
        return open_backend(ctx.model, cache=cache, batch_size=p.batch_size)
    device = prepare_device(ctx.runtime)
    return open_backend(ctx.model, cache=cache, device=str(device), dtype=p.dtype,
                        batch_size=p.batch_size)  # fmt: skip


def run_multiple_choice(ctx: RunContext) -> RunResult:
    """Score the task's questions (resuming from saved chunks), write the product, return
    the metrics. Raises ScalelabError for zero questions or a non-finite score."""
    import time

    import pandas as pd

    from scalelab.data.multiple_choice import load_mc_task
    from scalelab.eval.multiple_choice import QuestionScore, mc_metrics, score_questions
    from scalelab.io import PartialRows, atomic_write

    t0 = time.perf_counter()
    p = ctx.params
    task = load_mc_task(ctx.task.dataset)
    questions = task.questions(p.shots, p.limit)
    # another task or shot count wrote the partial file: it starts again
    saved = PartialRows(ctx.run_dir / PARTIAL, "doc_id", [q.doc_id for q in questions])
    todo = [q for q in questions if q.doc_id not in saved]
    ctx.report({"step": len(saved), "total": len(questions), "info": "questions scored"})

    def keep(chunk: list[QuestionScore]) -> None:
        saved.add([s.as_row() for s in chunk])
        ctx.report({"step": len(saved), "total": len(questions), "info": "questions scored"})

    with _open(ctx) as backend:
        questions, n_cut, skipped = window_fit(backend, questions)
        _warn_window(ctx, backend, len(questions) + len(skipped), n_cut, skipped)
        if not questions and skipped:
            raise ScalelabError(
                f"no question fits the model's window of {backend.max_length} tokens "
                "(an answer alone is longer): use a model with a longer context"
            )
        score_questions(backend, [q for q in todo if q.doc_id not in skipped], done=keep)
    scores = [QuestionScore.from_row(saved.rows[q.doc_id]) for q in questions]
    bad = [s.doc_id for s in scores if not all(math.isfinite(x) for x in s.ll)]
    if bad:
        raise ScalelabError(f"non-finite log-likelihoods for questions {bad[:5]}: not stored")
    metrics = mc_metrics(scores)
    frame = pd.DataFrame([s.as_row() for s in scores])
    atomic_write(ctx.run_dir / SCORES, lambda tmp: frame.to_parquet(tmp, index=False))
    saved.done()
    metrics.update(shots=p.shots, n_truncated=n_cut, n_skipped=len(skipped),
                   wall_s=time.perf_counter() - t0)  # fmt: skip
    return RunResult(metrics)


def window_fit(backend, questions: list) -> tuple[list, int, set[int]]:
    """(the questions a local model can score, how many of them lose the start of their
    context to its window, doc ids of those whose answer alone does not fit), by the
    backend's own window rule (`LocalBackend.window_cut`, lm-eval's). HTTP models: all
    kept."""
    from scalelab.models.backends.base import span_start

    window_cut = getattr(backend, "window_cut", None)
    if window_cut is None:
        return questions, 0, set()
    requests = [r for q in questions for r in q.requests()]
    encoded = iter(backend.encode_many([c + x for c, x in requests]))
    kept, n_cut, skipped = [], 0, set()
    for q in questions:  # `encoded` is one iterator: each question takes its own requests
        cuts = [window_cut(len(ids), span_start(starts, len(context)))
                for (context, _), (ids, starts) in zip(q.requests(), encoded, strict=False)]  # fmt: skip
        if None in cuts:
            skipped.add(q.doc_id)
            continue
        kept.append(q)
        n_cut += max(cuts) > 0
    return kept, n_cut, skipped


def _warn_window(ctx: RunContext, backend, n: int, n_cut: int, skipped: set[int]) -> None:
    if n_cut:
        ctx.report({"warning": f"{n_cut} of {n} questions are longer than the model's window "
                    f"({backend.max_length} tokens): their context loses its start (with "
                    "shots, the first examples); n_truncated counts them"})  # fmt: skip
    if skipped:
        ctx.report({"warning": f"{len(skipped)} of {n} questions have an answer longer than "
                    f"the model's window ({backend.max_length} tokens) and are not scored; "
                    "n_skipped counts them, the metrics are over the rest"})  # fmt: skip


def run_lm(ctx: RunContext) -> RunResult:
    """The model's loss on the task's validation and test text (sliding window)."""
    import time

    from scalelab.data.lm_tokens import prepare_lm_data
    from scalelab.eval.lm import sliding_window_score
    from scalelab.models.build import count_params

    t0 = time.perf_counter()
    if ctx.model.kind == "http":
        raise ScalelabError(
            f"model {ctx.model.name!r}: corpus loss needs local weights (an HTTP model "
            "can evaluate multiple_choice tasks)"
        )
    task = ctx.task
    with _open(ctx) as backend:
        model, tokenizer = backend.module, backend.tokenizer
        data = prepare_lm_data(task, tokenizer=tokenizer, report=ctx.report)
        window, stride = eval_window(task, backend.max_length)
        metrics: dict[str, float] = {}
        for split, prefix in (("validation", "val"), ("test", "test")):
            score = sliding_window_score(
                model, data.ids[split], window, stride, task.eval.max_tokens,
                batch_size=max(1, ctx.params.batch_size // 2),
            )  # fmt: skip
            metrics[f"{prefix}_loss"], metrics[f"{prefix}_ppl"] = score.loss, score.ppl
        non_emb, total = count_params(model)
    metrics.update(non_embedding_params=non_emb, total_params=total, eval_window=window,
                   eval_stride=stride, wall_s=time.perf_counter() - t0)  # fmt: skip
    return RunResult(metrics)


def eval_window(task, max_length: int) -> tuple[int, int]:
    """(window, stride) of the sliding window: `task.eval.window`, else the task's seq_len
    when the spec sets it (a pretraining task's window), else the model's own context up
    to 1024 tokens; the stride `task.eval.stride`, else half the window (as pretraining's
    final evaluation). Never more than the model's context."""
    window = task.eval.window or (
        task.seq_len if "seq_len" in task.model_fields_set else min(max_length, 1024)
    )
    window = min(window, max_length)
    return window, min(task.eval.stride or max(window // 2, 1), window)


def check(task, params: EvaluateParams) -> None:
    """Spec-time: shots mean nothing for a corpus; a task file of the user's renders its
    first question with the shots asked for (a template error, a bad gold index or too few
    documents for the shots is one line now, not a failed run)."""
    if task.kind == "lm":
        if params.shots:
            raise ScalelabError(
                "params.shots: few-shot examples apply to multiple_choice tasks, not to a "
                "corpus; put corpora in a stage of their own"
            )
        return
    from scalelab.data.catalog import DATASETS
    from scalelab.data.multiple_choice import load_mc_task

    if task.dataset not in DATASETS:  # built-in tasks are tested; their data is fetched late
        try:
            load_mc_task(task.dataset).questions(params.shots, limit=1)
        except ScalelabError as err:
            raise ScalelabError(f"tasks.dataset: {err}") from None


def _check_math(task, params: EvaluateMathParams) -> None:
    """Spec time: the prompt loads and does not show the answer; the task has test problems
    (and training problems for drawn shots)."""
    from scalelab.methods.rationales import check_problem_task, resolve_prompt

    prompt = resolve_prompt(params, task, evaluating=True)
    shots = prompt.shots if params.shots is None else params.shots
    drawn = shots and not prompt.examples
    check_problem_task(task, ("test", "train") if drawn else ("test",), shots, prompt)


def _prompt_identity(task, params: EvaluateMathParams) -> dict:
    from scalelab.methods.rationales import prompt_identity

    return prompt_identity(task, params, evaluating=True)


def check_run(task, params, model, inputs) -> None:
    """Spec-time: the model must have weights (an untrained ladder name has none)."""
    if model.kind == "ladder":
        raise ScalelabError(
            f"model {model.name!r} is an untrained ladder config: evaluate a trained one "
            "(`@stage` of a pretraining stage, or a run's model folder)"
        )


UNIT = (0.0, 1.0)
MC_METRICS = (
    mx.MetricDef("acc", True, ".4f", "accuracy: the most likely choice is the gold one",
                 bounds=UNIT),
    mx.MetricDef("acc_norm", True, ".4f", "accuracy, log-likelihood per character of the "
                 "choice (lm-eval's acc_norm)", bounds=UNIT),
    mx.MetricDef("acc_bytes", True, ".4f", "accuracy, log-likelihood per UTF-8 byte",
                 bounds=UNIT),
    mx.MetricDef("task_loss", False, ".4f", "gold choice's negative log-likelihood per "
                 "token, nats (LLMs on the Line's task loss)"),
    mx.MetricDef("acc_stderr", None, ".4f", "standard error of acc over questions", "info"),
    mx.MetricDef("acc_norm_stderr", None, ".4f", "standard error of acc_norm", "info"),
    mx.MetricDef("acc_bytes_stderr", None, ".4f", "standard error of acc_bytes", "info"),
    mx.MetricDef("n_questions", None, ",d", "questions scored", "info"),
    mx.MetricDef("shots", None, ",d", "few-shot examples per question", "info"),
    mx.MetricDef("n_truncated", None, ",d", "questions whose context the model's window cut "
                 "(scored on what fits)", "info"),
    mx.MetricDef("n_skipped", None, ",d", "questions not scored: an answer alone is longer "
                 "than the model's window", "info"),
    mx.WALL_S,
)  # fmt: skip
LM_METRICS = (
    mx.VAL_LOSS,
    mx.MetricDef("eval_window", None, ",d", "tokens of context per scoring window", "info"),
    mx.MetricDef("eval_stride", None, ",d", "tokens the window advances", "info"),
    mx.MetricDef("val_ppl", False, ".2f", "validation perplexity, exp(val_loss)"),
    mx.TEST_LOSS,
    mx.MetricDef("test_ppl", False, ".2f", "test perplexity, exp(test_loss)"),
    mx.NON_EMBEDDING_PARAMS,
    mx.TOTAL_PARAMS,
    mx.WALL_S,
)


def _em(name: str, what: str) -> mx.MetricDef:
    return mx.MetricDef(name, True, ".1%", what, bounds=UNIT)


MATH_METRICS = (
    _em("test_exact_match", "exact match of the final answer (number, or option letter) on "
        "the test problems"),
    _em("gsm8k_exact_match", "exact match on GSM8K questions no training template came from"),
    mx.MetricDef("test_exact_match_stderr", None, ".4f", "its standard error", "info"),
    mx.MetricDef("gsm8k_exact_match_stderr", None, ".4f", "its standard error", "info"),
    mx.MetricDef("test_n", None, ",d", "test problems answered", "info"),
    mx.MetricDef("gsm8k_n", None, ",d", "GSM8K questions answered", "info"),
    mx.MetricDef("test_no_answer", None, ",d", "answers with no number (option letter) in them",
                 "info"),
    mx.MetricDef("gsm8k_no_answer", None, ",d", "answers with no number in them", "info"),
    mx.MetricDef("shots", None, ",d", "worked examples before each problem", "info"),
    mx.NON_EMBEDDING_PARAMS,
    mx.TOTAL_PARAMS,
    mx.WALL_S,
)  # fmt: skip

_DESCRIPTION = (
    "score a model without training (multiple choice, corpus loss, written "
    "answers to math and multiple-choice questions, zero-shot and in-context "
    "classification)"
)
_WRITTEN = MethodDef("evaluate", EvaluateMathParams, "scalelab.methods.evaluate_math:run_math",
                     ("math", "mcqa"), _DESCRIPTION, check=_check_math, check_run=check_run,
                     metrics=MATH_METRICS, products=("generations.jsonl",),
                     data_identity=_prompt_identity)  # fmt: skip
register_method(
    MethodDef(
        name="evaluate",
        params=EvaluateParams,
        entry="scalelab.methods.evaluate:run_multiple_choice",
        task_kinds=("multiple_choice", "lm", "math", "mcqa"),
        description=_DESCRIPTION,
        check=check,
        check_run=check_run,
        metrics=MC_METRICS + tuple(m for m in LM_METRICS if m not in MC_METRICS),
        products=(SCORES,),
        variants={
            "lm": MethodDef("evaluate", EvaluateParams, "scalelab.methods.evaluate:run_lm",
                            ("lm",), _DESCRIPTION, check=check, check_run=check_run,
                            metrics=LM_METRICS, products=()),
            "math": _WRITTEN,
            # multiple choice has no GSM8K split: the same definition without its metrics
            "mcqa": replace(_WRITTEN, metrics=tuple(m for m in MATH_METRICS
                                                    if not m.name.startswith("gsm8k"))),
        },
    )
)  # fmt: skip
