"""Task kinds: what a task entry in a spec may contain, per kind.

A task is data plus how it is presented to a model (tokenizer, sequence length, eval
windows). Kinds register a strict pydantic model; the kind of a registered dataset comes
from the catalog, so `tasks: {dataset: wikitext2}` needs no `kind:`.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from scalelab.config import Strict, check_path_text, path_error, stat_or_none, validate
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError, clip, shown
from scalelab.registry import Registry

TASK_KINDS: Registry[type[Strict]] = Registry("task kind")
# kind -> the catalog kinds whose datasets it also reads (mcqa reads multiple_choice data)
READS_KINDS: dict[str, tuple[str, ...]] = {}

# 128k tokens: the longest context of common open models; far beyond what a ladder model
# trains on, and a bound on the memory one sequence's attention takes.
MAX_SEQ_LEN = 131_072
SNIFF_BYTES = 65_536  # bytes of a local text file checked for UTF-8 at spec time
# Files read as bytes, not text: their content is checked when a run reads them.
_BINARY_SUFFIXES = (".gz", ".bz2", ".parquet")
# Up to this size a local LM file is split at spec time to check each split's length.
_SPLIT_CHECK_BYTES = 16 * 2**20
MC_TASK_SUFFIXES = (".yaml", ".yml")  # a local dataset that is a multiple-choice task file


def register_task_kind(kind: str, model: type[Strict], reads: tuple[str, ...] = ()) -> type[Strict]:
    """Register a task kind; `reads`: catalog dataset kinds it also takes (with `kind:`
    given in the entry), besides its own."""
    READS_KINDS[kind] = reads
    return TASK_KINDS.register(kind, model)


class EvalWindow(Strict):
    """Sliding-window perplexity (the transformers perplexity guide).

    window: tokens of context per forward pass (default: the task's seq_len);
    stride: tokens the window advances (default: window // 2); each token is scored once,
    with up to window-1 tokens of context. max_tokens caps the tokens scored (None = all).
    """

    window: PositiveInt | None = None
    stride: PositiveInt | None = None
    max_tokens: PositiveInt | None = None


class LMTask(Strict):
    """Language modelling on a text corpus (registered name or local file/folder).

    dataset: a registered name, a local file or folder, or `hub:<org/name>[:<config>]`
    (streamed from the Hugging Face Hub when online).
    files: split -> glob (relative to the `dataset` folder, or absolute) of its text,
    JSONL or parquet files (optionally .gz/.bz2), read in name order; default: the
    folder's `train.txt`-style files or `train-*` shards (`data/lm_sources.py`). For a
    `hub:` dataset: split -> the Hub's split name (default train/validation/test).
    text_field: the field of JSONL/parquet records that holds the text.
    max_train_tokens: train on the first N tokens of the train split only (a data-budget
    axis without copying files); more than the split holds is an error.
    The three are left out of run ids at their defaults (`ID_OMIT_DEFAULTS`), so runs
    stored before they existed keep their ids.
    """

    ID_OMIT_DEFAULTS: ClassVar[frozenset[str]] = frozenset(
        {"files", "text_field", "max_train_tokens"}
    )

    kind: Literal["lm"] = "lm"
    dataset: str
    tokenizer: TokenizerSpec = TokenizerSpec(kind="bpe", vocab_size=1024)
    seq_len: PositiveInt = Field(128, le=MAX_SEQ_LEN)
    eval: EvalWindow = EvalWindow()
    files: dict[Literal["train", "validation", "test"], str] | None = None
    text_field: str = Field("text", min_length=1)
    max_train_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _check(self) -> LMTask:
        window = self.eval.window or self.seq_len
        if window > self.seq_len:
            raise ValueError(f"eval.window ({window}) cannot exceed seq_len ({self.seq_len})")
        if self.eval.stride and self.eval.stride > window:
            raise ValueError(
                f"eval.stride ({self.eval.stride}) cannot exceed the window ({window})"
            )
        if self.files is not None and not self.dataset.startswith("hub:"):
            _check_globs(self.dataset, self.files)
        else:
            _check_local_corpus(self.dataset, self.seq_len)
        self.tokenizer.check_available()
        return self


def _check_globs(dataset: str, files: dict[str, str]) -> None:
    """`files:` needs a folder `dataset` and a glob for every split that matches a file."""
    from scalelab.data.lm_sources import SPLITS, glob_files

    if missing := [s for s in SPLITS if s not in files]:
        raise ValueError(f"files: needs a glob for every split; missing: {', '.join(missing)}")
    path = check_path_text(dataset)
    if not path.is_dir():
        raise ValueError(f"files: globs need a folder as dataset (got {shown(dataset)})")
    for split in SPLITS:
        try:
            glob_files(path, files[split], f"files.{split}")
        except ScalelabError as err:
            raise ValueError(str(err)) from None


def _check_local_corpus(dataset: str, seq_len: int) -> None:
    """A local corpus (one file, or a folder of split files) must give every split one
    window of text, or the run fails after loading. Checked in bytes: every tokenizer
    scalelab uses (byte-level, BPE, pretrained) has at least one byte per token, less one
    for a SentencePiece-style leading space, so a split of fewer than seq_len bytes
    certainly has fewer than the seq_len + 1 tokens a window needs. Registered datasets, compressed and large files are left to the
    run's own check (`_split_bytes` says why)."""
    from scalelab.data.catalog import DATASETS

    if dataset in DATASETS:
        return
    try:
        path = check_path_text(dataset)
    except ValueError:  # not a usable path: task_entry has said why
        return
    sizes = _split_bytes(path)
    short = [f"{split} {n}" for split, n in sizes.items() if n < seq_len]
    if short:
        raise ValueError(
            f"dataset {clip(dataset, 60)}: a split has fewer bytes than seq_len ({seq_len}), "
            f"so less than one window: {', '.join(short)} bytes"
            + ("" if path.is_dir() else " (one file is cut by lines into 90/5/5 blocks)")
            + "; add text or lower seq_len"
        )


def _split_bytes(path: Path) -> dict[str, int]:
    """split -> bytes (a lower bound of its text) of a local LM corpus: a one-file corpus
    cut into splits as the loader cuts it (the user cannot see that one is short), or a
    folder's uncompressed split files (an empty `valid.txt`). Splits not cheap to know
    (compressed, a file over _SPLIT_CHECK_BYTES) are left out: a short one fails its runs,
    each with one line (the run's own check), while the others run. Raises ValueError for
    a folder that lacks a split file."""
    info = stat_or_none(path)
    if info is None:
        return {}
    if stat.S_ISDIR(info.st_mode):
        from scalelab.data.lm_sources import SPLITS, folder_split_files

        files = folder_split_files(path)
        if missing := [s for s in SPLITS if s not in files]:
            raise ValueError(
                f"dataset folder {clip(path, 60)} needs train/valid/test text files "
                f"(train.txt, valid.txt, test.txt) or shards (train-00000.jsonl, ...); "
                f"missing: {', '.join(missing)}"
            )
        # Uncompressed files hold at least as many bytes as their text (JSONL adds markup),
        # so their summed size is a safe lower bound; compressed splits are left to the run.
        return {
            split: sum(f.stat().st_size for f in split_files)
            for split, split_files in files.items()
            if not any(f.name.endswith(_BINARY_SUFFIXES) for f in split_files)
        }
    if path.suffix in _BINARY_SUFFIXES or info.st_size > _SPLIT_CHECK_BYTES:
        return {}
    return dict(_file_split_bytes(str(path), info.st_size, info.st_mtime_ns))


@lru_cache(maxsize=32)
def _file_split_bytes(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, int], ...]:
    """Bytes per split of one text file cut by lines as `loaders.load_lm_text` cuts it
    (cached by path, size and modification time: each swept seq_len re-validates)."""
    from scalelab.data.loaders import contiguous_split

    with open(path, "rb") as f:
        data = f.read()
    try:  # str.splitlines, as the loader: it also cuts at \x0c, \u2028, ...
        lines = data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"dataset file {clip(path, 60)} is not UTF-8 text (byte 0x{data[err.start]:02x} "
            f"at offset {err.start})"
        ) from None
    parts = contiguous_split([len(line.encode()) for line in lines])
    return tuple((split, sum(parts[split])) for split in ("train", "validation", "test"))


