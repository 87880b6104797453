"""evaluate on math word problems and multiple choice in writing: few-shot accuracy.

The "larger model to beat" of rationale distillation: each teacher (any backend: local
weights, a GGUF file, an OpenAI-compatible endpoint) answers the task's test problems
after k worked examples from the training split (prompt `fewshot_cot`, a versioned data
file; examples drawn with `shot_seed`, never the problem itself), greedy, and its final
number is scored by exact match (`eval/math.py`: after `####`, "The answer is", else the
last number). On an mcqa task (`data/mcqa.py`) the prompt is `fewshot_mc` (written
examples, "So the answer is (X).") or `direct_mc` (the letter only), and the letter the
model settles on is scored (`eval/choice.py`). With a `gsm8k` split in the task
(GSM-Symbolic's `gsm8k_size`), the GSM8K questions no training template came from are
scored too.

Generations are cached by the backend for HTTP models and appended to
`generations.partial.jsonl` chunk by chunk, so a killed run resumes where it was.
Product: `generations.jsonl` (split, id, output, found, gold, correct).
"""

from __future__ import annotations

import json
import time

from scalelab.errors import ScalelabError
from scalelab.methods.base import RunContext, RunResult

PRODUCT = "generations.jsonl"
PARTIAL = "generations.partial.jsonl"
CHUNK = 16


def run_math(ctx: RunContext) -> RunResult:
    """Answer every test (and gsm8k) problem, resuming from saved chunks; the metrics.
    Raises ScalelabError for a task with no test problems."""
    from scalelab.data.problems import load_problems
    from scalelab.eval.choice import answer_of, is_correct, score_rows
    from scalelab.io import PartialRows, atomic_write_text
    from scalelab.methods.evaluate import _open
    from scalelab.methods.rationales import prompt_requests, resolve_prompt

    t0 = time.perf_counter()
    p = ctx.params
    prompt = resolve_prompt(p, ctx.task, evaluating=True)
    splits = load_problems(ctx.task)
    todo_splits = [(s, splits[s][: p.limit]) for s in ("test", "gsm8k") if splits.get(s)]
    if not todo_splits:
        raise ScalelabError("task: no test problems to answer")
    pool = splits.get("train") or []
    problems = [(s, q) for s, qs in todo_splits for q in qs]
    # Shot draws are numbered within each split (the gsm8k split's first problem is 0).
    requests = [r for _, qs in todo_splits for r in prompt_requests(p, prompt, qs, pool)]
    keys = [f"{s}/{q.id}" for s, q in problems]
    saved = PartialRows(ctx.run_dir / PARTIAL, "key", keys)
    todo = [i for i, k in enumerate(keys) if k not in saved]
    ctx.report({"step": len(saved), "total": len(keys), "info": "problems answered"})
    with _open(ctx, cache=True) as backend:  # generation is cached for every model
        for c in range(0, len(todo), CHUNK):
            chunk = todo[c : c + CHUNK]
            texts = backend.generate([requests[i] for i in chunk])
            rows = []
            for i, text in zip(chunk, texts, strict=True):
                split, q = problems[i]
                found = answer_of(q, text)
                rows.append({"key": keys[i], "split": split, "id": q.id, "output": text,
                             "found": found, "gold": q.answer, "correct": is_correct(q, found)})  # fmt: skip
            saved.add(rows)
            ctx.report({"step": len(saved), "total": len(keys), "info": "problems answered"})
        sizes = _sizes(backend)
    rows = [saved.rows[k] for k in keys]
    metrics: dict = {}
    for split, qs in todo_splits:
        em = score_rows(qs, [saved.rows[f"{split}/{q.id}"]["found"] for q in qs])
        metrics[f"{split}_exact_match"] = em["exact_match"]
        metrics[f"{split}_exact_match_stderr"] = em["exact_match_stderr"]
        metrics[f"{split}_n"] = em["n_questions"]
        metrics[f"{split}_no_answer"] = em["n_no_answer"]
    atomic_write_text(ctx.run_dir / PRODUCT, "".join(json.dumps(r) + "\n" for r in rows))
    saved.done()
    shots = prompt.shots if p.shots is None else p.shots
    metrics.update(shots=shots, wall_s=time.perf_counter() - t0, **sizes)
    return RunResult(metrics)


def _sizes(backend) -> dict[str, int]:
    """Parameter counts of a local model (an HTTP model's are unknown: none)."""
    from scalelab.models.build import count_params

    if backend.kind == "http":
        return {}
    non_embedding, total = count_params(backend.module)
    return {"non_embedding_params": non_embedding, "total_params": total}
