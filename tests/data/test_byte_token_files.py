"""The byte tokenizer's fast path (UTF-8 bytes read and written without decoding) writes
exactly the token files of a straightforward encoding of the split's text."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest

from scalelab.data import lm_sources
from scalelab.data.encode import EOS, Encoder
from scalelab.data.lm_sources import SPLITS
from scalelab.data.lm_tokens import tokenize_splits
from scalelab.data.loaders import lm_splits
from scalelab.data.tokenizer import byte_tokenizer
from scalelab.errors import ScalelabError
from scalelab.paths import cache_dir

# Multi-byte characters (2, 3 and 4 bytes), a BOM, empty lines, \r\n and lone \r, a `<` and
# a `|` apart and `<|endoftext|>` itself, so chunk edges fall inside all of them.
DOC_A = "\ufeffcafé → 🎉\n\n\nline <b> a|b\r\n\r\n\rend"
DOC_B = f"Ünïcödé{EOS}after\n\n{EOS}\n\n  x ≤ y 🎉🎉\r"
DOC_C = "a <| not eos |> ü\n" * 3 + EOS


def _reference(text: str) -> bytes:
    """The ids file written the plain way: UTF-8 bytes, `<|endoftext|>` -> 256, uint16 LE."""
    ids: list[int] = []
    for i, part in enumerate(text.split(EOS)):
        ids += [256] * bool(i) + list(part.encode())
    return np.array(ids, "<u2").tobytes()


def _corpus(folder):
    """train: three shards (plain, gzipped, JSONL) joined by blank lines; valid, test."""
    folder.mkdir()
    (folder / "train-0.txt").write_bytes(DOC_A.encode())
    with gzip.open(folder / "train-1.txt.gz", "wb") as f:
        f.write(DOC_B.encode())
    (folder / "train-2.jsonl").write_text(json.dumps({"text": DOC_C}) + "\n")
    (folder / "valid.txt").write_bytes(DOC_B.encode() * 3)
    (folder / "test.txt").write_bytes(b"")  # empty: no tokens, one document
    return folder


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 13, 4096])
def test_byte_token_files_equal_a_plain_encoding(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(lm_sources, "CHUNK_CHARS", chunk)  # reads cut everything above
    splits = lm_splits(str(_corpus(tmp_path / "c")))
    tok = byte_tokenizer()
    events: list[dict] = []
    data = tokenize_splits(splits, tok, report=events.append)
    (entry,) = [p for p in cache_dir("tokens").iterdir() if not p.name.startswith(".")]
    index = json.loads((entry / "index.json").read_text())
    for split in SPLITS:
        text = splits[split].text()  # the decoded path: universal newlines, \n\n between docs
        assert ("\r" not in text) and (split == "test" or "\n\n" in text)
        raw = (entry / f"{split}.bin").read_bytes()
        assert raw == _reference(text), split
        meta = index["splits"][split]
        assert meta["sha256"] == hashlib.sha256(raw).hexdigest()
        assert meta["bytes"] == data.n_bytes[split] == len(text.encode())
        assert meta["tokens"] == len(data.ids[split]) == len(raw) // 2
    assert data.documents == {"train": 3, "validation": 1, "test": 1}
    assert index["dtype"] == "<u2" and index["encoder"] == "encode-v1 bytes exact=True"
    assert not [e for e in events if "warning" in e]
    # `tokenizers` itself gives the same ids (the vocabulary the fast path stands in for).
    train = splits["train"].text()
    assert data.ids["train"].tolist() == tok.backend_tokenizer.encode(train).ids
    shutil.rmtree(cache_dir("tokens"))


def test_encoding_str_and_utf8_chunks_agree():
    tok = byte_tokenizer()
    enc = Encoder.for_tokenizer(tok, DOC_A + DOC_B)
    text = (DOC_A + DOC_B + DOC_C) * 5
    cuts = [text[i : i + 7] for i in range(0, len(text), 7)]
    data = text.encode()
    raw_cuts = [data[i : i + 5] for i in range(0, len(data), 5)]  # inside characters too
    via_str = np.concatenate([ids for ids, _ in enc.encode(cuts)])
    via_bytes = np.concatenate([ids for ids, _ in enc.encode_utf8(raw_cuts)])
    assert via_str.tobytes() == via_bytes.tobytes() == _reference(text)
    assert sum(n for _, n in enc.encode_utf8(raw_cuts)) == len(data)


@pytest.mark.parametrize("bad", [b"ok \xff no", b"cut \xe2\x86"])  # invalid / truncated
def test_invalid_utf8_is_still_refused_on_the_byte_path(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(lm_sources, "CHUNK_CHARS", 4)
    folder = _corpus(tmp_path / "c")
    (folder / "train-0.txt").write_bytes(DOC_A.encode() + bad)
    with pytest.raises(ScalelabError, match=r"cannot read .*train-0\.txt"):
        tokenize_splits(lm_splits(str(folder)), byte_tokenizer())
    assert not [p for p in cache_dir("tokens").iterdir() if not p.name.startswith(".")]


def test_the_byte_path_reports_progress_per_split(tmp_path, monkeypatch):
    from scalelab.data import token_files

    monkeypatch.setattr(lm_sources, "CHUNK_CHARS", 1 << 16)
    monkeypatch.setattr(token_files, "PROGRESS_EVERY_S", 0.0)  # every chunk
    folder = _corpus(tmp_path / "c")
    (folder / "train-0.txt").write_bytes(DOC_A.encode() * 60_000)  # ~2.6 MB, ~40 chunks
    events: list[dict] = []
    data = tokenize_splits(lm_splits(str(folder)), byte_tokenizer(), report=events.append)
    train = [e for e in events if e.get("info", "").startswith("tokenizing train:")]
    assert len(train) > 20 and all(e["total"] is None for e in train)  # .gz/.jsonl: no size
    steps = [e["step"] for e in train]
    assert steps == sorted(steps) and steps[-1] == data.n_bytes["train"] // 10**6
    assert "MB/s" in train[-1]["info"]


def test_utf8_chunks_cut_inside_characters_decode_for_other_tokenizers():
    from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer

    text = (DOC_A + DOC_B + DOC_C) * 20
    tok = build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=300), text)
    enc = Encoder.for_tokenizer(tok, text[:2000])
    data = text.encode()
    raw_cuts = [data[i : i + 5] for i in range(0, len(data), 5)]  # inside characters too
    via_bytes = np.concatenate([ids for ids, _ in enc.encode_utf8(raw_cuts)])
    assert not enc.byte_level and via_bytes.tolist() == tok.backend_tokenizer.encode(text).ids
    with pytest.raises(UnicodeDecodeError):  # a character cut off at the very end
        list(enc.encode_utf8([data, "→".encode()[:2]]))


def test_a_write_error_in_the_writer_thread_reaches_the_caller(tmp_path):
    import io

    from scalelab.data.token_files import _HashingWriter

    (tmp_path / "ro.bin").write_bytes(b"")
    block = np.arange(1 << 16, dtype=np.uint16)
    with open(tmp_path / "ro.bin", "rb") as out:  # writing to it fails, as a full disk would
        with pytest.raises(io.UnsupportedOperation), _HashingWriter(out) as writer:
            for _ in range(10):  # more blocks than the queue holds: put must not hang
                writer.put(block)
            writer.finish()
        assert not writer.thread.is_alive()
    with open(tmp_path / "ok.bin", "wb") as out, _HashingWriter(out) as writer:
        for _ in range(10):
            writer.put(block)
        digest = writer.finish()
    assert digest == hashlib.sha256(block.tobytes() * 10).hexdigest()
    assert (tmp_path / "ok.bin").read_bytes() == block.tobytes() * 10
