"""Text streams to token ids in bounded memory, with the ids one encode of the whole text
would give.

* The byte tokenizer (`tokenizer.byte_tokenizer`: id = byte, `<|endoftext|>` = 256) is
  not run through `tokenizers` at all: its ids are the text's UTF-8 bytes (numpy, GB/s;
  the Rust path ran at 0.6 MB/s and took ~250 bytes of memory per token). `encode_utf8`
  takes the text as UTF-8 bytes, so text files are never decoded to `str` and back
  (`lm_sources.SplitText.byte_chunks`).
* Any other tokenizer encodes *segments* in batches (`encode_batch_fast`, all cores). A
  segment ends at the first point at least `SEG_CHARS` characters in where a space is
  followed by an ASCII letter or digit: there GPT-2-style byte-level pre-tokenizers (and
  SentencePiece's Metaspace) always start a new piece (` word`), whatever came before, so
  encoding segments one by one gives the ids of the whole text. Cut points depend on the
  text alone (not on chunk or batch sizes, nor on the memory setting), so the ids do too.
  A segment with no such point is cut hard after `MAX_SEG_CHARS` characters (a 1M-char
  run without a space-word: ids there may differ from a whole-text encode).
* `check_exact` compares both ways on a sample; a tokenizer for which segments are not
  exact (a normalizer that looks across spaces) still streams, and differs from a
  whole-text encode at most at segment boundaries (`SEG_CHARS_INEXACT` apart).

Memory: the text in flight and the Rust `Encoding`s of one batch, sized to
`SCALELAB_TOKENIZE_MEMORY` (default 256M; `Encoding` objects cost ~150-250 bytes a token).
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalelab.data.sources import byte_limit

MEMORY_ENV = "SCALELAB_TOKENIZE_MEMORY"
DEFAULT_MEMORY = 256 << 20
SEG_CHARS = 4096
SEG_CHARS_INEXACT = 1 << 20
MAX_SEG_CHARS = 1 << 20
SAMPLE_CHARS = 64_000  # text of the train split that `check_exact` encodes both ways
BYTES_PER_TOKEN = 250  # memory of one token of an `Encoding` batch, measured (upper end)
_SAFE = re.compile(r"(?= [A-Za-z0-9])")
EOS = "<|endoftext|>"
EOS_BYTES = EOS.encode()
BYTE_EOS_ID = 256

Progress = Callable[[int], None]  # called with the UTF-8 bytes encoded so far


def memory_budget() -> int:
    """Bytes of text and encodings in flight (`SCALELAB_TOKENIZE_MEMORY`, e.g. 256M)."""
    return byte_limit(MEMORY_ENV, DEFAULT_MEMORY)


def segments(chunks: Iterable[str], seg_chars: int = SEG_CHARS) -> Iterator[str]:
    """The text of `chunks` cut into segments (see the module docstring); joined, the text.

    Memory: one chunk plus at most `MAX_SEG_CHARS` characters."""
    buf = ""
    for chunk in chunks:
        buf += chunk
        start = 0
        while (cut := _cut(buf, start, seg_chars, final=False)) is not None:
            yield buf[start:cut]
            start = cut
        buf = buf[start:]
    start = 0
    while (cut := _cut(buf, start, seg_chars, final=True)) is not None:
        yield buf[start:cut]
        start = cut
    if start < len(buf):
        yield buf[start:]


def _cut(buf: str, start: int, seg_chars: int, final: bool) -> int | None:
    """Where the segment beginning at `start` ends, or None (need more text / no more)."""
    limit = start + max(seg_chars, MAX_SEG_CHARS)
    # A cut at p needs buf[p:p + 2] (" x"): search only where both are in view.
    found = _SAFE.search(buf, start + seg_chars, min(len(buf), limit + 2))
    if found is not None and found.start() > start:
        return found.start()
    if len(buf) >= limit + 2 or (final and len(buf) > limit):
        return limit
    return None


def _eos_safe(chunks: Iterable[str] | Iterable[bytes], eos: str | bytes = EOS) -> Iterator:
    """Chunks (str, or UTF-8 bytes with `eos` as bytes) re-cut so that `<|endoftext|>`
    never straddles two of them: from the first `<` among a chunk's last len(EOS) - 1
    characters on, the text waits for the next."""
    carry = eos[:0]
    keep = len(eos) - 1
    for chunk in chunks:
        text = carry + chunk if carry else chunk
        cut = text.find(eos[:1], max(len(text) - keep, 0))
        if cut < 0:
            carry = eos[:0]
            yield text
        else:
            carry = text[cut:]
            if cut:
                yield text[:cut]
    if carry:
        yield carry


def byte_ids(text: str | bytes) -> np.ndarray:
    """Byte-tokenizer ids (uint16 [n]) of `text` (str, or its UTF-8 bytes): the UTF-8
    bytes, `<|endoftext|>` -> 256. Bytes are copied once, straight into the ids."""
    data = text.encode() if isinstance(text, str) else text
    # Single bytes are found with memchr (~50x faster than the 13-byte search): most text
    # has no `<` or no `|`, and so no `<|endoftext|>`.
    if b"<" not in data or b"|" not in data or EOS_BYTES not in data:
        out = np.empty(len(data), np.uint16)
        out[:] = np.frombuffer(data, np.uint8)
        return out
    parts = data.split(EOS_BYTES)
    out = np.empty(len(data) - (len(parts) - 1) * (len(EOS_BYTES) - 1), np.uint16)
    pos = 0
    for i, raw in enumerate(parts):
        if i:
            out[pos] = BYTE_EOS_ID
            pos += 1
        out[pos : pos + len(raw)] = np.frombuffer(raw, np.uint8)
        pos += len(raw)
    return out


def is_byte_tokenizer(tokenizer: Any) -> bool:
    """Whether `tokenizer` is scalelab's byte tokenizer (same vocabulary, no normalizer)."""
    from scalelab.data.tokenizer import byte_tokenizer

    backend = tokenizer.backend_tokenizer
    if len(tokenizer) != BYTE_EOS_ID + 1 or backend.normalizer is not None:
        return False
    return backend.get_vocab() == byte_tokenizer().backend_tokenizer.get_vocab()


