"""The `tokenizer:` block of a task: validated without importing tokenizers/transformers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MIN_BPE_VOCAB = 260  # 256 bytes + <|endoftext|> + a few merges, or BPE is pointless


class TokenizerSpec(BaseModel):
    """Which tokenizer a task uses (the `tokenizer:` block of an experiment file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["byte", "bpe", "gpt2", "pretrained"] = "bpe"
    # Checked even when left out, so a `bpe` spec without a size is an error.
    vocab_size: int | None = Field(default=None, validate_default=True)
    path: str | None = Field(default=None, validate_default=True)

    @field_validator("vocab_size")
    @classmethod
    def _check_vocab_size(cls, v: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind == "bpe" and (v is None or v < MIN_BPE_VOCAB):
            raise ValueError(f"tokenizer.vocab_size must be >= {MIN_BPE_VOCAB} for kind 'bpe'")
        if kind != "bpe" and v is not None:
            raise ValueError(f"tokenizer.vocab_size is only allowed for kind 'bpe', not {kind!r}")
        return v

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "pretrained" and not v:
            raise ValueError("tokenizer.path is required for kind 'pretrained'")
        if kind != "pretrained" and v is not None:
            raise ValueError(f"tokenizer.path is only allowed for kind 'pretrained', not {kind!r}")
        return v
