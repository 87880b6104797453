"""Tokenizer specs and builders: byte round trip, BPE training cached by content."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scalelab.data import tokenizer as tk
from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer
from scalelab.errors import ScalelabError

TEXT = "The cat sat on the mat. The dog sat on the log.\n" * 50 + "Ünïcödé → 🎉 ok\n"


def test_byte_tokenizer_round_trips_anything(tmp_path):
    tok = build_tokenizer(TokenizerSpec(kind="byte"))
    assert len(tok) == 257 and tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 256
    assert tok.pad_token == tok.eos_token
    for text in ["", "plain", "  leading spaces\n\ttabs\r\n", "naïve 日本語 🎉", "\x00\xff"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert ids == list(text.encode("utf-8"))  # id == byte value
        assert tok.decode(ids) == text
    tok.save_pretrained(str(tmp_path / "byte"))
    again = build_tokenizer(TokenizerSpec(kind="pretrained", path=str(tmp_path / "byte")))
    assert again.encode("héllo") == tok.encode("héllo") and again.pad_token is not None


def test_bpe_trains_once_and_reloads_from_cache(monkeypatch):
    spec = TokenizerSpec(kind="bpe", vocab_size=300)
    tok = build_tokenizer(spec, TEXT)
    assert (
        257 < len(tok) <= 300
        and tok.eos_token == "<|endoftext|>"
        and tok.pad_token == tok.eos_token
    )
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert len(tok.encode("The cat sat on the mat.")) < len("The cat sat on the mat.")

    def no_training(*args, **kwargs):
        raise AssertionError("a cached tokenizer must not be retrained")

    monkeypatch.setattr(tk, "_train_bpe", no_training)
    cached = build_tokenizer(spec, TEXT)
    assert cached.get_vocab() == tok.get_vocab()
    with pytest.raises(AssertionError):  # other text or size -> new training
        build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=301), TEXT)


def test_bpe_needs_text():
    with pytest.raises(ScalelabError, match="needs training text"):
        build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=300))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "bpe"}, "tokenizer.vocab_size must be >= 260 for kind 'bpe'"),
        ({"kind": "bpe", "vocab_size": 100}, "tokenizer.vocab_size must be >= 260"),
        ({"kind": "byte", "vocab_size": 300}, "tokenizer.vocab_size is only allowed"),
        ({"kind": "pretrained"}, "tokenizer.path is required"),
        ({"kind": "gpt2", "path": "x"}, "tokenizer.path is only allowed"),
        ({"kind": "bpe", "vocab_size": 300, "extra": 1}, "extra"),
        ({"kind": "word"}, "kind"),
    ],
)
def test_spec_validation_names_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        TokenizerSpec(**fields)


def test_spec_is_frozen():
    spec = TokenizerSpec(kind="byte")
    with pytest.raises(ValidationError):
        spec.kind = "bpe"  # type: ignore[misc]


def test_pretrained_missing_folder_is_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ScalelabError, match="cannot load tokenizer"):
        build_tokenizer(TokenizerSpec(kind="pretrained", path=str(tmp_path / "none")))
