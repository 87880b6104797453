"""Token streams for language modelling, tokenized once and cached by content.

Each split's text is streamed (`lm_sources`), encoded in bounded memory (`encode`) and
written to one memory-mapped token file (`token_files`): nothing loads a whole split, and
five model sizes on the same corpus tokenize it once. `LMData.ids` holds the memmaps;
training (`methods.pretrain.get_batch`) and evaluation (`eval.lm`) read windows from them.

`task.max_train_tokens` caps the train split to its first N tokens (a view, no copy): a
data-budget axis over one corpus.

Every split must hold at least one full window of `seq_len + 1` tokens (a sequence and its
shifted targets): a shorter split cannot be trained on or scored like the others, and an
empty one would average a loss over zero tokens. `prepare_lm_data` checks this before any
training, for splits read from files and for those scalelab cuts from a single file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalelab.data.lm_sources import SPLITS, Documents, SplitText
from scalelab.errors import ScalelabError


@dataclass
class LMData:
    tokenizer: object  # a transformers PreTrainedTokenizerFast
    ids: dict[str, np.ndarray]  # split -> read-only memmap [n_tokens], uint16 or uint32
    n_bytes: dict[str, int]  # split -> UTF-8 bytes of its raw text
    documents: dict[str, int] = field(default_factory=dict)  # split -> documents in it

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)


def token_window(ids, start: int, stop: int):
    """`ids[start:stop]` as an int64 torch tensor [stop - start]; `ids` is a memmap, a numpy
    array or a tensor. Only the window is read: a memmap stays on disk."""
    import torch

    part = ids[start:stop]
    if isinstance(part, torch.Tensor):
        return part.long()
    return torch.from_numpy(np.asarray(part, dtype=np.int64))


def tokenize_splits(
    texts: dict[str, SplitText] | dict[str, str],
    tokenizer,
    report: Callable[[dict], None] | None = None,
) -> LMData:
    """Token ids for each split, from the cache when this (text, tokenizer) was seen before.

    texts: split -> SplitText (streamed), or split -> str (small texts, tests). Of several
    workers that miss the cache at once, one tokenizes while the others wait for its files
    (`token_files.load_tokens`, which also says what `report` receives)."""
    from scalelab.data.token_files import load_tokens

    splits = {
        s: t if isinstance(t, SplitText) else SplitText(s, (Documents((t,)),))
        for s, t in texts.items()
    }
    loaded = load_tokens(splits, tokenizer, report)
    return LMData(
        tokenizer=tokenizer,
        ids={s: t.ids for s, t in loaded.items()},
        n_bytes={s: t.n_bytes for s, t in loaded.items()},
        documents={s: t.documents for s, t in loaded.items()},
    )


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


def cap_train(data: LMData, max_tokens: int | None, dataset: str) -> None:
    """Keep the train split's first `max_tokens` tokens (a view); more than the split holds
    is a ScalelabError (a data budget the corpus cannot give)."""
    if max_tokens is None:
        return
    have = len(data.ids["train"])
    if max_tokens > have:
        raise ScalelabError(
            f"task.max_train_tokens ({max_tokens:,}) exceeds the train split of "
            f"{dataset!r} ({have:,} tokens)"
        )
    data.ids["train"] = data.ids["train"][:max_tokens]


def prepare_lm_data(task, tokenizer=None, report: Callable[[dict], None] | None = None) -> LMData:
    """Stream the task's corpus into token files (training the task's tokenizer if needed)
    and map them.

    `report` gets tokenizing progress and warnings (`token_files.load_tokens`). Raises
    ScalelabError for unreadable data, a `max_train_tokens` over the train split, or a
    split shorter than one window (`require_full_windows`), before any training.
    """
    from scalelab.data.loaders import lm_splits
    from scalelab.data.tokenizer import build_tokenizer

    splits = lm_splits(
        task.dataset, getattr(task, "files", None), getattr(task, "text_field", "text")
    )
    if tokenizer is None:
        tokenizer = build_tokenizer(task.tokenizer, train_split=splits["train"])
    data = tokenize_splits(splits, tokenizer, report)
    cap_train(data, getattr(task, "max_train_tokens", None), task.dataset)
    counts = {split: len(data.ids[split]) for split in SPLITS}
    require_full_windows(counts, task.seq_len, task.dataset)
    return data
