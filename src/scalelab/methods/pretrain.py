"""Pretraining from scratch: parameters and registration (the loop is in pretrain_loop.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from scalelab.config import Strict
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, register_method


class PretrainParams(Strict):
    """AdamW, linear warmup then cosine decay to min_lr_ratio * lr, gradient clipping.

    tokens: training budget in tokens (steps = tokens // (batch_size * seq_len)).
    eval_every: steps between validation passes (0 = about 10 per run);
    eval_tokens: validation tokens per periodic pass (the final metrics use the whole split).
    """

    tokens: PositiveInt
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 3e-3
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    dtype: Literal["fp32", "bf16"] = "fp32"
    eval_every: int = Field(0, ge=0)
    eval_tokens: PositiveInt = 32768


def _check(task, params: PretrainParams) -> None:
    batch_tokens = params.batch_size * task.seq_len
    if params.tokens < batch_tokens:
        raise ScalelabError(
            f"params.tokens ({params.tokens}) is smaller than one batch "
            f"(batch_size {params.batch_size} x seq_len {task.seq_len} = {batch_tokens})"
        )


register_method(
    MethodDef(
        name="pretrain",
        params=PretrainParams,
        entry="scalelab.methods.pretrain_loop:run",
        task_kinds=("lm",),
        description="train a ladder model from scratch on a token budget",
        check=_check,
    )
)
