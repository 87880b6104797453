"""Token streams for language modelling, tokenized once and cached by content.

Each split becomes one flat int32 tensor (documents concatenated in order), stored as
safetensors under the scalelab home keyed by (text digest, tokenizer digest): five model
sizes on the same corpus tokenize it once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file

from scalelab.io import atomic_write
from scalelab.paths import cache_dir

SPLITS = ("train", "validation", "test")


@dataclass
class LMData:
    tokenizer: object  # a transformers PreTrainedTokenizerFast
    ids: dict[str, torch.Tensor]  # split -> int32 tensor [n_tokens]
    n_bytes: dict[str, int]  # split -> UTF-8 bytes of its raw text

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)


def _encode(tokenizer, text: str) -> torch.Tensor:
    # Line by line (keeping newlines) so the Rust tokenizer can batch in parallel; byte-level
    # BPE never merges across a newline's pre-token boundary, so this changes no ids.
    lines = text.splitlines(keepends=True)
    encs = tokenizer.backend_tokenizer.encode_batch(lines, add_special_tokens=False)
    flat = [i for enc in encs for i in enc.ids]
    return torch.tensor(flat, dtype=torch.int32)


def tokenize_splits(texts: dict[str, str], tokenizer) -> LMData:
    """Token ids for each split of `texts`, from the cache when this pair was seen before."""
    h = hashlib.sha256()
    for split in SPLITS:
        h.update(hashlib.sha256(texts[split].encode()).digest())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    path = cache_dir("tokens") / f"{h.hexdigest()[:24]}.safetensors"
    if path.exists():
        ids = load_file(str(path))
    else:
        ids = {split: _encode(tokenizer, texts[split]) for split in SPLITS}
        atomic_write(path, lambda p: save_file(ids, str(p)))
    n_bytes = {split: len(texts[split].encode()) for split in SPLITS}
    return LMData(tokenizer=tokenizer, ids=ids, n_bytes=n_bytes)


def prepare_lm_data(task, tokenizer=None) -> LMData:
    """Load the task's corpus and tokenize it (training the task's tokenizer if needed)."""
    from scalelab.data.loaders import load_lm_text
    from scalelab.data.tokenizer import build_tokenizer

    texts = load_lm_text(task.dataset)
    if tokenizer is None:
        tokenizer = build_tokenizer(task.tokenizer, texts["train"])
    return tokenize_splits(texts, tokenizer)
