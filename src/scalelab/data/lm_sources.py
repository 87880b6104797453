"""The raw text of a language-modelling corpus, per split, read as a stream of chunks.

A split is a list of readers (a text file, a line range of one, a JSONL or parquet file of
records, or documents already in memory); its text is the readers' documents joined with a
separator. Nothing here holds a whole split: `SplitText.chunks()` yields pieces of about
`CHUNK_CHARS` characters, and their concatenation is exactly the text the whole-file
loaders produced before (so token ids do not change):

* a registered dataset's own train/valid/test files: each file's text as is;
* a registered dataset read as documents (news2017, shakespeare): documents joined with a
  blank line, cut into contiguous 90/5/5 blocks;
* one local text file: its lines (`str.splitlines` semantics) cut into 90/5/5 blocks;
* a local folder: `train`/`valid(ation)`/`test` files (`.txt`, `.raw`, `.tokens`, `.gz`),
  or shards (`train-00000.jsonl.gz`, `train/part-1.parquet`, ...), or the globs of the
  task's `files:`; several files, or the records of JSONL/parquet files, are documents
  joined with a blank line. Records give their `text_field` (default `text`).

`SplitText.byte_chunks()` gives the same text as UTF-8 bytes, reading whole text files
without decoding them (checked as UTF-8 all the same): the byte tokenizer's ids are those
bytes.

Each split has a `digest`: sha256 over what it is read from (file digests, line ranges,
field names, separators), the key of the token cache.
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scalelab.data.sources import sha256_file_cached
from scalelab.errors import ScalelabError, clip

SPLITS = ("train", "validation", "test")
CHUNK_CHARS = 1 << 20  # characters per chunk a reader yields
DOC_SEP = "\n\n"  # between documents (files, records) of one split
_SPLIT_ALIASES = {"train": "train", "valid": "validation", "validation": "validation",
                  "val": "validation", "dev": "validation", "test": "test"}  # fmt: skip
TEXT_SUFFIXES = (".txt", ".raw", ".tokens", "")
RECORD_SUFFIXES = (".jsonl", ".parquet")
_COMPRESSED = (".gz", ".bz2")
HUB_PREFIX = "hub:"  # a task dataset `hub:<repo>[:<config>]` streams from the Hugging Face Hub


def _open_text(path: Path) -> IO[str]:
    """A text stream of a (.gz/.bz2) UTF-8 file with universal newlines, as `read_text`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _read_error(path: Path, exc: BaseException) -> ScalelabError:
    text = str(exc).strip().splitlines()
    return ScalelabError(f"cannot read {clip(path)}: {clip(text[0] if text else exc, 160)}")


def _text_chunks(path: Path) -> Iterator[str]:
    """The text of a UTF-8 file in chunks, with universal newlines (`\r\n` and `\r` ->
    `\n`, what text mode and `read_text` give), decoded from binary reads: text mode's
    newline translation was the slowest step of reading."""
    return _file_chunks(path, as_bytes=False)


def _utf8_chunks(path: Path) -> Iterator[bytes]:
    """`_text_chunks` as UTF-8 bytes, without building the text: each read is checked by
    the same incremental decoder (an invalid file fails as it does there) and its newlines
    translated on the bytes (`\r` is never part of a multi-byte UTF-8 character), so the
    chunks joined equal `"".join(_text_chunks(path)).encode()`."""
    return _file_chunks(path, as_bytes=True)


def _file_chunks(path: Path, as_bytes: bool) -> Iterator:
    decoder = codecs.getincrementaldecoder("utf-8")()
    cr, crlf, lf = ("\r", "\r\n", "\n") if not as_bytes else (b"\r", b"\r\n", b"\n")
    held = cr[:0]  # a final "\r" waits: the next chunk may start with its "\n"
    try:
        with _open_binary(path) as f:
            while True:
                raw = f.read(CHUNK_CHARS)
                text = decoder.decode(raw, final=not raw)  # checks the bytes either way
                if as_bytes:
                    text = raw
                text = held + text if held else text
                held = cr[:0]
                if text.endswith(cr) and raw:
                    text, held = text[:-1], cr
                if cr in text:
                    text = text.replace(crlf, lf).replace(cr, lf)
                if text:
                    yield text
                if not raw:
                    return
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise _read_error(path, exc) from None


