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

* Packed questions (`score_packed`, preferred): one row per question holds its context
  once and then every choice's tokens (all but the last, which predicts nothing), with
  position ids that restart at the context's end for each choice and a 4D attention mask
  in which a choice's tokens see the context and their own earlier tokens, never another
  choice's. Many questions go in one right-padded batch: the context runs once, there is
  no cache to copy and no extra call per question, and logits are computed only at the
  positions that score a token (`logits_to_keep` as a boolean mask). Same weights, same
  attended tokens at the same positions, so the same numbers up to float rounding; the
  local backend checks that on a model's first packed batch against ordinary rows and
  falls back to `score_shared` for a model that does not honour a custom mask.

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
# Packed rows cost no extra call, so any context shared by two or more choices is packed.
PACK_MIN_TOKENS = 1


def _span(logits: Any, ids: Any) -> tuple[Any, Any]:
    """log p and greedy flags of `ids` under `logits` (float32 rows, one per id)."""
    logits = logits.float()
    chosen = logits.gather(-1, ids[..., None])[..., 0]
    return chosen - logits.logsumexp(-1), chosen >= logits.max(-1).values


def score_batch(module: Any, seqs: list[list[int]], firsts: list[int], pad: int) -> list[Span]:
    """Spans of right-padded sequences scored in one forward pass, logits kept only from
    the earliest position any row needs (first_i - 1) on. A row's last token is a target,
    never an input (as in lm-eval), so a row may hold one token more than the window."""
    import torch

    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        x[r, : len(s)] = torch.tensor(s)
    x = x.to(next(module.parameters()).device)
    start = min(firsts) - 1  # the position whose logits score the earliest span token
    logits = module(input_ids=x[:, :-1], logits_to_keep=width - 1 - start).logits
    logprobs, greedy = _span(logits, x[:, start + 1 :])
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
    lp0, g0 = _span(head.logits[:, -1].expand(len(seqs), -1), x[:, 0])
    if width > 1:  # suffix position t scores token first+t+1; the last is never an input
        tail = module(input_ids=x[:, :-1], **{name: cache}, logits_to_keep=width - 1).logits
        lps, gs = _span(tail, x[:, 1:])
    out = []
    for r, s in enumerate(seqs):
        n = len(s) - first - 1  # suffix tokens after the first one
        rest_lp, rest_g = (lps[r, :n].tolist(), gs[r, :n].tolist()) if n else ([], [])
        out.append(([lp0[r].item(), *rest_lp], [bool(g0[r]), *rest_g]))
    return out


def packed_length(first: int, lengths: Sequence[int]) -> int:
    """Tokens in the packed row of a context of `first` tokens and sequences of `lengths`."""
    return first + sum(n - first - 1 for n in lengths)


def score_packed(module: Any, items: list[tuple[list[int], list[list[int]]]], pad: int):
    """Per item (context ids, [each choice's ids after the context]), the spans of its
    choices (the choice's tokens: log p and greedy), all items in one forward pass."""
    import torch

    param = next(module.parameters())
    rows, segs, poss = [], [], []
    targets: list[tuple[int, int, int]] = []  # (row, position whose logits score it, token)
    for r, (ctx, sufs) in enumerate(items):
        n = len(ctx)
        row, seg, pos = list(ctx), [0] * n, list(range(n))
        for c, suf in enumerate(sufs):
            targets.append((r, n - 1, suf[0]))
            start = len(row)
            row += suf[:-1]
            seg += [c + 1] * (len(suf) - 1)
            pos += range(n, n + len(suf) - 1)
            targets += [(r, start + j - 1, suf[j]) for j in range(1, len(suf))]
        rows.append(row), segs.append(seg), poss.append(pos)
    width = max(len(row) for row in rows)
    x = torch.full((len(rows), width), pad, dtype=torch.long)
    seg_t = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: padding
    pos_t = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row, seg, pos) in enumerate(zip(rows, segs, poss, strict=True)):
        x[r, : len(row)], seg_t[r, : len(row)] = torch.tensor(row), torch.tensor(seg)
        pos_t[r, : len(row)] = torch.tensor(pos)
    # query q sees key k <= q of the context (segment 0) or of its own segment
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    sees = causal & ((seg_t[:, None, :] == seg_t[:, :, None]) | (seg_t[:, None, :] == 0))
    mask = torch.zeros(sees.shape, dtype=param.dtype)
    mask.masked_fill_(~sees, torch.finfo(param.dtype).min)  # additive: eager and sdpa alike
    keep = torch.zeros((len(rows), width), dtype=torch.bool)
    t_row = torch.tensor([t[0] for t in targets])
    t_pos = torch.tensor([t[1] for t in targets])
    keep[t_row, t_pos] = True
    flat = keep.flatten().cumsum(0) - 1  # row-major rank of each kept position
    logits = module(
        input_ids=x.to(param.device),
        attention_mask=mask[:, None].to(param.device),
        position_ids=pos_t.to(param.device),
        logits_to_keep=keep.to(param.device),
    ).logits.float()  # (kept positions, vocab)
    which = flat[t_row * width + t_pos].to(param.device)
    tok = torch.tensor([t[2] for t in targets], device=param.device)
    chosen = logits[which, tok]
    logprobs = (chosen - logits.logsumexp(-1)[which]).tolist()
    greedy = (chosen >= logits.max(-1).values[which]).tolist()
    out, k = [], 0
    for _, sufs in items:
        spans_ = []
        for suf in sufs:
            spans_.append((logprobs[k : k + len(suf)], greedy[k : k + len(suf)]))
            k += len(suf)
        out.append(spans_)
    return out


def _cache_arg(module: Any) -> str:
    """The key/value cache's name in forward() and its output: `cache` from transformers 5.x
    on (`past_key_values` before, now a deprecation warning)."""
    import inspect

    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def plan_groups(
    seqs: Sequence[list[int]], firsts: Sequence[int], min_tokens: int
) -> tuple[list, list[int]]:
    """([(first, [indices])] of requests worth scoring with a shared context, the indices
    scored in ordinary batches). Requests share a context when their tokens before the
    span are identical and at least `min_tokens` long."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (s, f) in enumerate(zip(seqs, firsts, strict=True)):
        groups.setdefault(tuple(s[:f]), []).append(i)
    shared, rest = [], []
    for key, members in groups.items():
        if len(members) > 1 and len(key) >= min_tokens:
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
