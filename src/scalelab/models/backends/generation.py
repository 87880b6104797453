"""Text generation for the local backend (imported on the first `generate`, so it may import
torch and transformers at the top).

Greedy requests are batched by prompt length: equal-length prompts need no padding, so a
prompt's text is the same alone or in any batch. Sampled requests run one by one, each with
its own seed in a forked RNG (the caller's torch RNG stream is left as it was). Sampling is
plain softmax(logits / temperature): no top-k or top-p cut, as an OpenAI server means it.
"""

from __future__ import annotations

from collections import defaultdict
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


def _generate(
    backend: Any, prompts: list[list[int]], limits: list[int], r: GenRequest, stops: list
) -> list[list[int]]:
    """New token ids for equal-length prompts, sampled per `r.temperature` / `r.seed`."""
    tok, module = backend.tokenizer, backend.module
    device = next(module.parameters()).device
    x = torch.tensor(prompts, dtype=torch.long, device=device)
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos or 0)
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
            input_ids=x,
            attention_mask=torch.ones_like(x),
            generation_config=config,
            stopping_criteria=criteria,
        )
    return [row[x.shape[1] :].tolist() for row in y]


def _finish(tok: Any, new: list[int], r: GenRequest, prompt_len: int, limit: int) -> Generation:
    """Cut at EOS and at the first stop string; say why generation ended."""
    new = new[:limit]
    finish = "length" if len(new) >= limit else "stop"
    if tok.eos_token_id is not None and tok.eos_token_id in new:
        new, finish = new[: new.index(tok.eos_token_id)], "stop"
    text = tok.decode(new, skip_special_tokens=True)
    cuts = [text.find(s) for s in r.stop if s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    return Generation(text, finish, prompt_len, len(new))


def run_generation(backend: Any, requests: list[GenRequest]) -> list[Generation]:
    """Generate for every request; greedy ones batched by prompt length."""
    out: list[Generation | None] = [None] * len(requests)
    prepared = [_prepare(backend, r) for r in requests]
    greedy: dict[int, list[int]] = defaultdict(list)
    tok = backend.tokenizer
    for i, (r, (ids, limit)) in enumerate(zip(requests, prepared, strict=True)):
        if limit == 0:
            out[i] = Generation("", "length", len(ids), 0)
        elif r.temperature == 0:
            greedy[len(ids)].append(i)
        else:
            new = _generate(backend, [ids], [limit], r, [r.stop])[0]
            out[i] = _finish(tok, new, r, len(ids), limit)
    for group in greedy.values():
        for k in range(0, len(group), backend.batch_size):
            chunk = group[k : k + backend.batch_size]
            limits = [prepared[i][1] for i in chunk]
            news = _generate(
                backend, [prepared[i][0] for i in chunk], limits, requests[chunk[0]],
                [requests[i].stop for i in chunk],
            )  # fmt: skip
            for i, new in zip(chunk, news, strict=True):
                out[i] = _finish(tok, new, requests[i], len(prepared[i][0]), prepared[i][1])
    return [g for g in out if g is not None]
