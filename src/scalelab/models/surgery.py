"""Model surgery: a student cut from a teacher's transformer blocks (DistilGPT2-style).

Sanh et al. (2019, "DistilBERT, a distilled version of BERT", Sec. 3) initialise the
student from the teacher by taking one layer out of two; DistilGPT2 does the same for
GPT-2. `cut_blocks` keeps the named blocks of a causal LM, in order, with their weights,
and the embeddings, final norm and LM head unchanged, so the student starts where the
teacher's first and last layers are and only the middle is thinned. Works for the
decoder layouts transformers uses for GPT-2 (`transformer.h`, `n_layer`) and for Llama /
SmolLM2 / Gemma-style models (`model.layers`, `num_hidden_layers`), and for BERT / MPNet
encoders and their classifiers (`<bert|mpnet>.encoder.layer`), as DistilBERT cut BERT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scalelab.errors import ScalelabError


def every_other(n_layers: int) -> list[int]:
    """Blocks 0, 2, 4, ... of `n_layers` (DistilBERT's "one layer out of two"):
    30 -> 15 -> 8 blocks for SmolLM2-135M cut twice."""
    return list(range(0, n_layers, 2))


def _blocks(model: Any) -> tuple[Any, str, str]:
    """(the ModuleList of blocks, its attribute path, the config field counting them)."""
    prefix = getattr(model, "base_model_prefix", "") or "model"
    layouts = (
        ("transformer.h", "n_layer"),  # GPT-2 (LM or classifier)
        ("model.layers", "num_hidden_layers"),  # Llama, SmolLM2, Gemma
        (f"{prefix}.encoder.layer", "num_hidden_layers"),  # BERT/MPNet classifiers
        ("encoder.layer", "num_hidden_layers"),  # a bare BERT/MPNet encoder
    )
    for path, field in layouts:
        owner = model
        for part in path.split("."):
            owner = getattr(owner, part, None)
        if owner is not None:
            return owner, path, field
    raise ScalelabError(
        f"cannot cut blocks from a {type(model).__name__}: no transformer.h, model.layers "
        "or encoder.layer"
    )


def check_layer_list(keep: Sequence[int] | str | None) -> Sequence[int] | str | None:
    """Spec time, before the model is known: a block list keeps at least one block, each
    once, in ascending order, none negative. Raises ValueError (a params field error)."""
    if keep is None or isinstance(keep, str):
        return keep
    layers = list(keep)
    if not layers:
        raise ValueError("keep at least one block")
    if min(layers) < 0:
        raise ValueError("block indices start at 0")
    if layers != sorted(set(layers)):
        raise ValueError("list blocks once each, ascending")
    return keep


def check_blocks_exist(keep: Sequence[int] | str | None, model: Any) -> None:
    """Spec time: a block list names blocks the model (a ModelRef) has, when its depth is
    known without loading it (`registry.model_depth`). Raises ScalelabError."""
    from scalelab.models.registry import model_depth

    if keep is None or isinstance(keep, str):
        return
    depth = model_depth(model)
    if depth is not None and max(keep) >= depth:
        raise ScalelabError(f"params.keep_layers {list(keep)}: model {model.name} has blocks "
                            f"0..{depth - 1}")  # fmt: skip


def resolve_layers(keep: Sequence[int] | str, n_layers: int) -> list[int]:
    """`keep` ("every_other" or block indices) checked against `n_layers`: indices must be
    distinct, ascending and in range, and keep at least one block. Raises ScalelabError."""
    layers = every_other(n_layers) if keep == "every_other" else list(keep)
    if not layers:
        raise ScalelabError("params.keep_layers: keep at least one block")
    if any(i < 0 or i >= n_layers for i in layers):
        raise ScalelabError(f"params.keep_layers {layers}: the model has blocks 0..{n_layers - 1}")
    if layers != sorted(set(layers)):
        raise ScalelabError(f"params.keep_layers {layers}: list blocks once each, ascending")
    return layers


def cut_blocks(model: Any, keep: Sequence[int] | str) -> Any:
    """`model` (a transformers causal LM, encoder or classifier) with only the blocks `keep` (indices or
    "every_other"), in place: the blocks' weights are the teacher's own tensors (copy the
    model first to keep the teacher), `config` says the new depth, and per-layer config
    lists (e.g. `layer_types`) keep the same entries. Returns the model."""
    import torch

    blocks, path, field = _blocks(model)
    layers = resolve_layers(keep, len(blocks))
    kept = torch.nn.ModuleList(blocks[i] for i in layers)
    owner = model
    *parents, last = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    setattr(owner, last, kept)
    setattr(model.config, field, len(layers))
    for name in ("layer_types",):  # per-block settings (sliding vs full attention)
        values = getattr(model.config, name, None)
        if isinstance(values, list) and len(values) == len(blocks):
            setattr(model.config, name, [values[i] for i in layers])
    for new_idx, block in enumerate(kept):  # attention modules that know their index
        attn = getattr(block, "self_attn", None) or getattr(block, "attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
    return model
