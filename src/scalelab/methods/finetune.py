"""Fine-tuning pretrained models for classification: `full` and `lora` (loop: finetune_loop.py).

Both train `AutoModelForSequenceClassification` (an encoder's classifier head, or a
decoder's `score` head on the last non-pad token) with AdamW, linear warmup then linear
decay, and keep the weights with the best validation accuracy for the test evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from scalelab.config import Strict
from scalelab.errors import ScalelabError
from scalelab.methods.base import MethodDef, register_method


class FullParams(Strict):
    """Full fine-tuning: every weight trains.

    lr: peak learning rate; weight_decay: AdamW decay on matrices only (biases, LayerNorm
    weights excluded); epochs: passes over the training set; warmup_frac: fraction of the
    steps of a phase spent warming up linearly, then linear decay to 0; grad_clip: max
    gradient L2 norm (0 = off); head_only_epochs: the first N of `epochs` train only the
    newly initialised head (a separate warmup/decay schedule), the rest train everything;
    layerwise_lr: blocks in the lower/middle/top third of the transformer at 0.1x/0.5x/1x lr
    (embeddings with the lower third, the head and final norms at 1x);
    early_stopping_patience: validation evaluations without improvement before stopping
    (0 = off); eval_every: steps between validation evaluations (0 = once per epoch);
    dtype: autocast dtype for forward passes (weights stay fp32).
    """

    lr: PositiveFloat = 5e-5
    weight_decay: float = Field(0.01, ge=0)
    epochs: PositiveInt = 3
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 64
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    head_only_epochs: int = Field(0, ge=0)
    layerwise_lr: bool = False
    early_stopping_patience: int = Field(0, ge=0)
    eval_every: int = Field(0, ge=0)
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"


class LoraParams(FullParams):
    """LoRA (peft): frozen base, rank-r adapters on `target_modules`, trained new head.

    target_modules: None = peft's default for the model type (attention query/value, e.g.
    `query`/`value` for BERT, `c_attn` for GPT-2), a list of module-name suffixes, or
    "all-linear". Every module missing from the pretrained checkpoint (the new head) is
    trained in full and saved with the adapter (`modules_to_save`).
    """

    lr: PositiveFloat = 1e-3
    r: PositiveInt = 8
    lora_alpha: PositiveFloat = 16
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] | None = None

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and (not v or not all(v)):
            raise ValueError("target_modules must name at least one module (or 'all-linear')")
        return v


def _check(task, params: FullParams) -> None:
    if params.head_only_epochs >= params.epochs:
        raise ScalelabError(
            f"params.head_only_epochs ({params.head_only_epochs}) must be smaller than "
            f"params.epochs ({params.epochs}): it counts the first epochs of the run"
        )


register_method(
    MethodDef(
        name="full",
        params=FullParams,
        entry="scalelab.methods.finetune_loop:run",
        task_kinds=("classification",),
        description="full fine-tuning of a pretrained model for text classification",
        check=_check,
    )
)

register_method(
    MethodDef(
        name="lora",
        params=LoraParams,
        entry="scalelab.methods.finetune_loop:run",
        task_kinds=("classification",),
        description="LoRA adapters (peft) plus a trained head, for text classification",
        check=_check,
    )
)
