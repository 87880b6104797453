"""Language-model evaluation: sliding-window perplexity and bits per byte.

The method of the transformers perplexity guide: a window of `window` tokens advances by
`stride`; each window scores only the targets the previous one did not, so every token is
scored exactly once with at least `window - stride` tokens of context (the first window
scores all of its targets).

A score over zero targets (an empty split, or one token) is NaN, never a loss of 0 and a
perplexity of 1: a mean over nothing is undefined, and a NaN metric marks the run failed.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class LMScore:
    """Summed negative log-likelihood of the targets a sliding window scored."""

    nll_sum: float  # total negative log-likelihood, nats
    n_tokens: int  # targets scored

    @property
    def loss(self) -> float:
        """Mean NLL per scored target in nats; NaN when no target was scored."""
        return self.nll_sum / self.n_tokens if self.n_tokens > 0 else math.nan

    @property
    def ppl(self) -> float:
        """exp(loss), capped at exp(50) so a diverged model prints a number; NaN with loss."""
        loss = self.loss
        return math.nan if math.isnan(loss) else math.exp(min(loss, 50.0))

    def bits_per_byte(self, n_bytes: int) -> float:
        """Total bits over the text's UTF-8 bytes: comparable across tokenizers.

        NaN when no target was scored or the text has no bytes (bits over nothing).
        """
        if self.n_tokens <= 0 or n_bytes <= 0:
            return math.nan
        return self.nll_sum / math.log(2) / n_bytes


def windows(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, n_scored) for each window over a sequence of n tokens.

    Each window ends `stride` targets after the previous one and reaches back `window`
    tokens; it scores its last n_scored targets. A target needs the token before it in the
    same window, so a stride of `window` behaves as `window - 1` (non-overlapping scoring).
    Fewer than two tokens give no window. Raises ScalelabError for a window under 2 tokens:
    it holds no (context, target) pair, so it would score nothing.
    """
    if window < 2:
        raise ScalelabError(f"eval window must be at least 2 tokens (got {window})")
    stride = max(1, min(stride, window - 1))
    out, prev_end = [], 1  # target 0 has no context and is never scored
    end = min(window, n)
    while prev_end < n:
        out.append((max(0, end - window), end, end - prev_end))
        prev_end, end = end, min(end + stride, n)
    return out


@torch.no_grad()
def sliding_window_score(
    model: torch.nn.Module,
    ids: torch.Tensor,
    window: int,
    stride: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> LMScore:
    """Score a 1-D token sequence `ids` (shape [n]: an int tensor, or a numpy array or
    token-file memmap, read window by window) with a causal LM.

    The model is called as `model(input_ids=...)` and must return `.logits` of shape
    [batch, length, vocab]. Batch 8 is the CPU sweet spot: larger batches pay more for the
    logits tensor than they save. A sequence of fewer than two tokens scores nothing: the
    result has n_tokens 0 and a NaN loss. Raises ScalelabError for a window under 2 tokens.
    """
    from scalelab.data.lm_tokens import token_window

    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    stride = stride or max(window // 2, 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    spans = windows(len(ids), window, stride)
    nll, count = 0.0, 0
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    # Full-length windows batch together; a shorter final window runs on its own.
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for span in spans:
        groups.setdefault(span[1] - span[0], []).append(span)
    for length, group in groups.items():
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            x = torch.stack([token_window(ids, b, e) for b, e, _ in chunk]).to(device)
            with ctx:
                logits = model(input_ids=x, use_cache=False).logits
            losses = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                x[:, 1:].reshape(-1),
                reduction="none",
            ).view(len(chunk), length - 1)
            for row, (_, _, n_scored) in enumerate(chunk):
                nll += losses[row, length - 1 - n_scored :].sum().item()
                count += n_scored
    model.train(was_training)
    return LMScore(nll_sum=nll, n_tokens=count)