register_task_kind("lm", LMTask)


class MultipleChoiceTask(Strict):
    """A multiple-choice task defined by one YAML in lm-eval's terms
    (`data/multiple_choice.py`): `dataset` is a built-in task name (`piqa`, `mmlu`, ...)
    or the path of a task YAML. Shots and a doc limit are the evaluating method's params.
    Checked at spec time: the YAML, its keys, templates and dataset (no data is read)."""

    kind: Literal["multiple_choice"] = "multiple_choice"
    dataset: str

    @field_validator("dataset")
    @classmethod
    def _loads(cls, value: str) -> str:
        from scalelab.data.multiple_choice import load_mc_task

        try:
            load_mc_task(value)
        except ScalelabError as err:
            raise ValueError(str(err)) from None
        return value


register_task_kind("multiple_choice", MultipleChoiceTask)


def local_data_identity(task) -> str | None:
    """What a run id records of a local dataset's content (None for a registered dataset,
    whose archive is pinned, or a Hub one, keyed by its revision): the sha256 of the file or
    of every file under the folder, or with `task.files` of the files its globs match. So
    editing a corpus in place reruns the runs that read it (`sources.local_data_digest`). A
    multiple-choice task: its fingerprint (the task YAML, built-in or not, and its data)."""
    from scalelab.data.catalog import DATASETS
    from scalelab.data.sources import local_data_digest, sha256_file_cached

    dataset = task.dataset
    if getattr(task, "kind", None) == "multiple_choice":  # its YAML and data, or pins
        from scalelab.data.multiple_choice import load_mc_task

        return load_mc_task(dataset).fingerprint
    if dataset in DATASETS or dataset.startswith("hub:"):
        return None
    folder = Path(dataset)
    files = getattr(task, "files", None)
    if not files:
        return hashlib.sha256(local_data_digest(folder).encode()).hexdigest()
    # `files:` globs: the files they match and nothing else in the folder (results written
    # beside a corpus must not change the ids of the runs that read it).
    from scalelab.data.lm_sources import glob_files

    parts = []
    for split, pattern in sorted(files.items()):
        found = glob_files(folder, pattern, f"task.files.{split}")
        parts += [f"{split}\t{f.name}\t{sha256_file_cached(f)}" for f in found]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def dataset_kind(dataset: str) -> str | None:
    """The kind of a registered dataset; None for a usable local file or folder.

    Raises ScalelabError for an unknown name, and for a local path that does not exist,
    cannot be a path (NUL, too long), is neither a regular file nor a folder (a device such
    as /dev/null, a FIFO), is not readable, is empty, or (text formats) is not UTF-8 text.
    """
    from scalelab.data.catalog import DATASETS

    if dataset in DATASETS:
        return DATASETS.get(dataset).kind
    if dataset.startswith("hub:"):
        return _check_hub(dataset)
    try:
        path = check_path_text(dataset)
        info = stat_or_none(path)
    except ValueError as err:
        raise path_error(dataset, err) from None
    if info is not None:
        _check_local_data(path, info)
        return None
    if "/" in dataset or path.suffix:
        raise ScalelabError(f"dataset file {clip(path)} does not exist")
    known = ", ".join(DATASETS)
    raise ScalelabError(
        f"unknown dataset {shown(dataset)} (known: {known}; or a path to a local file)"
    )


