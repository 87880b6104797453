"""Sentence embeddings from a text encoder: the model's own pooling, unit length.

`load_encoder(ref)` loads any encoder folder (`AutoModel`: BERT, MPNet, a registered
sentence-embedding model such as minilm-l6) with its pooling as sentence-transformers
declares it in `1_Pooling/config.json` (mean, CLS or max over the tokens, several modes
concatenated in that library's order: CLS, max, mean); a folder without one is
mean-pooled over its non-padding tokens (Reimers and Gurevych 2019, Sentence-BERT, the
MEAN strategy). `embed` returns L2-normalised rows, so a dot product is a cosine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalelab.errors import ScalelabError, shown
from scalelab.models.registry import ModelRef, model_path

POOLING_FILE = "1_Pooling/config.json"
_MODES = (("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
          ("mean", "pooling_mode_mean_tokens"), ("mean", "pooling_mode_mean_sqrt_len_tokens"))  # fmt: skip


@dataclass
class Encoder:
    """A loaded encoder: the torch module (eval mode), its tokenizer, the pooling modes
    (a tuple of "cls", "max", "mean"), its device and the most tokens it takes."""

    module: Any
    tokenizer: Any
    pooling: tuple[str, ...]
    device: Any
    max_length: int


def pooling_of(folder: Path) -> tuple[str, ...]:
    """The pooling modes a sentence-transformers folder declares; ("mean",) without one.
    (Mean over sqrt(length) differs from the mean only in scale: after normalising, the
    same.) Raises ScalelabError for a declaration that cannot be read or enables none."""
    path = Path(folder) / POOLING_FILE
    if not path.is_file():
        return ("mean",)
    try:
        config = json.loads(path.read_text())
        modes = tuple(dict.fromkeys(m for m, key in _MODES if config.get(key)))
    except (OSError, ValueError, AttributeError) as err:
        raise ScalelabError(f"{path}: not a readable pooling config ({err})") from None
    if not modes:
        raise ScalelabError(f"{path}: no pooling mode this loader knows (cls, mean, max)")
    return modes


def load_encoder(ref: ModelRef, device: str = "cpu", dtype: str | None = None) -> Encoder:
    """The encoder of a registered, local, run or Hub model (see the module docstring).
    dtype: "float32", "bfloat16", ... (None: the checkpoint's). Raises ScalelabError when
    it cannot be loaded."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path, kwargs = model_path(ref)
    extra = {"dtype": getattr(torch, dtype)} if dtype else {}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        module = AutoModel.from_pretrained(path, **kwargs, **extra)
    except (OSError, ValueError, ImportError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ScalelabError(f"cannot load encoder {shown(ref.name)}: {first}") from None
    pooling = pooling_of(Path(path)) if Path(path).is_dir() else ("mean",)
    config = module.config
    limit = getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "mpnet", "camembert"):
        limit -= 2  # positions start after the padding index
    return Encoder(module.to(device).eval(), tok, pooling, torch.device(device), int(limit))


def embed(encoder: Encoder, texts: list[str], max_length: int, batch_size: int = 32):
    """float32 [len(texts), d x modes] unit-length embeddings, in input order. Texts are
    cut to `max_length` tokens (and to the model's positions); batches go by length."""
    import numpy as np
    import torch

    width = min(max_length, encoder.max_length)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[Any] = [None] * len(texts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = encoder.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                      max_length=width, return_tensors="pt").to(encoder.device)  # fmt: skip
            hidden = encoder.module(**batch).last_hidden_state.float()  # [b, t, d]
            mask = batch["attention_mask"].unsqueeze(-1).float()  # [b, t, 1]
            parts = []
            for mode in encoder.pooling:
                if mode == "cls":
                    parts.append(hidden[:, 0])
                elif mode == "max":
                    parts.append(hidden.masked_fill(mask == 0, -1e9).max(dim=1).values)
                else:
                    parts.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
            vec = torch.nn.functional.normalize(torch.cat(parts, dim=-1), dim=-1)
            for i, row in zip(idx, vec.cpu(), strict=True):
                out[i] = row
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.stack(out).numpy().astype(np.float32)
