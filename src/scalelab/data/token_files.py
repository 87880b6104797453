"""Token files: each split's ids in one memory-mapped file, plus a JSON index, cached by
content under `$SCALELAB_HOME/tokens/<key>/`:

    index.json   {"format", "dtype", "vocab_size", "tokenizer", "encoder",
                  "splits": {split: {"file", "tokens", "bytes", "documents", "source",
                                     "xxh3_128"}}}
    train.bin    ids as little-endian uint16 when the vocabulary fits, else uint32
    validation.bin, test.bin

`key` hashes each split's source digest and the tokenizer (its full JSON): five model
sizes on one corpus tokenize it once. The folder is written under a temp name and renamed
(`io.replace_dir`), by one of the processes that miss it at once (`io.build_once`); the
others wait, then map it. Every open checks the index, each file's size and digest (but
the builder's own open right after the rename: its digests are of the bytes it just
wrote). The digest is XXH3-128 (the xxhash library), a checksum against damage, not a
signature: ~5 GB/s here against sha256's ~0.5-1.5 GB/s, which made it the larger part of
writing a byte-level token file and of every later open. A damaged entry (truncated, changed, unreadable index) is named in a warning,
removed under the lock and rebuilt. Blocks are hashed and written in a second thread while
the next one is read and encoded.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scalelab.data.encode import SAMPLE_CHARS, Encoder, Rate
from scalelab.data.lm_sources import SPLITS, SplitText
from scalelab.errors import ScalelabError
from scalelab.io import build_once, file_lock, make_temp_dir, remove_stale_temps, replace_dir
from scalelab.paths import cache_dir

# v2: token files checked by XXH3-128 (v1: sha256); a v1 entry has another key and stays
# where it is, unused.
FORMAT = "scalelab-tokens-v2"
PROGRESS_EVERY_S = 1.0
Report = Callable[[dict], None]


@dataclass(frozen=True)
class TokenSplit:
    """One split's ids (a read-only memmap, uint16/uint32 [tokens]) and what they are of."""

    ids: np.ndarray
    n_bytes: int  # UTF-8 bytes of the split's text
    documents: int


class Damaged(Exception):
    """A token cache entry that fails its checks (the message says which)."""


