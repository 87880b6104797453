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


def wsd(
    step: int,
    total: int,
    base: float,
    warmup_frac: float,
    min_ratio: float,
    cooldown_frac: float = 0.2,
    shape: str = "1-sqrt",
) -> float:
    """Warmup-stable-decay (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
    Beyond Fixed Training Durations", Sec. 3): linear warmup over warmup_frac * total
    steps, the peak lr until the cooldown, then over the last max(1, cooldown_frac * total)
    steps a decay to 0 at `total`, shaped `linear` (1 - x) or `1-sqrt` (1 - sqrt(x)), x the
    fraction of the cooldown done; they find a 1-sqrt cooldown of ~20% matches cosine.
    min_ratio is unused (the decay ends at 0, as theirs)."""
    warmup = int(warmup_frac * total)
    if step < warmup:
        return base * (step + 1) / warmup
    start = cooldown_start(total, cooldown_frac)
    if step < start:
        return base
    x = (step - start + 1) / (total - start)  # 1 at the last step: its lr is 0
    return base * (1.0 - (math.sqrt(x) if shape == "1-sqrt" else x))


def cooldown_start(total: int, cooldown_frac: float) -> int:
    """The first cooldown step of a `total`-step `wsd` phase: total - max(1,
    round(cooldown_frac * total)). Before it the lr is the same whatever `total` is, so a
    run of any length can branch off a longer one's training state saved at this step."""
    return total - max(1, int(round(cooldown_frac * total)))


SCHEDULES = {"cosine": cosine, "linear": linear, "constant": constant, "wsd": wsd}


def lr_at(args, step: int, total: int, base: float) -> float:
    """The lr of step `step` of a `total`-step phase under `args` (a `TrainArgs`): its
    schedule, warmup and, for `wsd`, its cooldown fraction and shape."""
    if args.schedule == "wsd":
        return wsd(step, total, base, args.warmup_frac, args.min_lr_ratio,
                   args.cooldown_frac, args.cooldown_shape)  # fmt: skip
    return SCHEDULES[args.schedule](step, total, base, args.warmup_frac, args.min_lr_ratio)
