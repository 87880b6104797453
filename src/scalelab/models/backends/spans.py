"""Scoring continuation spans with a causal LM: only the logits a span needs, and a shared
context run once.

A loglikelihood request needs log p(token) only for its continuation's tokens, yet a plain
forward pass projects every position onto the vocabulary; for a small model with a 50k
vocabulary that projection is most of the work. Two savings, both exact up to float
rounding (the same weights, the same causal attention, the same positions):

* `logits_to_keep`: a batch computes logits only for its last k positions, the fewest that
  cover every row's continuation (rows are right-padded, so their continuations end near
  the batch's width after length sorting).
* Shared context: the choices of one multiple-choice question share their context tokens.
  The context runs once with the key/value cache on, the cache is repeated once per choice,
  and only the choices' own tokens run after it (as lm-eval would score k copies of a
  5-shot context, this does 1/k of that work). Suffixes are right-padded with no attention
  mask: in a causal model no real token attends to padding after it.

Each function returns, per sequence, (logprobs, greedy) of tokens first..n-1: log p(token i
| tokens before it) as Python floats, and whether token i was the argmax.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

Span = tuple[list[float], list[bool]]
# A context shorter than this many tokens is cheaper to score inside an ordinary batch than
# with two forward calls of its own (measured on the tiny ladder models and SmolLM2-135M).
SHARE_MIN_TOKENS = 48


def _span(logits: Any, ids: Any) -> tuple[Any, Any]:
    """log p and greedy flags of `ids` under `logits` (float32 rows, one per id)."""
    logits = logits.float()
    chosen = logits.gather(-1, ids[..., None])[..., 0]
    return chosen - logits.logsumexp(-1), chosen >= logits.max(-1).values


def score_batch(module: Any, seqs: list[list[int]], firsts: list[int], pad: int) -> list[Span]:
    """Spans of right-padded sequences scored in one forward pass, logits kept only from
    the earliest position any row needs (first_i - 1) to the end."""
    import torch

    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        x[r, : len(s)] = torch.tensor(s)
    x = x.to(next(module.parameters()).device)
    start = min(firsts) - 1  # the position whose logits score the earliest span token
    logits = module(input_ids=x, logits_to_keep=width - start).logits
    logprobs, greedy = _span(logits[:, :-1], x[:, start + 1 :])
    out = []
    for r, (s, f) in enumerate(zip(seqs, firsts, strict=True)):
        lo, hi = f - 1 - start, len(s) - 1 - start
        out.append((logprobs[r, lo:hi].tolist(), greedy[r, lo:hi].tolist()))
    return out


def score_shared(module: Any, seqs: list[list[int]], first: int) -> list[Span]:
    """Spans of sequences that share their first `first` tokens (one question's choices):
    the shared tokens run once, then every suffix runs on a copy of their cache."""
    import torch

    device = next(module.parameters()).device
    prefix = torch.tensor([seqs[0][:first]], device=device)
    head = module(input_ids=prefix, use_cache=True, logits_to_keep=1)
    name = _cache_arg(module)
    cache = getattr(head, name)
    cache.batch_repeat_interleave(len(seqs))  # one copy of the context per choice
    width = max(len(s) for s in seqs) - first
    x = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        x[r, : len(s) - first] = torch.tensor(s[first:])
    x = x.to(device)
    # Suffix position t scores token first+t+1; the last position scores nothing.
    tail = module(input_ids=x, **{name: cache}, logits_to_keep=width).logits[:, :-1]
    lp0, g0 = _span(head.logits[:, -1].expand(len(seqs), -1), x[:, 0])
    lps, gs = _span(tail, x[:, 1:])
    out = []
    for r, s in enumerate(seqs):
        n = len(s) - first - 1  # suffix tokens after the first one
        out.append(([lp0[r].item(), *lps[r, :n].tolist()], [bool(g0[r]), *gs[r, :n].tolist()]))
    return out


def _cache_arg(module: Any) -> str:
    """The key/value cache's name in forward() and its output: `cache` from transformers 5.x
    on (`past_key_values` before, now a deprecation warning)."""
    import inspect

    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def plan_groups(seqs: Sequence[list[int]], firsts: Sequence[int]) -> tuple[list, list[int]]:
    """([(first, [indices])] of requests worth scoring with a shared context, the indices
    scored in ordinary batches). Requests share a context when their tokens before the
    span are identical and at least SHARE_MIN_TOKENS long."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (s, f) in enumerate(zip(seqs, firsts, strict=True)):
        groups.setdefault(tuple(s[:f]), []).append(i)
    shared, rest = [], []
    for key, members in groups.items():
        if len(members) > 1 and len(key) >= SHARE_MIN_TOKENS:
            shared.append((len(key), members))
        else:
            rest.extend(members)
    return shared, sorted(rest)


def batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> Iterator[list[int]]:
    """Indices, longest first, in batches within batch_size and batch_tokens (padded)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        width = lengths[batch[0]] if batch else lengths[i]
        full = len(batch) >= batch_size or (len(batch) + 1) * width > batch_tokens
        if batch and full:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
