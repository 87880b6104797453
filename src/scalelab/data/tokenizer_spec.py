"""The `tokenizer:` block of a task: validated without importing tokenizers/transformers."""

from __future__ import annotations

import re
import stat
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from scalelab.config import check_path_text, stat_or_none
from scalelab.errors import shown

MIN_BPE_VOCAB = 260  # 256 bytes + <|endoftext|> + a few merges, or BPE is pointless
# 2^20: four times the largest vocabularies in use (Gemma's 262k); token ids stay far
# inside the int32 that token files store.
MAX_VOCAB = 2**20
# A Hub name (`gpt2`, `org/name`) as opposed to a local path (`./tok`, `/abs/tok`, `~/tok`).
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class TokenizerSpec(BaseModel):
    """Which tokenizer a task uses (the `tokenizer:` block of an experiment file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["byte", "bpe", "gpt2", "pretrained"] = "bpe"
    # Checked even when left out, so a `bpe` spec without a size is an error.
    vocab_size: int | None = Field(default=None, validate_default=True, le=MAX_VOCAB)
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

    def check_available(self) -> None:
        """Refuse a `pretrained` path that no run could load: it must be an existing local
        folder, or a Hub name that is cached or downloadable now. Done by the task kinds
        that use a tokenizer, at spec time (the spec itself says nothing about this
        machine). Raises ValueError `tokenizer.path: ...`, echoing the path."""
        if self.kind != "pretrained" or self.path is None:
            return
        try:
            problem = _location_problem(self.path)
        except ValueError as err:
            problem = str(err)
        if problem:
            raise ValueError(f"tokenizer.path: {problem} (got {shown(self.path)})")


def _location_problem(text: str) -> str | None:
    """Why `text` is neither a local folder nor a Hub name that can load now; None if it is
    one of them. Raises ValueError for text that cannot be a path (NUL, too long)."""
    info = stat_or_none(check_path_text(text))
    if info is not None:
        return None if stat.S_ISDIR(info.st_mode) else "not a folder (a save_pretrained folder)"
    if not _HUB_NAME.match(text):
        return "no such folder"
    from scalelab.data.catalog import hub_unavailable

    if (why := hub_unavailable(text)) is not None:
        return f"no such folder, and as a Hub name it is {why}"
    return None
