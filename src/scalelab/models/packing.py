"""Padding-free batches for sequence classifiers (`packing: true` in full/lora fine-tuning).

A padded batch of classification examples spends about half its work on padding (TREC-6
questions through MiniLM: 53% of the padded tokens are real). Packing lays the batch's
examples end to end, first-fit by decreasing length, into rows as wide as its longest
example. A block-diagonal attention mask keeps each example attending only to itself (for
decoders, also only to earlier tokens), and position ids restart at each example, so every
example's hidden states are those of a padded forward pass up to float rounding. The head
then reads each example's own token: the first (BERT's [CLS], RoBERTa, MPNet) or the last
(decoders such as GPT-2 and Llama, as their `*ForSequenceClassification` do).

The idea is "sequence packing" with a block-diagonal mask (e.g. Krell et al. 2021, "Efficient
sequence packing without cross-contamination"). Measured on MiniLM-L6 / TREC-6, batches of 32,
bf16 on 2 CPU threads: 1.29x the examples/s of padded batches, 1.40x transformers.Trainer's
(`benchmarks/finetune_vs_trainer.py`).

Only the architectures in HEADS are packed; `check_packing` compares packed and padded logits
once per run and refuses a model whose logits differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scalelab.errors import ScalelabError


def _bert_head(hf, h):  # pooler (dense + tanh on the [CLS] state), dropout, classifier
    return hf.classifier(hf.dropout(hf.bert.pooler(h[:, None])))


def _features_head(hf, h):  # heads that take all hidden states and read position 0
    return hf.classifier(h[:, None])


def _score_head(hf, h):  # decoders: a linear `score` on the last real token's state
    return hf.score(h)


@dataclass(frozen=True)
class Head:
    """How a classifier class reads a packed example: its head, which token it reads
    ("first" or "last"), whether attention is causal, and the first position id of a model
    (RoBERTa and MPNet count positions from their embeddings' padding_idx + 1)."""

    apply: Callable[[Any, Any], Any]
    reads: str = "first"
    causal: bool = False
    position_offset: Callable[[Any], int] = lambda hf: 0


_AFTER_PAD = lambda hf: hf.base_model.embeddings.padding_idx + 1  # noqa: E731

HEADS: dict[str, Head] = {
    "BertForSequenceClassification": Head(_bert_head),
    "RobertaForSequenceClassification": Head(_features_head, position_offset=_AFTER_PAD),
    "XLMRobertaForSequenceClassification": Head(_features_head, position_offset=_AFTER_PAD),
    "MPNetForSequenceClassification": Head(_features_head, position_offset=_AFTER_PAD),
    "GPT2ForSequenceClassification": Head(_score_head, reads="last", causal=True),
    "LlamaForSequenceClassification": Head(_score_head, reads="last", causal=True),
}


def first_fit(lengths: Sequence[int], width: int) -> tuple[list[int], list[int], int]:
    """(row, start, rows): example i goes to row[i] at token offset start[i]; examples are
    placed longest first (ties in input order), each into the first row with room.

    Raises ValueError if an example is longer than `width`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    fill: list[int] = []
    row, start = [0] * len(lengths), [0] * len(lengths)
    for i in order:
        n = lengths[i]
        if n > width:
            raise ValueError(f"example of {n} tokens does not fit a row of {width}")
        r = next((k for k, used in enumerate(fill) if used + n <= width), len(fill))
        if r == len(fill):
            fill.append(0)
        row[i], start[i] = r, fill[r]
        fill[r] += n
    return row, start, len(fill)


def classifier_of(model):
    """The Hugging Face classifier inside `model` (a peft wrapper's base model, else itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def head_of(model) -> Head:
    """The packing recipe of `model`'s classifier class.

    Raises ScalelabError naming the class when it has none."""
    name = type(classifier_of(model)).__name__
    if name not in HEADS:
        raise ScalelabError(
            f"params.packing: {name} is not supported (packed: {', '.join(sorted(HEADS))}); "
            "set packing: false"
        )
    return HEADS[name]


def packed_logits(model, ids, lengths: Sequence[int]):
    """Logits [b, classes] of `b` examples given as right-padded `ids` [b, >= max(lengths)]
    (long) and their `lengths`, computed from one packed forward pass (module docstring).
    The logits follow the input order. Runs under whatever autocast the caller set."""
    import torch

    hf = classifier_of(model)
    head = head_of(model)
    lengths = [max(1, int(n)) for n in lengths]  # an empty text reads its one pad token
    width = max(lengths)
    row, start, n_rows = first_fit(lengths, width)
    device = ids.device
    pad = hf.config.pad_token_id if hf.config.pad_token_id is not None else 0
    packed = torch.full((n_rows, width), pad, dtype=ids.dtype, device=device)
    pos = torch.zeros((n_rows, width), dtype=torch.long, device=device)
    seg = torch.full((n_rows, width), -1, dtype=torch.long, device=device)
    offset = head.position_offset(hf)
    ar = torch.arange(width, device=device)
    for i, (r, s, n) in enumerate(zip(row, start, lengths, strict=True)):
        packed[r, s : s + n] = ids[i, :n]
        pos[r, s : s + n] = ar[:n] + offset
        seg[r, s : s + n] = i
    mask = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] >= 0)
    if head.causal:
        mask &= torch.ones(width, width, dtype=torch.bool, device=device).tril()
    mask |= torch.eye(width, dtype=torch.bool, device=device)  # padding sees itself: no NaN
    mask = mask[:, None]
    if getattr(hf.config, "_attn_implementation", "eager") == "eager":  # adds the mask (MPNet)
        mask = torch.zeros(mask.shape, device=device).masked_fill(~mask, torch.finfo().min)
    base = getattr(hf, hf.base_model_prefix)  # token type ids (BERT) default to zeros
    hidden = base(input_ids=packed, attention_mask=mask, position_ids=pos)[0]
    rows = torch.tensor(row, device=device)
    cols = torch.tensor(start, device=device)
    if head.reads == "last":
        cols = cols + torch.tensor(lengths, device=device) - 1
    return head.apply(hf, hidden[rows, cols])


def check_packing(model, ids, lengths: Sequence[int], tol: float = 1e-4) -> float:
    """Largest |packed - padded| logit over the examples (fp32, eval mode, no grad); the
    model's training mode is restored.

    Raises ScalelabError when the model has no packing recipe or the difference exceeds
    `tol` (an architecture whose attention or positions packing would change)."""
    import torch

    head_of(model)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = (torch.arange(ids.shape[1], device=ids.device)[None]
                    < torch.tensor(list(lengths), device=ids.device)[:, None]).long()  # fmt: skip
            padded = model(input_ids=ids, attention_mask=mask).logits.float()
            packed = packed_logits(model, ids, lengths).float()
    finally:
        model.train(was)
    diff = float((packed - padded).abs().max())
    if not diff <= tol:
        name = type(classifier_of(model)).__name__
        raise ScalelabError(
            f"params.packing: {name} gives other logits packed than padded (max difference "
            f"{diff:.2g} > {tol:g}); set packing: false"
        )
    return diff
