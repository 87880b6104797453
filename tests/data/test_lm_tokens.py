"""Token streams: chunked encoding equals one whole-text encode; token files are cached by
content, memory-mapped, checked on open and rebuilt when damaged."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from scalelab.data import encode
from scalelab.data.encode import Encoder, byte_ids, segments
from scalelab.data.lm_sources import SplitText, TextFile
from scalelab.data.lm_tokens import cap_train, tokenize_splits
from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer
from scalelab.errors import ScalelabError
from scalelab.methods.pretrain import get_batch
from scalelab.paths import cache_dir

TRICKY = (
    " = Heading = \n\nFirst line.\nSecond  line with  spaces \n \n"
    "trailing space \nx\ny\n\n\n   indented\nend 12 345 it's O'Neil  Ünïcödé → 🎉 <|endoftext|>"
    " after\r\n\ttab\x0cform\u2028sep don't  'quoted' x"
) * 40


def _words(n: int, seed: int = 0) -> str:
    """Random text with the shapes that matter: spaces, runs of blanks, newlines, digits."""
    rng = random.Random(seed)
    pieces = ["the", "cat", " ", "  ", "\n", " \n", "\n\n", "42", "it's", "é", "→", ".", ","]
    return "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(n))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    train = _words(20_000, seed=1) + TRICKY
    return {
        "byte": build_tokenizer(TokenizerSpec(kind="byte")),
        "bpe": build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=400), train),
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("kind", ["byte", "bpe"])
@pytest.mark.parametrize("chunk", [7, 1000, 100_000])
def test_chunked_encoding_equals_whole_text(tokenizers, kind, chunk, monkeypatch):
    # Small segments and batches put many cuts, and chunk ends, inside the text.
    monkeypatch.setattr(encode, "SEG_CHARS", 64)
    monkeypatch.setattr(encode, "MAX_SEG_CHARS", 200)
    monkeypatch.setenv(encode.MEMORY_ENV, "64K")
    tok = tokenizers[kind]
    text = TRICKY + _words(5000, seed=2)
    whole = tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
    enc = Encoder.for_tokenizer(tok, text[:5000])
    assert enc.exact and enc.byte_level == (kind == "byte")
    out = list(enc.encode(_chunks(text, chunk)))
    assert np.concatenate([ids for ids, _ in out]).tolist() == whole
    assert sum(n for _, n in out) == len(text.encode())


def test_segments_are_cut_by_content_not_by_chunking(monkeypatch):
    monkeypatch.setattr(encode, "MAX_SEG_CHARS", 300)
    text = _words(3000) + "x" * 1000 + _words(100)  # a long run with no place to cut
    expect = list(segments([text], 50))
    assert "".join(expect) == text and max(map(len, expect)) == 300
    for size in (1, 13, 299, 4096):
        assert list(segments(_chunks(text, size), 50)) == expect


def test_byte_ids_are_utf8_bytes_with_eos_as_256():
    ids = byte_ids("aé<|endoftext|>b")
    assert ids.dtype == np.uint16 and ids.tolist() == [97, 195, 169, 256, 98]


def test_token_files_round_trip_and_memmap(tokenizers):
    texts = {"train": "a b c\n" * 50, "validation": "a b\n" * 10, "test": "c a\n" * 10}
    first = tokenize_splits(texts, tokenizers["byte"])
    again = tokenize_splits(texts, tokenizers["byte"])  # mapped from the cache
    for split, text in texts.items():
        assert np.array_equal(first.ids[split], again.ids[split])
        assert first.n_bytes[split] == len(text.encode()) and first.documents[split] == 1
    train = again.ids["train"]
    assert isinstance(train, np.memmap) and train.dtype == np.uint16 and len(train) == 300
    (entry,) = [p for p in cache_dir("tokens").iterdir() if not p.name.startswith(".")]
    index = json.loads((entry / "index.json").read_text())
    assert index["splits"]["train"]["tokens"] == 300 and index["dtype"] == "<u2"
    assert index["encoder"].startswith("encode-v1 bytes")


@pytest.mark.parametrize("damage", ["truncate", "flip", "index"])
def test_a_damaged_token_file_is_detected_and_rebuilt(tokenizers, damage):
    texts = {"train": _words(3000), "validation": _words(300, 1), "test": _words(300, 2)}
    good = tokenize_splits(texts, tokenizers["bpe"]).ids["train"].tolist()
    (entry,) = [p for p in cache_dir("tokens").iterdir() if not p.name.startswith(".")]
    train = entry / "train.bin"
    if damage == "truncate":
        train.write_bytes(train.read_bytes()[:-3])
    elif damage == "flip":
        data = bytearray(train.read_bytes())
        data[10] ^= 1
        train.write_bytes(bytes(data))
    else:
        (entry / "index.json").write_text("{not json")
    events: list[dict] = []
    again = tokenize_splits(texts, tokenizers["bpe"], report=events.append)
    assert again.ids["train"].tolist() == good
    warnings = [e["warning"] for e in events if "warning" in e]
    assert len(warnings) == 1 and "damaged" in warnings[0] and entry.name in warnings[0]
    assert tokenize_splits(texts, tokenizers["bpe"], report=events.append)  # now clean
    assert len([e for e in events if "warning" in e]) == 1


def test_get_batch_from_a_memmap_equals_from_a_tensor(tokenizers):
    texts = {"train": _words(4000), "validation": "a b\n" * 30, "test": "c a\n" * 30}
    ids = tokenize_splits(texts, tokenizers["bpe"]).ids["train"]
    as_tensor = torch.from_numpy(np.asarray(ids, dtype=np.int32))
    for seed, step in [(0, 0), (3, 17), (5, 10_000)]:
        x, y = get_batch(ids, 8, 32, seed, step)
        x2, y2 = get_batch(as_tensor, 8, 32, seed, step)
        assert x.dtype == torch.long and torch.equal(x, x2) and torch.equal(y, y2)


def test_max_train_tokens_caps_train_without_copying(tokenizers):
    texts = {"train": "abcd\n" * 100, "validation": "a\n" * 50, "test": "b\n" * 50}
    data = tokenize_splits(texts, tokenizers["byte"])
    full = data.ids["train"]
    cap_train(data, 123, "corpus")
    assert len(data.ids["train"]) == 123 and np.shares_memory(data.ids["train"], full)
    with pytest.raises(ScalelabError, match=r"max_train_tokens \(1,000\) exceeds .* \(123"):
        cap_train(data, 1000, "corpus")


def test_split_text_streams_the_same_text_in_any_chunking(tmp_path, monkeypatch):
    from scalelab.data import lm_sources

    path = tmp_path / "c.txt"
    path.write_bytes(TRICKY.encode() + b"x\r\ry\r\n\rz\r")  # \r\n cut by chunks
    whole = path.read_text(encoding="utf-8")  # universal newlines, as the old loader
    assert "\r" not in whole and whole.count("\n") > TRICKY.count("\n")
    for size in (1, 2, 5, 4096):
        monkeypatch.setattr(lm_sources, "CHUNK_CHARS", size)
        assert SplitText("train", (TextFile(path),)).text() == whole
        lines = whole.splitlines(keepends=True)
        ranged = SplitText("train", (TextFile(path, (3, 11)),), sep="")
        assert ranged.text() == "".join(lines[3:11])
        assert lm_sources.count_lines(path) == len(lines)


def test_a_tokenizer_that_segments_would_change_is_detected(tokenizers, monkeypatch):
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    backend = tokenizers["bpe"].backend_tokenizer
    odd = PreTrainedTokenizerFast(tokenizer_object=type(backend).from_str(backend.to_str()))
    odd.backend_tokenizer.normalizer = normalizers.Replace("  ", "~")  # looks across a cut
    monkeypatch.setattr(encode, "SEG_CHARS", 64)
    text = "a  b  c  d " * 2000
    enc = Encoder.for_tokenizer(odd, text)
    assert not enc.exact and not enc.byte_level and "exact=False" in enc.fingerprint()
    ids = np.concatenate([i for i, _ in enc.encode(_chunks(text, 999))])
    assert len(ids) > 0  # still streams; ids may differ at segment ends only
