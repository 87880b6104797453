"""Learning-rate schedules: the lr of optimizer step `step` (0-based) of a phase of `total`
steps, from a peak `base` lr. Pure functions, so a resumed run recomputes them exactly."""

from __future__ import annotations

import math


def cosine(step: int, total: int, base: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warmup over max(1, warmup_frac * total) steps, then cosine decay to
    min_ratio * base at `total` (GPT-3 / Chinchilla style)."""
    warmup = max(1, int(warmup_frac * total))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def linear(step: int, total: int, base: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warmup over warmup_frac * total steps, then linear decay to 0 at `total`
    (BERT / transformers' get_linear_schedule_with_warmup); min_ratio is unused."""
    warmup = int(warmup_frac * total)
    if step < warmup:
        return base * ((step + 1) / warmup)
    return base * max(0.0, (total - step) / max(1, total - warmup))


def constant(step: int, total: int, base: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warmup, then the peak lr until the end."""
    warmup = int(warmup_frac * total)
    return base * ((step + 1) / warmup) if step < warmup else base


SCHEDULES = {"cosine": cosine, "linear": linear, "constant": constant}
