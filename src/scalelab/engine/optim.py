"""AdamW parameter groups shared by every training method."""

from __future__ import annotations

import torch


def decay_groups(
    model: torch.nn.Module,
    weight_decay: float,
    lr_mults: dict[str, float] | None = None,
    wd_mults: dict[str, float] | None = None,
) -> list[dict]:
    """Trainable parameters grouped by (lr multiplier, weight-decay multiplier, decayed).

    Only matrices are decayed: biases and LayerNorm gains (1-d) are not regularised
    (nanoGPT). Each group carries `lr_mult` (from `lr_mults` by parameter name, default 1);
    a loop sets each group's lr to lr_mult * its schedule. A decayed group's weight decay
    is `weight_decay` times its `wd_mults` entry (default 1; muP's AdamW keeps lr * wd of a
    hidden matrix width-independent this way, `models/mup.py`).
    """
    groups: dict[tuple[float, float, bool], list] = {}
    for name, q in model.named_parameters():
        if q.requires_grad:
            key = ((lr_mults or {}).get(name, 1.0), (wd_mults or {}).get(name, 1.0), q.dim() >= 2)
            groups.setdefault(key, []).append(q)
    return [
        {"params": qs, "lr_mult": m, "weight_decay": weight_decay * w if decay else 0.0}
        for (m, w, decay), qs in sorted(groups.items())
    ]


def make_optimizer(
    model: torch.nn.Module,
    args,
    lr_mults: dict[str, float] | None = None,
    wd_mults: dict[str, float] | None = None,
) -> torch.optim.Optimizer:
    """AdamW (fused kernel; multi-tensor where a build lacks it) over the trainable
    parameters, matrices decayed by `args.weight_decay` (times `wd_mults`), betas from
    `args`."""
    groups = decay_groups(model, args.weight_decay, lr_mults, wd_mults)
    kwargs = {"lr": args.lr, "betas": (args.beta1, args.beta2)}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)
