"""The coordinate check of muP: how big each layer's activations get after a few Adam
steps, as the width grows.

Yang et al. 2022 ("Tensor Programs V", Section 7 / Figure 5; microsoft/mup's
`get_coord_data`): train models that differ only in width for a few steps and record the
mean absolute value of every activation coordinate. Under a correct muP they stay flat
with width; under the standard parametrization with Adam they grow with it (each update
moves a hidden pre-activation by ~ lr * fan_in), the sign of an lr that cannot transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd


def coord_check(
    widths: Sequence[int],
    parametrization: Literal["standard", "mup"],
    *,
    depth: int = 2,
    steps: int = 5,
    lr: float = 1e-2,
    base_width: int = 32,
    vocab_size: int = 256,
    seq_len: int = 32,
    batch_size: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean |activation| of each layer of `gpt-d{depth}w{width}` models during `steps`
    AdamW steps (no weight decay, constant lr) on one fixed batch of random tokens.

    widths: multiples of 32; lr: the peak lr every width uses (muP's per-layer multipliers
    on top of it); base_width: muP's base. Returns one row per (width, step, layer) with
    columns width, step (0 = at init, t = after t updates), layer ("embeddings": token +
    position embeddings; "block{i}": block i's output; "logits") and mean_abs (the mean of
    |x| over every coordinate of the batch) and delta_abs (the mean of |x_t - x_0|: what
    training moved, the part muP keeps width-independent; under muP the logits at init
    shrink as 1/sqrt(m), which is allowed, Table 8's output is o(1) at init). Raises
    ScalelabError for a bad width.
    """
    import torch

    from scalelab.models.build import build_causal_lm
    from scalelab.models.mup import apply_mup

    rows = []
    for width in widths:
        torch.manual_seed(seed)
        model = build_causal_lm(f"gpt-d{depth}w{width}", vocab_size, seq_len)
        mup = apply_mup(model, base_width) if parametrization == "mup" else None
        x = torch.randint(0, vocab_size, (batch_size, seq_len + 1),
                          generator=torch.Generator().manual_seed(seed))  # fmt: skip
        for step, sizes in enumerate(_train_and_record(model, x, steps, lr, mup)):
            rows += [{"width": width, "step": step, "layer": k, "mean_abs": a, "delta_abs": d}
                     for k, (a, d) in sizes.items()]  # fmt: skip
    return pd.DataFrame(rows)


def _train_and_record(model, tokens, steps: int, lr: float, mup) -> list[dict[str, tuple]]:
    """Layer -> (mean |x_t|, mean |x_t - x_0|) at each of steps + 1 forward passes (the
    last one after the final update), training on `tokens` [batch, seq + 1] in between."""
    import torch
    import torch.nn.functional as F

    from scalelab.engine.optim import decay_groups

    seen: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(_module, _inputs, output):
            seen[name] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    handles = [model.transformer.drop.register_forward_hook(record("embeddings"))]
    handles += [block.register_forward_hook(record(f"block{i}"))
                for i, block in enumerate(model.transformer.h)]  # fmt: skip
    groups = decay_groups(model, 0.0, mup and mup.lr_mults, mup and mup.wd_mults)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    x, y = tokens[:, :-1], tokens[:, 1:]
    out, first = [], {}
    model.train()
    for step in range(steps + 1):
        logits = model(input_ids=x, use_cache=False).logits
        seen["logits"] = logits.detach().clone()
        first = first or dict(seen)
        out.append({k: (v.abs().mean().item(), (v - first[k]).abs().mean().item())
                    for k, v in seen.items()})  # fmt: skip
        if step == steps:
            break
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for h in handles:
        h.remove()
    return out
