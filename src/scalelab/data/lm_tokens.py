"""Token streams for language modelling, tokenized once and cached by content.

Each split becomes one flat int32 tensor (documents concatenated in order), stored as
safetensors under the scalelab home keyed by (text digest, tokenizer digest): five model
sizes on the same corpus tokenize it once.

Every split must hold at least one full window of `seq_len + 1` tokens (a sequence and its
shifted targets): a shorter split cannot be trained on or scored like the others, and an
empty one would average a loss over zero tokens. `prepare_lm_data` checks this before any
training, for splits read from files and for those scalelab cuts from a single file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from scalelab.errors import ScalelabError
from scalelab.io import atomic_write, build_once
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


# Split only after "x\n" before a non-space: there GPT-2's pre-tokenizer regex ends a
# pre-token whether or not the text goes on, so BPE sees the same pieces (a split after
# " \n" or before " y" would change the ids).
_SAFE_SPLIT = re.compile(r"(?<=\S\n)(?=\S)")


def _encode(tokenizer, text: str) -> torch.Tensor:
    """Token ids of `text` (int32 [n]), as one `encode` of the whole text would give them.

    Pieces are encoded in a batch so the Rust tokenizer can use every core; a sample checks
    that piecewise encoding is exact for this tokenizer, else the text is encoded whole.
    """
    backend = tokenizer.backend_tokenizer

    def encode_pieces(t: str) -> np.ndarray:
        encs = backend.encode_batch(_SAFE_SPLIT.split(t), add_special_tokens=False)
        # Per-piece int32 arrays, not one flat Python list: 11M boxed ints cost ~0.5 GB.
        parts = [np.asarray(e.ids, dtype=np.int32) for e in encs]
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    sample = text[:200_000]
    whole = np.asarray(backend.encode(sample, add_special_tokens=False).ids, dtype=np.int32)
    if not np.array_equal(encode_pieces(sample), whole):
        ids = np.asarray(backend.encode(text, add_special_tokens=False).ids, dtype=np.int32)
        return torch.from_numpy(ids)
    return torch.from_numpy(encode_pieces(text))


def tokenize_splits(texts: dict[str, str], tokenizer) -> LMData:
    """Token ids for each split of `texts`, from the cache when this pair was seen before.

    Of several workers that miss the cache at once, one tokenizes while the others wait
    for its file (`io.build_once`)."""
    h = hashlib.sha256(b"tokens-v2")  # bump when the encoding procedure changes
    for split in SPLITS:
        h.update(hashlib.sha256(texts[split].encode()).digest())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    path = cache_dir("tokens") / f"{h.hexdigest()[:24]}.safetensors"

    def build() -> None:
        ids = {split: _encode(tokenizer, texts[split]) for split in SPLITS}
        atomic_write(path, lambda p: save_file(ids, str(p)))

    build_once(path, build)
    ids = load_file(str(path))
    n_bytes = {split: len(texts[split].encode()) for split in SPLITS}
    return LMData(tokenizer=tokenizer, ids=ids, n_bytes=n_bytes)


def require_full_windows(counts: dict[str, int], seq_len: int, dataset: str) -> None:
    """Raise ScalelabError naming every split with fewer than `seq_len + 1` tokens.

    counts: split -> tokens (SPLITS order). One window is the least a split can be trained
    or evaluated on; below it a validation or test metric would be a mean over too few (or
    zero) tokens.
    """
    need = seq_len + 1
    short = [
        f"the {split} split has {n} token{'' if n == 1 else 's'}"
        for split, n in ((s, counts[s]) for s in SPLITS)
        if n < need
    ]
    if not short:
        return
    # A single file's splits are drawn by scalelab: say how, or the user looks for a file.
    how = (
        " (scalelab cuts a single file by lines into contiguous 90/5/5 train/validation/test "
        "blocks)"
        if Path(dataset).expanduser().is_file()
        else ""
    )
    raise ScalelabError(
        f"task.dataset {dataset!r}: {'; '.join(short)}{how}; each split needs at least one "
        f"window of seq_len + 1 = {need} tokens: add text or lower seq_len"
    )


def prepare_lm_data(task, tokenizer=None) -> LMData:
    """Load the task's corpus and tokenize it (training the task's tokenizer if needed).

    Raises ScalelabError when a split is shorter than one window (`require_full_windows`),
    before any training.
    """
    from scalelab.data.loaders import load_lm_text
    from scalelab.data.tokenizer import build_tokenizer

    texts = load_lm_text(task.dataset)
    if tokenizer is None:
        tokenizer = build_tokenizer(task.tokenizer, texts["train"])
    data = tokenize_splits(texts, tokenizer)
    counts = {split: len(data.ids[split]) for split in SPLITS}
    require_full_windows(counts, task.seq_len, task.dataset)
    return data