def cache_key(sources: dict[str, str], tokenizer: Any) -> str:
    """The entry name: sha256 of the splits' source digests and the tokenizer's JSON."""
    h = hashlib.sha256(FORMAT.encode())
    for split in SPLITS:
        h.update(sources[split].encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    return h.hexdigest()[:24]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def load_tokens(
    splits: dict[str, SplitText], tokenizer: Any, report: Report | None = None
) -> dict[str, TokenSplit]:
    """split -> TokenSplit, encoding the splits once (see the module docstring).

    `report` gets progress events ({"step": MB done, "total": MB or None, "info"}) while
    encoding and {"warning": line} for a damaged cache entry. Raises ScalelabError for
    unreadable text (naming the file)."""
    sources = {split: splits[split].digest() for split in SPLITS}
    folder = cache_dir("tokens") / cache_key(sources, tokenizer)

    wrote: list[bool] = []

    def build() -> None:
        wrote.append(_build(folder, splits, sources, tokenizer, report))

    build_once(folder, build)
    try:  # files this process just wrote and renamed in: their digests are known good
        return open_tokens(folder, check_digests=not any(wrote))
    except Damaged:
        with file_lock(folder):
            try:  # another process may have rebuilt it while this one waited
                return open_tokens(folder)
            except Damaged as err:
                if report:
                    report({"warning": f"token cache {folder.name} damaged ({err}); rebuilt"})
                shutil.rmtree(folder, ignore_errors=True)
                remove_stale_temps(folder)
                build()
        return open_tokens(folder)


def open_tokens(folder: Path, check_digests: bool = True) -> dict[str, TokenSplit]:
    """Map a cache entry's files after checking them (index, sizes, and with
    `check_digests` each file's XXH3-128); raises Damaged naming the problem."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("format") != FORMAT:
            raise Damaged(f"index format {index.get('format')!r}")
        dtype = np.dtype(index["dtype"])
        out = {}
        for split in SPLITS:
            meta = index["splits"][split]
            path = folder / meta["file"]
            size, want = path.stat().st_size, meta["tokens"] * dtype.itemsize
            if size != want:
                raise Damaged(f"{path.name} has {size} bytes, expected {want}")
            if check_digests and xxh3_file(path) != meta["xxh3_128"]:
                raise Damaged(f"{path.name} does not match its checksum")
            ids = (
                np.memmap(path, dtype=dtype, mode="r", shape=(meta["tokens"],))
                if meta["tokens"]
                else np.zeros(0, dtype)  # mmap refuses an empty file
            )
            out[split] = TokenSplit(ids, meta["bytes"], meta["documents"])
        return out
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise Damaged(f"{type(err).__name__}: {err}") from None


def _sample(split: SplitText) -> str:
    """The first SAMPLE_CHARS characters of a split (what `Encoder` checks itself on)."""
    parts, n = [], 0
    for text, _ in split.chunks():
        parts.append(text)
        n += len(text)
        if n >= SAMPLE_CHARS:
            break
    return "".join(parts)[:SAMPLE_CHARS]


def _build(
    folder: Path,
    splits: dict[str, SplitText],
    sources: dict[str, str],
    tokenizer: Any,
    report: Report | None,
) -> bool:
    """Write the entry under a temp name and rename it to `folder`; False when another
    writer's copy was there first (see `io.replace_dir`)."""
    encoder = Encoder.for_tokenizer(tokenizer, _sample(splits["train"]))
    if not encoder.exact and report:
        report({"warning": "this tokenizer encodes a text cut at spaces differently from the "
                "whole text; ids may differ from one whole-text encode at 1 MiB segment ends"})  # fmt: skip
    dtype = token_dtype(len(tokenizer))
    tmp = make_temp_dir(folder)
    try:
        metas = {
            split: _write_split(tmp / f"{split}.bin", splits[split], encoder, dtype, report)
            | {"source": sources[split]}
            for split in SPLITS
        }
        index = {
            "format": FORMAT,
            "dtype": dtype.str,
            "vocab_size": len(tokenizer),
            "tokenizer": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest(),
            "encoder": encoder.fingerprint(),
            "splits": metas,
        }
        (tmp / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
        return replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_split(
    path: Path, split: SplitText, encoder: Encoder, dtype: np.dtype, report: Report | None
) -> dict[str, Any]:
    """Encode one split into `path`; its index entry."""
    counts = {"bytes": 0, "documents": 0}

    def texts() -> Iterator[str]:
        for text, docs in split.chunks():
            counts["documents"] += docs
            yield text

    def utf8() -> Iterator[bytes]:  # the byte tokenizer: text files are never decoded
        for data, docs in split.byte_chunks():
            counts["documents"] += docs
            yield data

    tokens = 0
    limit = np.iinfo(dtype).max
    total = split.size()
    rate, last = Rate(), [0.0]

    def progress(done: int) -> None:
        now = time.perf_counter()
        if report and now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            mb = done / 1e6
            report({"step": int(mb), "total": int(total / 1e6) if total else None,
                    "info": f"tokenizing {split.name}: {mb:,.0f} MB, {rate.mb_per_s(done):.1f} MB/s"})  # fmt: skip

    encoded = (
        encoder.encode_utf8(utf8(), progress)
        if encoder.byte_level
        else encoder.encode(texts(), progress)
    )
    with open(path, "wb") as out, _HashingWriter(out) as writer:
        for ids, n_bytes in encoded:
            if ids.dtype != dtype and ids.size and int(ids.max()) > limit:
                raise ScalelabError(f"token id {int(ids.max())} does not fit {dtype.name}")
            block = np.ascontiguousarray(ids, dtype=dtype)
            writer.put(block)
            tokens += block.size
            counts["bytes"] += n_bytes
        digest = writer.finish()
    return {"file": path.name, "tokens": tokens, "xxh3_128": digest, **counts}


def xxh3_file(path: Path) -> str:
    """Hex XXH3-128 of one file, hashed through a read-only memory map (no copies: ~10 GB/s
    from the page cache here, 5x reading it in chunks)."""
    import mmap

    import xxhash

    with open(path, "rb") as f:
        if not path.stat().st_size:  # mmap refuses an empty file
            return xxhash.xxh3_128(b"").hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return xxhash.xxh3_128(view).hexdigest()


class _HashingWriter:
    """Appends blocks to `out` and hashes them (XXH3-128) in a second thread, so reading and
    encoding the next block overlap the hashing and writing of this one (both release the
    GIL). At most `depth` blocks wait; a write error is raised by the next `put` or
    `finish`. Leaving the `with` block always stops the thread."""

    def __init__(self, out: Any, depth: int = 2) -> None:
        import xxhash

        self.out, self.digest = out, xxhash.xxh3_128()
        self.blocks: queue.Queue[np.ndarray | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="token-writer", daemon=True)

    def __enter__(self) -> _HashingWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        while (block := self.blocks.get()) is not None:
            if self.error is None:  # after an error, drain so `put` never blocks forever
                try:
                    self.digest.update(block)
                    self.out.write(block.data)
                except BaseException as err:  # handed to the main thread
                    self.error = err

    def put(self, block: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.blocks.put(block)

    def finish(self) -> str:
        """Wait for every block; the hex XXH3-128 of all of them."""
        self._stop()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest()

    def _stop(self) -> None:
        if self.thread.is_alive():
            self.blocks.put(None)
            self.thread.join()

    def __exit__(self, *exc: object) -> None:
        self._stop()
