"""Token streams: piecewise (parallel) encoding must equal encoding the whole text."""

from __future__ import annotations

import torch

from scalelab.data.lm_tokens import _encode, tokenize_splits
from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer

TRICKY = (
    " = Heading = \n\nFirst line.\nSecond  line with  spaces \n \n"
    "trailing space \nx\ny\n\n\n   indented\nend"
) * 20


def test_piecewise_encoding_equals_whole_text(corpus):
    train = (corpus / "train.txt").read_text()
    for spec in (TokenizerSpec(kind="byte"), TokenizerSpec(kind="bpe", vocab_size=300)):
        tok = build_tokenizer(spec, train)
        whole = tok.backend_tokenizer.encode(TRICKY, add_special_tokens=False).ids
        assert _encode(tok, TRICKY).tolist() == whole, spec.kind


def test_token_cache_round_trip(corpus):
    texts = {"train": "a b c\n" * 50, "validation": "a b\n" * 10, "test": "c a\n" * 10}
    tok = build_tokenizer(TokenizerSpec(kind="byte"))
    first = tokenize_splits(texts, tok)
    again = tokenize_splits(texts, tok)  # from the safetensors cache
    for split in texts:
        assert torch.equal(first.ids[split], again.ids[split])
        assert first.n_bytes[split] == len(texts[split].encode())
    assert first.ids["train"].dtype == torch.int32 and len(first.ids["train"]) == 300
