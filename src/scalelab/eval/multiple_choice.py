"""Multiple-choice scoring by log-likelihood, with lm-evaluation-harness's metrics.

Each question is a context and k choices; choice i is scored as the continuation
`target_delimiter + choice_i` (`data/multiple_choice.py` builds both exactly as lm-eval's
`ConfigurableTask` does). From the k summed log-likelihoods ll_i (natural log):

* acc: argmax_i ll_i is the gold choice;
* acc_norm: argmax_i ll_i / len(choice_i) in characters (lm-eval's acc_norm: the choice
  text without the delimiter);
* acc_bytes: argmax_i ll_i / len(choice_i.encode("utf-8"));
* task_loss: -ll_gold / n_gold, the gold continuation's negative log-likelihood per token
  (its tokens counted exactly, as the backend split them), the "task loss" of
  Mayilvahanan et al. 2025 ("LLMs on the Line", Sec. 3), averaged over questions.

Ties go to the first choice (numpy argmax, as lm-eval). Standard errors are the sample
standard deviation over questions / sqrt(n), lm-eval's `mean_stderr`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from scalelab.errors import ScalelabError


class Question(Protocol):
    doc_id: int
    context: str
    choices: tuple[str, ...]
    gold: int
    target_delimiter: str

    def requests(self) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class QuestionScore:
    """One question's scores: per choice, ll (summed log-likelihood, nats), n_tokens (of
    the continuation) and greedy (every token the argmax); `choices` are the choice texts."""

    doc_id: int
    gold: int
    choices: tuple[str, ...]
    ll: tuple[float, ...]
    n_tokens: tuple[int, ...]
    greedy: tuple[bool, ...]

    def pick(self, norm: str = "none") -> int:
        """The chosen index under lm-eval's normalisation: none, chars or bytes."""
        if norm == "chars":
            denom = [float(len(c)) for c in self.choices]
        elif norm == "bytes":
            denom = [float(len(c.encode("utf-8"))) for c in self.choices]
        else:
            denom = [1.0] * len(self.choices)
        scores = [ll / d if d else -math.inf for ll, d in zip(self.ll, denom, strict=True)]
        return max(range(len(scores)), key=lambda i: (scores[i], -i))

    @property
    def task_loss(self) -> float:
        """-ll / tokens of the gold continuation (nats per token); NaN for zero tokens."""
        n = self.n_tokens[self.gold]
        return -self.ll[self.gold] / n if n else math.nan

    def as_row(self) -> dict[str, Any]:
        return {**asdict(self), "choices": list(self.choices), "ll": list(self.ll),
                "n_tokens": list(self.n_tokens), "greedy": list(self.greedy)}  # fmt: skip

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QuestionScore:
        """The score `as_row` wrote (JSON lists back to tuples)."""
        return cls(int(row["doc_id"]), int(row["gold"]), tuple(row["choices"]),
                   tuple(row["ll"]), tuple(row["n_tokens"]), tuple(row["greedy"]))  # fmt: skip


def score_questions(
    backend: Any,
    questions: Sequence[Question],
    chunk: int = 64,
    done: Callable[[list[QuestionScore]], None] | None = None,
) -> list[QuestionScore]:
    """Score every question's choices with `backend.loglikelihood`, `chunk` questions per
    call (so the backend can share each context and batch across questions); `done` gets
    each chunk's scores as soon as they exist (a caller saves them: a kill then loses at
    most the chunk in flight). Raises ScalelabError for a question whose gold index is not
    one of its choices."""
    out: list[QuestionScore] = []
    for start in range(0, len(questions), chunk):
        part = questions[start : start + chunk]
        requests = [r for q in part for r in q.requests()]
        answers = iter(backend.loglikelihood(requests))
        scored = []
        for q in part:
            if not 0 <= q.gold < len(q.choices):
                raise ScalelabError(
                    f"question {q.doc_id}: gold index {q.gold} is not one of its "
                    f"{len(q.choices)} choices"
                )
            got = [next(answers) for _ in q.choices]
            scored.append(
                QuestionScore(
                    q.doc_id, q.gold, tuple(q.choices),
                    tuple(float(a[0]) for a in got), tuple(int(a[2]) for a in got),
                    tuple(bool(a[1]) for a in got),
                )
            )  # fmt: skip
        if done is not None:
            done(scored)
        out.extend(scored)
    return out


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def mc_metrics(scores: Iterable[QuestionScore]) -> dict[str, float]:
    """acc, acc_norm, acc_bytes (each with `_stderr`), task_loss and n_questions.

    Raises ScalelabError for zero questions: a metric over nothing is not a result."""
    scores = list(scores)
    if not scores:
        raise ScalelabError("no questions were scored: accuracy over zero items is undefined")
    out: dict[str, float] = {}
    for name, norm in (("acc", "none"), ("acc_norm", "chars"), ("acc_bytes", "bytes")):
        hits = [float(s.pick(norm) == s.gold) for s in scores]
        out[name], out[f"{name}_stderr"] = _mean_stderr(hits)
    losses = [s.task_loss for s in scores]
    out["task_loss"] = sum(losses) / len(losses)
    out["n_questions"] = len(scores)
    return out
