"""Build or load causal LMs: ladder rungs from configs, everything else via from_pretrained."""

from __future__ import annotations

import torch

from scalelab.models.ladder import gpt2_config, ladder_rung
from scalelab.models.registry import ModelRef, as_ref, model_path


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(non_embedding, total) parameters, each shared tensor counted once.

    Non-embedding excludes the input embeddings (token and, where present, learned
    position tables); a tied LM head shares the token table and so adds nothing.
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    embedding = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            embedding += module.weight.numel()
    return total - embedding, total


def build_causal_lm(model: str | ModelRef, vocab_size: int, n_positions: int, dropout: float = 0.0):
    """A ladder model initialised from the current torch seed, or a pretrained one."""
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel

    ref = as_ref(model)
    rung = ladder_rung(ref.name) if ref.kind == "ladder" else None
    if rung is not None:
        config = gpt2_config(rung, vocab_size=vocab_size, n_positions=n_positions, dropout=dropout)
        config._attn_implementation = "sdpa"
        return GPT2LMHeadModel(config)
    path, kwargs = model_path(ref)
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **kwargs)


def load_tokenizer_for(model: str | ModelRef):
    """The tokenizer saved with a non-ladder model (local folder or Hub id)."""
    from transformers import AutoTokenizer

    path, kwargs = model_path(as_ref(model))
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
