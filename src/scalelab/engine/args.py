"""Hyper-parameters every training method shares, declared once (litgpt's `TrainArgs`).

A method's params model subclasses `TrainArgs`, overrides the defaults that suit it and
adds its own fields. `identity(params)` is what a run id hashes: fields a class lists in
`ID_OMIT_DEFAULTS` are left out while they hold their default, so adding a setting to a
method later (gradient accumulation, say) does not change the ids of runs already stored;
fields in `ID_OMIT` are always left out: they decide how a run computes, never its result
(e.g. whether teacher outputs are cached), so changing them reruns nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from scalelab.config import Strict


class TrainArgs(Strict):
    """lr: peak learning rate; weight_decay: AdamW decay on matrices only (biases, norms
    and embeddings' 1-D params excluded); warmup_frac: fraction of a phase's optimizer steps
    spent warming up linearly; schedule: the decay after warmup (cosine to min_lr_ratio * lr,
    linear to 0, constant, or `wsd`: constant, then a cooldown over the last cooldown_frac
    of the steps shaped `cooldown_shape`, 1-sqrt or linear, to 0; engine/schedules.py);
    grad_clip: max global gradient L2 norm (0 = off); beta1, beta2: AdamW;
    dtype: autocast dtype of forward passes (weights and optimizer state stay fp32; fp16
    uses a gradient scaler); grad_accum_steps: micro-batches per optimizer step (the batch
    is split into this many equal parts; the update equals one full-batch step).

    Every float of a params model (these and a method's own) must be finite: `.nan` or
    `.inf` in a spec is an error naming the field, since no run could mean it."""

    ID_OMIT_DEFAULTS: ClassVar[frozenset[str]] = frozenset(
        {"grad_accum_steps", "schedule", "cooldown_frac", "cooldown_shape"}
    )
    ID_OMIT: ClassVar[frozenset[str]] = frozenset()

    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    warmup_frac: float = Field(0.0, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "linear"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    cooldown_frac: float = Field(0.2, gt=0, le=1)
    cooldown_shape: Literal["1-sqrt", "linear"] = "1-sqrt"
    grad_clip: float = Field(1.0, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_accum_steps: PositiveInt = 1


def identity(params: Any) -> dict[str, Any]:
    """The JSON dict of `params` that a run id hashes (see the module docstring)."""
    data = params.model_dump(mode="json")
    omit = getattr(type(params), "ID_OMIT_DEFAULTS", frozenset())
    for name in omit:
        field = type(params).model_fields.get(name)
        if field is not None and name in data and getattr(params, name) == field.default:
            del data[name]
    for name in getattr(type(params), "ID_OMIT", frozenset()):
        data.pop(name, None)
    return data