@dataclass
class Encoder:
    """Encodes text chunks with one tokenizer; `exact` says whether segments are exact."""

    tokenizer: Any
    byte_level: bool
    exact: bool

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, sample: str) -> Encoder:
        """Pick the fast byte path or segments, checking either on `sample` (see
        `check_exact`)."""
        byte_level = is_byte_tokenizer(tokenizer)
        enc = cls(tokenizer, byte_level, exact=True)
        enc.exact = enc.check_exact(sample)
        if byte_level and not enc.exact:  # a look-alike: let the tokenizer itself decide
            enc = cls(tokenizer, False, exact=True)
            enc.exact = enc.check_exact(sample)
        return enc

    def check_exact(self, sample: str) -> bool:
        """Whether this encoder gives `sample` the ids of one whole-text encode."""
        whole = self.tokenizer.backend_tokenizer.encode(sample, add_special_tokens=False).ids
        ids = np.concatenate([*(i for i, _ in self.encode([sample])), np.zeros(0, np.int64)])
        return ids.tolist() == whole

    def fingerprint(self) -> str:
        seg = SEG_CHARS if self.exact else SEG_CHARS_INEXACT
        how = "bytes" if self.byte_level else f"segments {seg} {MAX_SEG_CHARS}"
        return f"encode-v1 {how} exact={self.exact}"

    def encode(
        self, chunks: Iterable[str], progress: Progress | None = None
    ) -> Iterator[tuple[np.ndarray, int]]:
        """(token ids, UTF-8 bytes they encode) of the text of `chunks`, in order; ids are
        uint16 (bytes) or int64 arrays."""
        if self.byte_level:
            yield from self.encode_utf8((chunk.encode() for chunk in chunks), progress)
            return
        done = 0
        backend = self.tokenizer.backend_tokenizer
        seg_chars = SEG_CHARS if self.exact else SEG_CHARS_INEXACT
        budget = memory_budget()
        batch_chars = max(budget // 4 // BYTES_PER_TOKEN, 1 << 16)  # first guess: 4 chars/tok
        batch: list[str] = []
        chars = 0
        for seg in segments(chunks, seg_chars):
            batch.append(seg)
            chars += len(seg)
            if chars >= batch_chars:
                ids, n_bytes = _encode_batch(backend, batch)
                done += n_bytes
                yield ids, n_bytes
                if progress:
                    progress(done)
                # Size the next batch to the budget with this batch's tokens per character.
                per_char = max(len(ids) / max(chars, 1), 0.05)
                batch_chars = int(
                    min(max(budget / (BYTES_PER_TOKEN * per_char), 1 << 14), budget / 8)
                )
                batch, chars = [], 0
        if batch:
            ids, n_bytes = _encode_batch(backend, batch)
            yield ids, n_bytes
            if progress:
                progress(done + n_bytes)

    def encode_utf8(
        self, chunks: Iterable[bytes], progress: Progress | None = None
    ) -> Iterator[tuple[np.ndarray, int]]:
        """`encode` of text given as UTF-8 bytes (as `SplitText.byte_chunks` gives; a
        character may be cut between chunks): the byte path (uint16 ids) never decodes it;
        other tokenizers decode it. Raises UnicodeDecodeError for invalid UTF-8 there."""
        if not self.byte_level:
            yield from self.encode(_decoded(chunks), progress)
            return
        done = 0
        for chunk in _eos_safe(chunks, EOS_BYTES):
            ids = byte_ids(chunk)
            done += len(chunk)
            yield ids, len(chunk)
            if progress:
                progress(done)


def _decoded(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 chunks decoded, a character cut between two of them included."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for chunk in chunks:
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def _encode_batch(backend: Any, batch: list[str]) -> tuple[np.ndarray, int]:
    """(int64 ids of the segments in order, UTF-8 bytes of the segments)."""
    encs = backend.encode_batch_fast(batch, add_special_tokens=False)
    ids = np.concatenate([np.asarray(e.ids, np.int64) for e in encs])
    return ids, sum(len(s.encode()) for s in batch)


class Rate:
    """MB/s since start, for progress lines."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def mb_per_s(self, n_bytes: int) -> float:
        return n_bytes / 1e6 / max(time.perf_counter() - self.t0, 1e-9)
