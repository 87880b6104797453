"""Attention maps of a trained model for one short text: what each head attends to.

Works for any local model scalelab can load (a run's product, a registered offline model,
a local folder, a cached Hub id): decoders (GPT-2 ladder runs, SmolLM2) and encoders
(MiniLM, MPNet, BERT classifiers). The model is loaded with eager attention, the only
implementation that returns the weights (SDPA computes them without keeping them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class AttentionMaps:
    """tokens: the text's tokens as strings, length T; weights: float32 [layers, heads, T,
    T], row i the attention distribution of query token i over key tokens (rows sum to 1;
    a decoder's are zero above the diagonal); model: the name the maps were drawn for."""

    tokens: list[str]
    weights: np.ndarray
    model: str


def attention_maps(ref, text: str, max_tokens: int = 48) -> AttentionMaps:
    """Attention weights of model `ref` (a ModelRef) on `text`, cut to its first
    `max_tokens` tokens. Raises ScalelabError for an empty text, a ladder name (an untrained
    model: name a run that trained it) or an HTTP endpoint (no local weights)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from scalelab.models.build import load_tokenizer_for
    from scalelab.models.registry import model_path

    if not text.strip():
        raise ScalelabError("--attention: the text is empty")
    if ref.kind == "ladder":
        raise ScalelabError(
            f"model {ref.name!r} is an untrained ladder rung: name a run that trained it "
            "(its run id with --experiment) or a saved model folder"
        )
    hf_logging.disable_progress_bar()  # one line of output, not a loading bar
    path, kwargs = model_path(ref)
    tok = load_tokenizer_for(ref)
    config = AutoConfig.from_pretrained(path, **kwargs)
    loader = (
        AutoModelForCausalLM
        if getattr(config, "is_decoder", False) or _causal(config)
        else AutoModel
    )
    model = loader.from_pretrained(path, attn_implementation="eager", **kwargs).eval()
    ids = tok(text, return_tensors="pt", truncation=True, max_length=max_tokens)
    with torch.no_grad():
        out = model(**ids, output_attentions=True)
    if not getattr(out, "attentions", None):
        raise ScalelabError(f"model {ref.name!r} returned no attention weights")
    weights = torch.stack([a[0] for a in out.attentions]).float().numpy()  # [L, H, T, T]
    tokens = [
        tok.convert_tokens_to_string([t]) for t in tok.convert_ids_to_tokens(ids["input_ids"][0])
    ]
    return AttentionMaps(tokens, weights, ref.name)


def _causal(config) -> bool:
    """Whether a config describes a decoder-only language model (GPT-2, Llama, ...)."""
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs)