def _check_hub(dataset: str) -> None:
    """`hub:<repo>[:<config>]` (an LM corpus streamed from the Hub) needs the Hub now."""
    from scalelab.data.sources import hub_reachable

    if not re.fullmatch(r"hub:[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?", dataset):
        raise ScalelabError(f"dataset {shown(dataset)}: expected hub:<org/name>[:<config>]")
    if not hub_reachable():
        raise ScalelabError(
            f"dataset {shown(dataset)} streams from the Hugging Face Hub, which is unreachable"
        )
    return None


def _check_local_data(path: Path, info: os.stat_result) -> None:
    """Refuse local data that no run could read (see `dataset_kind`)."""
    if stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise ScalelabError(f"dataset folder {clip(path)} is not readable")
        return
    if not stat.S_ISREG(info.st_mode):
        raise ScalelabError(f"dataset {clip(path)} is not a regular file or a folder")
    if info.st_size == 0:
        raise ScalelabError(f"dataset file {clip(path)} is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as err:
        raise ScalelabError(f"dataset file {clip(path)} is not readable: {err.strerror}") from None
    if path.suffix not in _BINARY_SUFFIXES and (problem := _not_text(head)):
        raise ScalelabError(f"dataset file {clip(path)} is not UTF-8 text ({problem})")


def _check_table_files(path: Path, where: str) -> None:
    """Local labelled data is a table file (.jsonl, .csv, ... optionally compressed) or a
    folder with a train table; anything else no run can read. Raises ScalelabError."""
    from scalelab.data.loaders import TABLE_SUFFIXES, split_files, table_name

    suffixes = ", ".join(TABLE_SUFFIXES)
    if path.is_dir():
        if "train" not in split_files(path, TABLE_SUFFIXES):
            raise ScalelabError(f"{where}: folder {clip(path)} has no train table ({suffixes})")
    elif not table_name(path).endswith(TABLE_SUFFIXES):
        raise ScalelabError(f"{where}: {clip(path)} is not a table file ({suffixes})")


def _not_text(head: bytes) -> str | None:
    """Why the first bytes of a file are not UTF-8 text; None if they are (a character cut
    at the end of `head` is fine: the file goes on)."""
    if (nul := head.find(b"\0")) >= 0:
        return f"a NUL byte at offset {nul}"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as err:
        return f"byte 0x{head[err.start]:02x} at offset {err.start}"
    return None


def task_entry(raw: Any, where: str) -> tuple[dict[str, Any], type[Strict]]:
    """(the entry as a dict with its `kind` filled in, that kind's model), unvalidated."""
    if isinstance(raw, str):
        raw = {"dataset": raw}
    if not isinstance(raw, dict):
        raise ScalelabError(f"{where}: expected a mapping or a dataset name (got {shown(raw)})")
    if "dataset" not in raw:
        raise ScalelabError(f"{where}.dataset: field required")
    try:
        inferred = dataset_kind(str(raw["dataset"]))  # also checks that the dataset exists
    except ScalelabError as err:
        raise ScalelabError(f"{where}.dataset: {err}") from None
    kind = raw.get("kind") or inferred
    if kind is None and str(raw["dataset"]).endswith(MC_TASK_SUFFIXES):
        kind = "multiple_choice"  # a task YAML names its dataset itself
    if kind is None:
        raise ScalelabError(
            f"{where}.kind: required for a local dataset (one of {', '.join(TASK_KINDS)})"
        )
    if not isinstance(kind, str) or kind not in TASK_KINDS:
        raise ScalelabError(
            f"{where}.kind: unknown task kind {shown(kind)} (known: {', '.join(TASK_KINDS)})"
        )
    if inferred is not None and raw.get("kind") and kind != inferred \
            and inferred not in READS_KINDS.get(kind, ()):  # fmt: skip
        also = [k for k, reads in READS_KINDS.items() if inferred in reads]
        raise ScalelabError(
            f"{where}.kind: dataset {shown(raw['dataset'])} is a {inferred} dataset, "
            f"not {shown(kind)} (leave kind out" + "".join(f", or kind: {k}" for k in also) + ")"
        )
    if not raw.get("kind"):  # keys of another kind reading this dataset: say which
        unknown = sorted(set(raw) - set(TASK_KINDS.get(kind).model_fields))
        for other, reads in READS_KINDS.items():
            if (
                unknown
                and kind in reads
                and set(unknown) <= set(TASK_KINDS.get(other).model_fields)
            ):
                raise ScalelabError(
                    f"{where}.{unknown[0]}: not a key of a {kind} task; it is one of kind "
                    f"{other}: add `kind: {other}`"
                )
    if inferred is None and kind == "classification":
        _check_table_files(Path(str(raw["dataset"])).expanduser(), f"{where}.dataset")
    return {**raw, "kind": kind}, TASK_KINDS.get(kind)


def parse_task(raw: Any, where: str) -> Strict:
    """Validate one task entry (dict, or a bare dataset name) into its kind's model. Keys
    of another kind that reads the same dataset (`train_size` on openbookqa, a
    multiple_choice dataset) say which `kind:` they need."""
    entry, model = task_entry(raw, where)
    return validate(model, entry, where)
