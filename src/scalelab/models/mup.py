"""muP (maximal update parametrization) for ladder GPT-2 models trained with AdamW.

Rules: Yang et al. 2022, "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
Hyperparameter Transfer" (arXiv:2203.03466), Table 3 (Adam column) in its Table 8 form
(output multiplier instead of a 1/width readout init), as microsoft/mup implements it
(`MuSharedReadout` for a tied head, `MuAdamW`). With the width multiplier
m = n_embd / base_width:

- hidden matrices (attention c_attn and c_proj, MLP c_fc and c_proj; both dimensions grow
  with width): init std x 1/sqrt(m) (variance 1/fan_in relative to the base, GPT-2's own
  0.02 and 0.02/sqrt(2 n_layer) at the base), Adam lr x 1/m, and AdamW weight decay x m so
  that the decoupled decay lr * wd of a step does not change with width (`MuAdam` scales
  both the same way);
- input embeddings (wte, wpe), biases, LayerNorm gains and biases ("vector-like"): init
  and lr unchanged;
- output: logits x 1/m (`MuSharedReadout`: the tied readout keeps the embedding's init and
  lr, its input is divided by the width multiplier). GPT-2's head has no bias, so scaling
  ln_f's output by 1/m is exactly a logit multiplier; it is a forward hook while training
  and is folded into ln_f's weight and bias (`fold_mup`) before the model is saved, so a
  saved folder is a plain GPT-2 with the same logits;
- attention logits: muP scales q.k by 1/d_head (not 1/sqrt(d_head)) when d_head grows with
  width. We use sqrt(32) / d_head, which is GPT-2's 1/sqrt(d_head) at the ladder's
  head_dim 32 and 1/d_head in how it scales (the usual "equal to SP at the base" constant).
  Every depth rung and every width-only name has head_dim 32, so there it changes nothing
  (widening adds heads, as muP's n_head-grows limit allows); only named sizes with another
  head_dim (gpt-20k: 40, gpt-1m: 36) get a different factor, folded into the query
  projection at save.

Our own implementation, not the `mup` package: that package needs `set_base_shapes` over a
base model built beside the target, replaces the output layer class (a saved folder would
no longer load as plain GPT-2) and its `MuAdamW` builds its own parameter groups, where
the engine has one optimizer (`engine/optim.py`) that takes per-parameter lr and weight
decay multipliers. The rules above are all of it for this architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scalelab.errors import ScalelabError
from scalelab.models.ladder import HEAD_DIM

_MARK = "_scalelab_mup"  # attribute of a model muP was applied to: its `MupScaling`
HIDDEN = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class MupScaling:
    """What `apply_mup` set on one model.

    width_mult: m = n_embd / base_width; output_mult: the logit multiplier 1/m; lr_mults
    and wd_mults: parameter name -> Adam lr multiplier (1/m) and weight-decay multiplier (m)
    of each hidden matrix (for `Plan`; the other parameters are at 1); attn_scale: the q.k
    multiplier sqrt(32) / head_dim."""

    width_mult: float
    output_mult: float
    attn_scale: float
    lr_mults: dict[str, float]
    wd_mults: dict[str, float]
    hook: Any = field(default=None, repr=False)


def width_multiplier(n_embd: int, base_width: int) -> float:
    """m = n_embd / base_width (muP equals standard parametrization at m = 1)."""
    if n_embd < 1 or base_width < 1:
        raise ScalelabError(f"widths must be positive, got n_embd {n_embd}, base {base_width}")
    return n_embd / base_width


def apply_mup(model, base_width: int = 32) -> MupScaling:
    """Turn a freshly built ladder GPT-2 (`build_causal_lm`, standard init) into its muP
    version in place and return the multipliers the optimizer needs.

    model: a `GPT2LMHeadModel` with tied embeddings; base_width: the width at which muP
    equals the standard parametrization. Rescaling the standard init (rather than drawing a
    new one) keeps the random draws of a seed: at m = 1 the model is bit-identical to the
    standard one. Raises ScalelabError for another architecture, an untied head or a model
    muP was already applied to.
    """
    import torch

    if getattr(model, _MARK, None) is not None:
        raise ScalelabError("muP was already applied to this model")
    cfg = model.config
    if cfg.model_type != "gpt2" or not cfg.tie_word_embeddings:
        raise ScalelabError(
            f"muP here is for ladder GPT-2 models with tied embeddings, got {cfg.model_type}"
        )
    m = width_multiplier(cfg.n_embd, base_width)
    hidden = [n for n, _ in model.named_parameters() if n.endswith(HIDDEN)]
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name in hidden:
            named[name].mul_(m**-0.5)
    head_dim = cfg.n_embd // cfg.n_head
    attn_scale = HEAD_DIM**0.5 / head_dim
    for block in model.transformer.h:
        block.attn.scaling = attn_scale
    scaling = MupScaling(m, 1.0 / m, attn_scale, {n: 1.0 / m for n in hidden},
                         {n: m for n in hidden})  # fmt: skip

    def _logit_multiplier(_module, _inputs, output):
        return output * scaling.output_mult

    scaling.hook = model.transformer.ln_f.register_forward_hook(_logit_multiplier)
    setattr(model, _MARK, scaling)
    return scaling


def mup_of(model) -> MupScaling | None:
    """The muP multipliers applied to `model` (None: standard parametrization)."""
    return getattr(model, _MARK, None)


def fold_mup(model) -> None:
    """Fold the muP multipliers into the weights so that `model` is a plain GPT-2 with the
    same logits (up to float rounding): ln_f's weight and bias x output_mult, the query
    projection x attn_scale * sqrt(head_dim) (1 at head_dim 32), GPT-2's default attention
    scale back, the hook removed. Call it once training is over, before `save_pretrained`;
    a no-op for a model without muP."""
    import torch

    scaling = mup_of(model)
    if scaling is None:
        return
    ln_f = model.transformer.ln_f
    d = model.config.n_embd
    with torch.no_grad():
        ln_f.weight.mul_(scaling.output_mult)
        ln_f.bias.mul_(scaling.output_mult)
        for block in model.transformer.h:
            attn = block.attn
            q = attn.scaling * math.sqrt(attn.head_dim)
            if q != 1.0:  # Conv1D weight [in, 3 * d]: columns 0..d-1 are the query
                attn.c_attn.weight[:, :d].mul_(q)
                attn.c_attn.bias[:d].mul_(q)
            attn.scaling = attn.head_dim**-0.5
    scaling.hook.remove()
    delattr(model, _MARK)