def iter_lines(chunks: Iterator[str]) -> Iterator[list[str]]:
    """Lists of lines (`str.splitlines(keepends=True)` of the whole text) from text chunks.

    The last line of each chunk waits for the next one: it may go on there, or be a `\\r`
    whose `\\n` starts the next chunk."""
    carry = ""
    for chunk in chunks:
        lines = (carry + chunk).splitlines(keepends=True)
        carry = lines.pop() if lines else ""
        if lines:
            yield lines
    if carry:
        yield [carry]


@dataclass(frozen=True)
class TextFile:
    """A text file as one document, or (with `lines`) the line range [start, stop) of it,
    each line a document joined with nothing (the file's own newlines)."""

    path: Path
    lines: tuple[int, int] | None = None

    def key(self) -> str:
        return f"text {sha256_file_cached(self.path)} {self.lines}"

    def size(self) -> int | None:
        return None if self.path.suffix in _COMPRESSED else self.path.stat().st_size

    def chunks(self, sep: str) -> Iterator[tuple[str, bool, int]]:
        if self.lines is None:
            return _one_document(_text_chunks(self.path), "")
        return self._line_chunks()

    def byte_chunks(self, sep: bytes) -> Iterator[tuple[bytes, bool, int]]:
        """`chunks` as UTF-8 bytes; a whole file is never decoded to text (the byte
        tokenizer's path; see `_utf8_chunks`)."""
        if self.lines is None:
            return _one_document(_utf8_chunks(self.path), b"")
        return _encoded(self._line_chunks())

    def _line_chunks(self) -> Iterator[tuple[str, bool, int]]:
        start, stop, seen = *self.lines, 0
        for lines in iter_lines(_text_chunks(self.path)):
            lo, hi = max(start - seen, 0), min(stop - seen, len(lines))
            if lo < hi:  # lines are joined with nothing: the split's `sep` is ""
                yield "".join(lines[lo:hi]), True, hi - lo
            seen += len(lines)
            if seen >= stop:
                return


def _one_document(chunks: Iterator, empty: str | bytes) -> Iterator[tuple]:
    """A file's chunks as one document: (chunk, begins it, documents begun)."""
    first = True
    for chunk in chunks:
        yield chunk, first, int(first)
        first = False
    if first:  # an empty file is still a (empty) document
        yield empty, True, 1


def _encoded(chunks: Iterator[tuple[str, bool, int]]) -> Iterator[tuple[bytes, bool, int]]:
    for text, new_doc, docs in chunks:
        yield text.encode(), new_doc, docs


def count_lines(path: Path) -> int:
    """Lines of a text file, as `len(read_text(path).splitlines())`, read in chunks."""
    return sum(len(lines) for lines in iter_lines(_text_chunks(path)))


def document_chunks(texts: Iterator[str], sep: str) -> Iterator[tuple[str, bool, int]]:
    """Documents joined by `sep` into chunks of about CHUNK_CHARS characters: (text, ends at
    a document boundary (always True here), documents in the chunk)."""
    batch: list[str] = []
    chars = 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= CHUNK_CHARS:
            yield sep.join(batch), True, len(batch)
            batch, chars = [], 0
    if batch:
        yield sep.join(batch), True, len(batch)


