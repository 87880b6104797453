"""The GPT-2 model ladder: one dial (depth) sets width and heads, as in nanochat.

width = 32 * depth and head_dim = 32, so n_head = depth. Non-embedding parameters grow as
~12 * depth * width^2 = 12,288 * depth^3: depth 1 is ~13k, depth 12 is ~21M. A named-size
table gives round numbers (gpt-20k ... gpt-20m) for studies that want them.

Width-only names `gpt-d{depth}w{width}` fix the depth and set the width apart from it
(head_dim 32, so the width is a multiple of 32): the width sweeps of a muP study
(`models/mup.py`), e.g. gpt-d2w32 ... gpt-d2w256.

Vocabulary size and context length are not part of a rung: they come from the task's
tokenizer and sequence length, so the same rung name works on any corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scalelab.errors import ScalelabError

ASPECT = 32  # width per layer of depth
HEAD_DIM = 32
MAX_DEPTH = 24
MAX_WIDTH = 8192  # a width-only name wider than this is a typo on any machine we target
WIDTH_NAMES = "gpt-d{depth}w{width} (width a multiple of 32)"


@dataclass(frozen=True)
class Rung:
    """Shape of one ladder model (no vocabulary, no context length)."""

    n_layer: int
    n_embd: int
    n_head: int

    def __post_init__(self) -> None:
        if min(self.n_layer, self.n_embd, self.n_head) < 1:
            raise ScalelabError(f"model shape must be positive, got {self}")
        if self.n_embd % self.n_head:
            raise ScalelabError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")

    @property
    def non_embedding_params(self) -> int:
        """Exact GPT-2 parameter count without token/position embeddings (weights + biases).

        Per block: qkv (3d^2+3d), attn proj (d^2+d), MLP (8d^2+5d), two LayerNorms (4d);
        plus the final LayerNorm (2d). The LM head is tied to the token embedding.
        """
        d = self.n_embd
        return self.n_layer * (12 * d * d + 13 * d) + 2 * d

    def total_params(self, vocab_size: int, n_positions: int) -> int:
        return self.non_embedding_params + (vocab_size + n_positions) * self.n_embd


def depth_rung(depth: int) -> Rung:
    if not 1 <= depth <= MAX_DEPTH:
        raise ScalelabError(f"ladder depth must be in 1..{MAX_DEPTH}, got {depth}")
    width = ASPECT * depth
    return Rung(n_layer=depth, n_embd=width, n_head=width // HEAD_DIM)


def width_rung(depth: int, width: int) -> Rung:
    """Depth `depth` at width `width`, head_dim 32 (n_head = width / 32). Raises
    ScalelabError for a depth outside 1..MAX_DEPTH or a width that is not a multiple of 32
    in 32..MAX_WIDTH."""
    if not 1 <= depth <= MAX_DEPTH:
        raise ScalelabError(f"ladder depth must be in 1..{MAX_DEPTH}, got {depth}")
    if width % HEAD_DIM or not HEAD_DIM <= width <= MAX_WIDTH:
        raise ScalelabError(
            f"ladder width must be a multiple of {HEAD_DIM} in {HEAD_DIM}..{MAX_WIDTH} "
            f"(head_dim {HEAD_DIM}), got {width}"
        )
    return Rung(n_layer=depth, n_embd=width, n_head=width // HEAD_DIM)


# Round-number sizes (non-embedding params within ~15% of the name).
NAMED_SIZES: dict[str, Rung] = {
    "gpt-20k": Rung(1, 40, 1),
    "gpt-50k": Rung(2, 48, 2),
    "gpt-100k": Rung(2, 64, 2),
    "gpt-300k": Rung(3, 96, 3),
    "gpt-1m": Rung(4, 144, 4),
    "gpt-3m": Rung(6, 192, 6),
    "gpt-5m": Rung(8, 224, 7),
    "gpt-10m": Rung(8, 320, 10),
    "gpt-20m": Rung(10, 384, 12),
}

_DEPTH_NAME = re.compile(r"^gpt-d(\d+)(?:w(\d+))?$")


def ladder_rung(name: str) -> Rung | None:
    """The rung for `gpt-d{depth}`, `gpt-d{depth}w{width}` or a named size, or None if
    `name` is not a ladder name. Raises ScalelabError for a ladder name out of range."""
    if name in NAMED_SIZES:
        return NAMED_SIZES[name]
    m = _DEPTH_NAME.match(name)
    if not m:
        return None
    depth = int(m.group(1))
    return depth_rung(depth) if m.group(2) is None else width_rung(depth, int(m.group(2)))


def ladder_names() -> list[str]:
    return [f"gpt-d{d}" for d in range(1, 13)] + list(NAMED_SIZES)


def gpt2_config(rung: Rung, vocab_size: int, n_positions: int, dropout: float = 0.0):
    """A fresh `transformers.GPT2Config` for a rung.

    `gelu_pytorch_tanh` is one fused op where GPT-2's `gelu_new` is eight small ones (1.15-1.34x
    on this CPU). A fresh config per model matters: `from_config(attn_implementation=...)`
    mutates the config it is given.
    """
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=rung.n_embd,
        n_layer=rung.n_layer,
        n_head=rung.n_head,
        activation_function="gelu_pytorch_tanh",
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        tie_word_embeddings=True,
        bos_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
    )
