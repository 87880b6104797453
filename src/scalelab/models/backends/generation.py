"""Text generation for the local backend (imported on the first `generate`, so it may import
torch and transformers at the top).

Greedy requests of any prompt lengths share batches: sorted by length (so a batch wastes
little padding), left-padded, with an attention mask that hides the padding. `generate`
derives each row's position ids from that mask (cumsum - 1) for every model whose forward
takes `position_ids` (GPT-2, so every ladder and run product, Llama, SmolLM2, ...), so a
left-padded row sees the same positions as the prompt alone. On fp32 CPU the last-position
logits of a padded row differ from the unpadded call by ~1e-7 (masked SDPA sums over zeros),
so greedy text is the same alone or in any batch unless two tokens tie to that precision
(tests/models/test_generation_batching.py checks GPT-2 and Llama). A module whose forward
takes no `position_ids` would see shifted positions: its greedy requests are batched only
with prompts of equal length (no padding), as before. Sampled requests run one by one, each
with its own seed in a forked RNG (the caller's torch RNG stream is left as it was).
Sampling is plain softmax(logits / temperature): no top-k or top-p cut, as an OpenAI server
means it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from scalelab.errors import ScalelabError
from scalelab.models.backends.base import Generation, GenRequest


class _RowLimits(StoppingCriteria):
    """Ends each row at its own token limit or once one of its stop strings appears, so a
    batch stops as soon as every row is done."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list, limits: list[int]):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len
        self.stops, self.limits = stops, limits
        longest = max((len(s) for row in stops for s in row), default=0)
        self.window = 4 * longest + 4  # tokens enough to spell any stop string (>= 1/4 char)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        made = input_ids.shape[1] - self.prompt_len
        done = []
        for r in range(input_ids.shape[0]):
            if made >= self.limits[r]:
                done.append(True)
            elif self.stops[r]:
                tail = self.tokenizer.decode(input_ids[r, self.prompt_len :][-self.window :])
                done.append(any(s in tail for s in self.stops[r]))
            else:
                done.append(False)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _prepare(backend: Any, r: GenRequest) -> tuple[list[int], int]:
    """(prompt ids, new-token budget): the prompt left-truncated so both fit the window."""
    if not isinstance(r, GenRequest):
        raise ScalelabError(f"generate takes GenRequest objects, not {type(r).__name__}")
    tok, window = backend.tokenizer, backend.max_length
    ids = tok(r.prompt)["input_ids"] if r.prompt else []
    if not ids:  # nothing to condition on: start from BOS (or EOS), as scoring does
        first = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if first is None:
            raise ScalelabError("empty generation prompt, and the tokenizer has no BOS/EOS")
        ids = [first]
    max_new = min(r.max_tokens, window - 1)
    return ids[-(window - max_new) :], max_new


def _pads_safely(module: Any) -> bool:
    """Whether `generate` gives this module position ids from the attention mask (it does
    for any forward that takes `position_ids`), so left padding leaves positions as alone.
    A PEFT (LoRA) wrapper's forward takes **kwargs, but its `generate` runs the wrapped
    model's, so the wrapped model's forward decides."""
    base = getattr(module, "get_base_model", None)
    if callable(base):
        module = base()
    try:
        return "position_ids" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):  # a forward without a readable signature: assume not
        return False


def _left_pad(prompts: list[list[int]], pad: int, device: Any) -> tuple[torch.Tensor, ...]:
    """(ids, attention mask), both (rows, longest prompt): each prompt right-aligned after
    `pad` tokens that the mask (0) hides, so every row's next token is at the same column."""
    width = max(len(p) for p in prompts)
    x = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(x)
    for r, p in enumerate(prompts):
        x[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p) :] = 1
    return x.to(device), mask.to(device)


def _generate(
    backend: Any, prompts: list[list[int]], limits: list[int], r: GenRequest, stops: list
) -> list[list[int]]:
    """New token ids per prompt (any lengths: left-padded), sampled per `r.temperature` /
    `r.seed`. A row that ended before the others is followed by pad tokens."""
    tok, module = backend.tokenizer, backend.module
    device = next(module.parameters()).device
    eos = tok.eos_token_id
    pad = _pad_id(tok)
    x, mask = _left_pad(prompts, pad, device)
    if r.temperature > 0:
        mode = {"do_sample": True, "temperature": r.temperature, "top_k": 0, "top_p": 1.0}
    else:
        mode = {"do_sample": False}
    config = GenerationConfig(
        max_new_tokens=max(limits), pad_token_id=pad, eos_token_id=eos, **mode
    )
    criteria = StoppingCriteriaList([_RowLimits(tok, x.shape[1], stops, limits)])
    with backend._inference(), _seeded(r.seed, device):
        y = module.generate(
            input_ids=x, attention_mask=mask, generation_config=config, stopping_criteria=criteria
        )
    return [row[x.shape[1] :].tolist() for row in y]


def _pad_id(tok: Any) -> int:
    eos = tok.eos_token_id
    return tok.pad_token_id if tok.pad_token_id is not None else (eos or 0)


def _finish(tok: Any, new: list[int], r: GenRequest, prompt_len: int, limit: int) -> Generation:
    """Cut at EOS and at the first stop string; say why generation ended. Pad tokens after
    a row that stopped early in a batch are dropped, so its token count is as alone."""
    new = new[:limit]
    pad = _pad_id(tok)
    while new and new[-1] == pad and pad != tok.eos_token_id and r.stop:
        new = new[:-1]  # only a stop string ends a row early without EOS (then pads follow)
    finish = "length" if len(new) >= limit else "stop"
    if tok.eos_token_id is not None and tok.eos_token_id in new:
        new, finish = new[: new.index(tok.eos_token_id)], "stop"
    text = tok.decode(new, skip_special_tokens=True)
    cuts = [text.find(s) for s in r.stop if s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    return Generation(text, finish, prompt_len, len(new))


def _greedy_batches(backend: Any, prepared: list, todo: list[int]) -> list[list[int]]:
    """Batches of request indices (at most batch_size each), longest prompt first so a
    batch wastes little padding; only equal lengths share one when padding is unsafe."""
    order = sorted(todo, key=lambda i: (-len(prepared[i][0]), i))
    size = backend.batch_size
    if _pads_safely(backend.module):
        return [order[k : k + size] for k in range(0, len(order), size)]
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(len(prepared[i][0]), []).append(i)
    return [g[k : k + size] for g in groups.values() for k in range(0, len(g), size)]


def run_generation(backend: Any, requests: list[GenRequest]) -> list[Generation]:
    """Generate for every request: greedy ones batched (left-padded), sampled ones alone."""
    out: list[Generation | None] = [None] * len(requests)
    prepared = [_prepare(backend, r) for r in requests]
    greedy: list[int] = []
    tok = backend.tokenizer
    for i, (r, (ids, limit)) in enumerate(zip(requests, prepared, strict=True)):
        if limit == 0:
            out[i] = Generation("", "length", len(ids), 0)
        elif r.temperature == 0:
            greedy.append(i)
        else:
            new = _generate(backend, [ids], [limit], r, [r.stop])[0]
            out[i] = _finish(tok, new, r, len(ids), limit)
    for chunk in _greedy_batches(backend, prepared, greedy):
        limits = [prepared[i][1] for i in chunk]
        news = _generate(
            backend, [prepared[i][0] for i in chunk], limits, requests[chunk[0]],
            [requests[i].stop for i in chunk],
        )  # fmt: skip
        for i, new in zip(chunk, news, strict=True):
            out[i] = _finish(tok, new, requests[i], len(prepared[i][0]), prepared[i][1])
    return [g for g in out if g is not None]