@dataclass(frozen=True)
class RecordFile:
    """A JSONL (.gz/.bz2) or parquet file: each record's `field` is a document."""

    path: Path
    field: str

    def key(self) -> str:
        return f"records {sha256_file_cached(self.path)} {self.field!r}"

    def size(self) -> int | None:
        return None

    def chunks(self, sep: str) -> Iterator[tuple[str, bool, int]]:
        return document_chunks(self._texts(), sep)

    def _texts(self) -> Iterator[str]:
        name = self.path.name.removesuffix(".gz").removesuffix(".bz2")
        if name.endswith(".parquet"):
            yield from self._parquet()
            return
        try:
            with _open_text(self.path) as f:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        yield self._field(self._record(line, number), number)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise _read_error(self.path, exc) from None

    def _record(self, line: str, number: int) -> object:
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:  # its own position is within the line
            raise ScalelabError(
                f"{clip(self.path)} line {number}: not a JSON record ({exc.msg} at column "
                f"{exc.colno})"
            ) from None

    def _field(self, record: object, number: int) -> str:
        if not isinstance(record, dict) or self.field not in record:
            raise ScalelabError(
                f"{clip(self.path)} line {number}: no field {self.field!r} (task.text_field)"
            )
        value = record[self.field]
        return value if isinstance(value, str) else str(value)

    def _parquet(self) -> Iterator[str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(self.path)
            if self.field not in table.schema_arrow.names:
                raise ScalelabError(
                    f"{clip(self.path)}: no column {self.field!r} (task.text_field)"
                )
            for batch in table.iter_batches(batch_size=4096, columns=[self.field]):
                for value in batch.column(0).to_pylist():
                    yield value if isinstance(value, str) else str(value)
        except (OSError, pa.ArrowException) as exc:
            raise _read_error(self.path, exc) from None


@dataclass(frozen=True)
class Documents:
    """Documents already in memory (a catalog reader's output; small by construction)."""

    docs: tuple[str, ...]

    def key(self) -> str:
        h = hashlib.sha256()
        for doc in self.docs:
            h.update(hashlib.sha256(doc.encode()).digest())
        return f"docs {h.hexdigest()}"

    def size(self) -> int | None:
        return sum(len(d.encode()) for d in self.docs)

    def chunks(self, sep: str) -> Iterator[tuple[str, bool, int]]:
        for doc in self.docs:
            yield doc, True, 1


@dataclass(frozen=True)
class HubStream:
    """One split of a Hugging Face dataset, streamed (`datasets.load_dataset(...,
    streaming=True)`: records arrive as they download, nothing is stored whole): each
    record's `field` is a document. `repo` is a Hub id (or a local dataset folder, which
    `datasets` streams the same way); its revision (commit sha) keys the token cache."""

    repo: str
    config: str | None
    split: str
    field: str

    def key(self) -> str:
        return (
            f"hub {self.repo} {self.config} {self.split} {self.field!r} {hub_revision(self.repo)}"
        )

    def size(self) -> int | None:
        return None

    def chunks(self, sep: str) -> Iterator[tuple[str, bool, int]]:
        return document_chunks(self._texts(), sep)

    def _texts(self) -> Iterator[str]:
        import datasets

        where = f"hub:{self.repo} split {self.split!r}"
        try:
            stream = datasets.load_dataset(self.repo, self.config, split=self.split, streaming=True)
            for number, record in enumerate(stream, 1):
                if self.field not in record:
                    raise ScalelabError(f"{where} record {number}: no field {self.field!r}")
                value = record[self.field]
                yield value if isinstance(value, str) else str(value)
        except ScalelabError:
            raise
        except Exception as exc:  # network and missing-dataset errors alike are user-facing
            raise _read_error(Path(where), exc) from None


def hub_revision(repo: str) -> str:
    """The commit sha of a Hub dataset (a local folder: the digest of its files)."""
    if Path(repo).expanduser().is_dir():
        from scalelab.data.sources import sha256_folder

        return sha256_folder(Path(repo).expanduser())
    from huggingface_hub import HfApi

    try:
        return str(HfApi().dataset_info(repo).sha)
    except Exception as exc:  # offline, unknown or gated dataset: one line
        raise _read_error(Path(f"hub:{repo}"), exc) from None


def hub_splits(dataset: str, names: dict[str, str] | None, text_field: str) -> dict[str, SplitText]:
    """`hub:<repo>[:<config>]` streamed; `names` maps split -> the Hub's split name."""
    repo, _, config = dataset.removeprefix(HUB_PREFIX).partition(":")
    names = names or {s: s for s in SPLITS}
    return {
        s: SplitText(s, (HubStream(repo, config or None, names[s], text_field),)) for s in SPLITS
    }


Reader = TextFile | RecordFile | Documents | HubStream


@dataclass(frozen=True)
class SplitText:
    """One split: its readers' documents joined with `sep` (see the module docstring)."""

    name: str
    readers: tuple[Reader, ...]
    sep: str = DOC_SEP

    def digest(self) -> str:
        """sha256 (hex) over what the split is read from and how. Each file's sha256 is
        remembered by path, size and mtime (`sources.sha256_file_cached`), so the run id and
        the token cache hash a corpus once, not at every run start."""
        h = hashlib.sha256(f"split-v1 {self.sep!r}".encode())
        for reader in self.readers:
            h.update(reader.key().encode())
        return h.hexdigest()

    def size(self) -> int | None:
        """Bytes of text to read, when cheap to know (plain text files), for progress."""
        sizes = [r.size() for r in self.readers]
        return None if None in sizes else sum(s or 0 for s in sizes)

    def chunks(self) -> Iterator[tuple[str, int]]:
        """(text, documents begun in it): joined, the split's text; summed, its documents.

        Each reader yields (text, begins a document, documents begun); `sep` goes before
        every document but the first."""
        first = True
        for reader in self.readers:
            for text, new_doc, docs in reader.chunks(self.sep):
                if new_doc and not first:
                    text = self.sep + text
                first = first and not new_doc
                yield text, docs

    def byte_chunks(self) -> Iterator[tuple[bytes, int]]:
        """`chunks()` as UTF-8 bytes: joined, `self.text().encode()`. Whole text files are
        read as bytes and never decoded (checked as UTF-8 all the same); other readers'
        text is encoded chunk by chunk."""
        sep, first = self.sep.encode(), True
        for reader in self.readers:
            own = getattr(reader, "byte_chunks", None)
            pieces = own(sep) if own else _encoded(reader.chunks(self.sep))
            for data, new_doc, docs in pieces:
                if new_doc and not first:
                    data = sep + data
                first = first and not new_doc
                yield data, docs

    def text(self) -> str:
        """The whole split as one string: for small corpora and tests only."""
        return "".join(text for text, _ in self.chunks())


# --- finding the files of a split ----------------------------------------------------------


def _strip(name: str) -> str:
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return name


def reader_for(path: Path, text_field: str) -> Reader:
    """A RecordFile for .jsonl/.parquet (optionally .gz/.bz2), else a TextFile."""
    if _strip(path.name).endswith(RECORD_SUFFIXES):
        return RecordFile(path, text_field)
    return TextFile(path)


def folder_split_files(folder: Path) -> dict[str, list[Path]]:
    """split -> files of a corpus folder: a `train.txt`-style file (the first by name; text
    before `train.jsonl` / `train.parquet`), else shards `train-*` / `train_*`, else the
    data files under a `train/` subfolder (sorted)."""
    found: dict[str, list[Path]] = {}
    entries = sorted(folder.iterdir())
    for suffixes in (TEXT_SUFFIXES, RECORD_SUFFIXES):  # `train.txt` before `train.jsonl`
        for p in entries:  # one file per split: `train.txt`, `valid.raw.gz`, `test.jsonl`
            stem = p.name.split(".")[0]
            split = _SPLIT_ALIASES.get(stem.lower())
            if split and p.is_file() and _strip(p.name[len(stem) :]) in suffixes:
                found.setdefault(split, [p])
    shards: dict[str, list[Path]] = {}
    for p in entries:
        head = p.name.replace("_", "-").split("-")[0].split(".")[0]
        split = _SPLIT_ALIASES.get(head.lower())
        if not split or split in found:
            continue
        if p.is_file() and p.name[len(head) : len(head) + 1] in ("-", "_") and _is_data(p):
            shards.setdefault(split, []).append(p)
        elif p.is_dir() and p.name == head:
            shards.setdefault(split, []).extend(
                f for f in sorted(p.rglob("*")) if f.is_file() and _is_data(f)
            )
    return found | {s: files for s, files in shards.items() if files}


def _is_data(path: Path) -> bool:
    """A text or record file by its name (hidden files, e.g. temps, are not)."""
    name = _strip(path.name)
    return not name.startswith(".") and name.endswith((".txt", ".raw", ".tokens", *RECORD_SUFFIXES))


def glob_files(folder: Path, pattern: str, where: str) -> list[Path]:
    """Files matching `pattern` (relative to `folder`, or absolute), sorted; none is a
    ScalelabError naming `where`."""
    full = pattern if Path(pattern).expanduser().is_absolute() else str(folder / pattern)
    files = sorted(Path(p) for p in glob.glob(str(Path(full).expanduser()), recursive=True))
    files = [p for p in files if p.is_file()]
    if not files:
        raise ScalelabError(f"{where}: no file matches {clip(pattern)!r} in {clip(folder)}")
    return files


def folder_splits(
    folder: Path, files: dict[str, str] | None = None, text_field: str = "text"
) -> dict[str, SplitText]:
    """The splits of a local corpus folder (see the module docstring)."""
    if files:
        by_split = {s: glob_files(folder, files[s], f"task.files.{s}") for s in SPLITS}
    else:
        by_split = folder_split_files(folder)
        if missing := [s for s in SPLITS if s not in by_split]:
            raise ScalelabError(
                f"{folder} needs train/valid/test text files (train.txt, valid.txt, test.txt) "
                f"or shards (train-00000.jsonl, ...); missing: {', '.join(missing)}"
            )
    return {s: SplitText(s, tuple(reader_for(p, text_field) for p in by_split[s])) for s in SPLITS}


def line_splits(path: Path, cut) -> dict[str, SplitText]:
    """One text file cut by lines: `cut(n_lines)` gives split -> (start, stop)."""
    ranges = cut(count_lines(path))
    return {s: SplitText(s, (TextFile(path, ranges[s]),), sep="") for s in SPLITS}
