"""Packed classification batches (`models/packing.py`): placement, and logits and gradients
equal to padded batches for every supported architecture."""

from __future__ import annotations

import random

import pytest
import torch

from scalelab.errors import ScalelabError
from scalelab.models.packing import check_packing, first_fit, packed_logits

VOCAB = 40


def _classifier(arch: str):
    """A random 2-layer classifier of `arch` (3 classes), dropout off, fp32, pad id 0."""
    import transformers as tf

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, vocab_size=VOCAB, num_labels=3, pad_token_id=0)  # fmt: skip
    drop = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if arch == "bert":
        return tf.BertForSequenceClassification(tf.BertConfig(max_position_embeddings=64, **small,
                                                              **drop))  # fmt: skip
    if arch == "roberta":
        return tf.RobertaForSequenceClassification(
            tf.RobertaConfig(max_position_embeddings=70, **small, **drop))  # fmt: skip
    if arch == "mpnet":
        return tf.MPNetForSequenceClassification(
            tf.MPNetConfig(max_position_embeddings=70, **small, **drop))  # fmt: skip
    if arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=VOCAB,
                            num_labels=3, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0)  # fmt: skip
        return tf.GPT2ForSequenceClassification(cfg)
    if arch == "llama":
        return tf.LlamaForSequenceClassification(tf.LlamaConfig(
            num_key_value_heads=1, max_position_embeddings=64, **small))  # fmt: skip
    if arch == "distilbert":
        return tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
            dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=VOCAB, num_labels=3,
            pad_token_id=0))  # fmt: skip
    raise AssertionError(arch)


def _batch(n: int = 9, seed: int = 0, longest: int = 12):
    """Right-padded ids [n, longest] (pad 0, tokens 2..VOCAB-1: MPNet pads with 1) of random lengths 1..longest."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, longest) for _ in range(n)]
    lengths[0] = longest
    ids = torch.zeros((n, longest), dtype=torch.long)
    for i, k in enumerate(lengths):
        ids[i, :k] = torch.tensor([rng.randint(2, VOCAB - 1) for _ in range(k)])
    return ids, lengths


def _padded(model, ids, lengths):
    mask = (torch.arange(ids.shape[1])[None] < torch.tensor(lengths)[:, None]).long()
    return model(input_ids=ids, attention_mask=mask).logits


def test_first_fit_places_every_example_once_without_overlap():
    lengths = [5, 3, 8, 8, 1, 2, 7, 4, 6]
    row, start, n_rows = first_fit(lengths, 8)
    used: dict[int, set[int]] = {}
    for r, s, n in zip(row, start, lengths, strict=True):
        cells = set(range(s, s + n))
        assert s + n <= 8 and not cells & used.setdefault(r, set())
        used[r] |= cells
    assert n_rows == 6  # 44 tokens: 6 rows of 8 at best
    assert sum(lengths) <= 8 * n_rows
    with pytest.raises(ValueError, match="does not fit"):
        first_fit([9], 8)


@pytest.mark.parametrize("arch", ["bert", "roberta", "mpnet", "gpt2", "llama"])
def test_packed_logits_and_gradients_equal_padded(arch):
    model = _classifier(arch)
    ids, lengths = _batch()
    y = torch.arange(len(lengths)) % 3
    grads = []
    for forward in (_padded, packed_logits):
        model.zero_grad()
        logits = forward(model, ids, lengths)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        grads[-1]["logits"] = logits.detach()
    padded, packed = grads
    torch.testing.assert_close(packed.pop("logits"), padded.pop("logits"), rtol=0, atol=2e-5)
    assert packed.keys() == padded.keys()
    for name in padded:
        torch.testing.assert_close(packed[name], padded[name], rtol=1e-4, atol=2e-6, msg=name)
    assert check_packing(model, ids, lengths) < 1e-4
    # fewer rows than examples: the batch really was packed
    assert first_fit(lengths, max(lengths))[2] < len(lengths)


def test_packing_through_a_lora_wrapper():
    from peft import LoraConfig, TaskType, get_peft_model

    model = get_peft_model(_classifier("bert"), LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, target_modules=["query", "value"],
        modules_to_save=["classifier"]))  # fmt: skip
    for p in model.parameters():  # LoRA's B starts at zero: make the adapters matter
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)
    model.eval()
    ids, lengths = _batch(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(packed_logits(model, ids, lengths), _padded(model, ids, lengths),
                                   rtol=0, atol=2e-5)  # fmt: skip


def test_an_unsupported_or_mismatching_model_is_refused_in_one_line(monkeypatch):
    ids, lengths = _batch()
    with pytest.raises(
        ScalelabError, match=r"^params.packing: DistilBertForSequence.*not supported"
    ):
        check_packing(_classifier("distilbert"), ids, lengths)
    # a BERT whose positions packing would break (positions counted from 1, as RoBERTa's are)
    from scalelab.models import packing

    wrong = packing.Head(packing._bert_head, position_offset=lambda hf: 1)
    monkeypatch.setitem(packing.HEADS, "BertForSequenceClassification", wrong)
    with pytest.raises(ScalelabError, match="other logits packed than padded"):
        check_packing(_classifier("bert"), ids, lengths)
