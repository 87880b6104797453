"""Load datasets (registered names or local paths) as raw LM text or labelled examples.

Fixed splits, so every run of every method sees the same examples:

* LM text: a dataset's own train/validation/test files where it has them; otherwise the
  documents (or, for one local .txt file, the lines) are cut into contiguous 90/5/5
  blocks, in file order. Contiguous blocks keep documents whole and avoid leaking
  neighbouring sentences between splits.
* Classification: the dataset's own splits where they exist; a missing validation (or
  test) split is carved out of train with a stratified 10% split (seed 0); a dataset with
  no splits gets a stratified 80/10/10 split (seed 0) after dropping empty and duplicate
  texts (duplicates would leak between splits). For registered datasets the result is
  computed once and stored as `<split>.jsonl` under `$SCALELAB_HOME/datasets/<name>/splits-v1/`,
  so even a change in pandas or in this code cannot silently move an example.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab import paths
from scalelab.data import catalog
from scalelab.data.lm_sources import (
    HUB_PREFIX,
    Documents,
    RecordFile,
    SplitText,
    TextFile,
    folder_splits,
    hub_splits,
    line_splits,
)
from scalelab.errors import ScalelabError, clip, shown
from scalelab.io import atomic_write, atomic_write_json

SPLITS = ("train", "validation", "test")
SEED = 0
SPLIT_VERSION = "splits-v1"  # bump when the split procedure changes
_SPLIT_ALIASES = {"train": "train", "valid": "validation", "validation": "validation",
                  "val": "validation", "dev": "validation", "test": "test"}  # fmt: skip
TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")  # labelled data
LM_SUFFIXES = (".txt", ".raw", ".tokens", "")  # split files of an LM folder

Example = dict[str, Any]


@dataclass
class ClassificationData:
    """Labelled text with fixed splits; each example is `{"text": str, "label": int}`."""

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    label_names: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise ScalelabError(f"unknown split {name!r} (known: {', '.join(SPLITS)})")
        return getattr(self, name)


# --- reading files ---------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A text file's contents (gunzipped for .gz); unreadable -> ScalelabError naming it."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ScalelabError(f"cannot read {clip(path)}: {_first_line(exc)}") from None


def table_name(path: Path) -> str:
    """A table file's name without a compression suffix (`train.csv.gz` -> `train.csv`)."""
    return path.name.removesuffix(".gz").removesuffix(".bz2")


def read_table(path: Path) -> pd.DataFrame:
    """A jsonl/json/csv/tsv/parquet file (optionally .gz/.bz2 compressed) as a DataFrame."""
    name = table_name(path)
    try:
        if name.endswith((".jsonl", ".json")):
            return pd.read_json(path, lines=name.endswith(".jsonl"))
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith(".tsv"):
            return pd.read_csv(path, sep="\t")
        if name.endswith(".csv"):
            return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ScalelabError(f"cannot read {clip(path)}: {_first_line(exc)}") from None
    raise ScalelabError(f"cannot read {clip(path)}: expected one of {', '.join(TABLE_SUFFIXES)}")


def _first_line(exc: Exception) -> str:
    """An exception's message cut to its first line (pandas' parser errors run on)."""
    text = str(exc).strip()
    return clip(text.splitlines()[0] if text else type(exc).__name__, 160)


def split_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """split -> file for `train.txt`, `valid.raw.gz`, `test.jsonl`, ... in a folder."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = p.name.split(".")[0].lower()
        rest = p.name[len(stem) :].removesuffix(".gz").removesuffix(".bz2")
        if stem in _SPLIT_ALIASES and p.is_file() and rest in suffixes:
            found.setdefault(_SPLIT_ALIASES[stem], p)
    return found


def not_found_error(name_or_path: str) -> ScalelabError:
    known = ", ".join(catalog.DATASETS)
    return ScalelabError(
        f"unknown dataset {shown(name_or_path)}: not a registered name (known: {known}) "
        "and not an existing file or folder"
    )


# --- language modelling -----------------------------------------------------------------


def contiguous_split(items: list[str], fractions: tuple[float, float] = (0.9, 0.05)) -> dict:
    """Cut `items` into contiguous train/validation/test blocks (default 90/5/5).

    Each split gets at least one item when there are three or more.
    """
    n = len(items)
    n_train = int(n * fractions[0])
    n_val = int(n * fractions[1])
    if n >= 3:
        n_val = max(1, n_val)
        n_train = max(1, min(n_train, n - n_val - 1))
    return {
        "train": items[:n_train],
        "validation": items[n_train : n_train + n_val],
        "test": items[n_train + n_val :],
    }


def _cut_ranges(n: int) -> dict[str, tuple[int, int]]:
    """split -> [start, stop) of `contiguous_split` over n items."""
    parts = contiguous_split(list(range(n)))
    start, out = 0, {}
    for split in SPLITS:
        out[split] = (start, start + len(parts[split]))
        start += len(parts[split])
    return out


def lm_splits(
    name_or_path: str, files: dict[str, str] | None = None, text_field: str = "text"
) -> dict[str, SplitText]:
    """Each split's text as a stream (`lm_sources.SplitText`): keys exactly `train`,
    `validation`, `test`; nothing is read whole (but a catalog reader's documents).

    A registered LM dataset uses the catalog. A local folder needs `train`/`valid(ation)`/
    `test` files or shards (or `files`: split -> glob, relative to the folder); one local
    text file is split by lines into contiguous 90/5/5 blocks; `hub:<repo>[:<config>]`
    streams a Hugging Face dataset (`files`: split -> the Hub's split name). Raises
    ScalelabError naming the dataset or file.
    """
    if name_or_path in catalog.DATASETS:
        entry = catalog.get_dataset(name_or_path)
        if entry.kind != "lm":
            raise ScalelabError(f"dataset {entry.name!r} is a {entry.kind} dataset, not lm")
        found = catalog.fetch_files(entry)
        if entry.read is not None:
            ranges = _cut_ranges(len(docs := entry.read(found)))
            return {s: SplitText(s, (Documents(tuple(docs[a:b])),)) for s, (a, b) in ranges.items()}
        if "hub" in found:
            # Hub text datasets (wikitext) keep each line's own trailing newline.
            hub = split_files(found["hub"], (".jsonl",))
            return {s: SplitText(s, (RecordFile(hub[s], "text"),), sep="") for s in SPLITS}
        return {s: SplitText(s, (TextFile(found[s]),)) for s in SPLITS}
    if name_or_path.startswith(HUB_PREFIX):
        return hub_splits(name_or_path, files, text_field)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return folder_splits(path, files, text_field)
    if path.is_file():
        return line_splits(path, _cut_ranges)
    raise not_found_error(name_or_path)


def load_lm_text(name_or_path: str) -> dict[str, str]:
    """Raw text per split, each whole in memory (small corpora and tests; runs stream)."""
    return {split: text.text() for split, text in lm_splits(name_or_path).items()}


# --- classification ---------------------------------------------------------------------


def _label_ids(labels: pd.Series, names: tuple[str, ...] = ()) -> tuple[pd.Series, list[str]]:
    """Map raw labels to ids: given names keep their order, else sorted unique values.

    Integer labels that are already 0..k-1 stay as they are.
    """
    if names:
        return labels.map({n: i for i, n in enumerate(names)}), list(names)
    values = sorted(labels.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    if all(isinstance(v, int) for v in values) and values == list(range(len(values))):
        return labels, [str(v) for v in values]
    return labels.map({v: i for i, v in enumerate(values)}), [str(v) for v in values]


def _clean(df: pd.DataFrame, dedupe: bool) -> pd.DataFrame:
    df = df.dropna(subset=["text", "label"])
    df = df.assign(text=df["text"].astype(str), label=df["label"].astype(int))
    df = df[df["text"].str.strip() != ""]
    return df.drop_duplicates(subset="text") if dedupe else df


def stratified_split(
    examples: list[Example], fractions: dict[str, float], seed: int = SEED
) -> dict[str, list[Example]]:
    """Split examples into named parts with the given fractions, per class (seeded).

    The last name takes the remainder; each part is shuffled (seeded) so any prefix of it
    is a fair sample.
    """
    by_label: dict[int, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex["label"]].append(ex)
    rng = random.Random(seed)
    out: dict[str, list[Example]] = {name: [] for name in fractions}
    names = list(fractions)
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        start = 0
        for name in names[:-1]:
            k = round(len(group) * fractions[name])
            out[name].extend(group[start : start + k])
            start += k
        out[names[-1]].extend(group[start:])
    for part in out.values():
        rng.shuffle(part)
    return out


def _to_examples(df: pd.DataFrame) -> list[Example]:
    return [{"text": t, "label": int(y)} for t, y in zip(df["text"], df["label"], strict=True)]


def make_splits(df: pd.DataFrame, dedupe: bool = True) -> dict[str, list[Example]]:
    """Fixed splits from a `text`/`label`(/`split`) frame; see the module docstring."""
    if "split" not in df.columns:
        parts = stratified_split(
            _to_examples(_clean(df, dedupe)), {"train": 0.8, "validation": 0.1, "test": 0.1}
        )
        return parts
    have = {s: _to_examples(_clean(df[df["split"] == s], dedupe=False)) for s in SPLITS}
    if not have["train"]:
        raise ScalelabError("classification data needs a train split")
    missing = [s for s in ("validation", "test") if not have[s]]
    if missing:
        # Carved parts first: train, last, takes the remainder.
        fractions = {s: 0.1 for s in missing} | {"train": 1.0 - 0.1 * len(missing)}
        have |= stratified_split(have["train"], fractions)
    return have


def _entry_frame(entry: catalog.DatasetEntry, files: dict[str, Path]) -> pd.DataFrame:
    """A registered dataset as a `text`/`label`(/`split`) frame with integer labels."""
    if entry.read is not None:
        return entry.read(files)
    if "hub" in files:
        by_split = split_files(files["hub"], (".jsonl",))
        frames = [read_table(p).assign(split=s) for s, p in by_split.items()]
        df = pd.concat(frames, ignore_index=True)
    else:
        df = read_table(files["data"])
        for split, (start, end) in entry.row_splits.items():
            df.loc[df.index[start:end], "split"] = split
    df = df.rename(columns={entry.text_column: "text", entry.label_column: "label"})
    if entry.label_values:
        ids = {v: i for i, v in enumerate(entry.label_values)}
        df = df[df["label"].isin(list(ids))].assign(label=lambda d: d["label"].map(ids))
    keep = ["text", "label"] + (["split"] if "split" in df.columns else [])
    return df[keep]


def _write_jsonl(path: Path, examples: list[Example]) -> None:
    lines = "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples)
    atomic_write(path, lambda p: p.write_text(lines, encoding="utf-8"))


def _read_jsonl(path: Path) -> list[Example]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _load_registered(entry: catalog.DatasetEntry) -> ClassificationData:
    """Splits of a registered dataset, computed once and then read from the cache."""
    folder = paths.home() / "datasets" / entry.name / SPLIT_VERSION
    meta_path = folder / "meta.json"  # written last: its presence means "complete"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        parts = {s: _read_jsonl(folder / f"{s}.jsonl") for s in SPLITS}
        return ClassificationData(**parts, label_names=meta["label_names"])
    df = _entry_frame(entry, catalog.fetch_files(entry))
    parts = make_splits(df, dedupe="split" not in df.columns)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _write_jsonl(folder / f"{split}.jsonl", parts[split])
    sizes = {s: len(parts[s]) for s in SPLITS}
    atomic_write_json(meta_path, {"label_names": list(entry.label_names), "sizes": sizes})
    return ClassificationData(**parts, label_names=list(entry.label_names))


def _local_frame(path: Path) -> pd.DataFrame:
    if path.is_dir():
        files = split_files(path, TABLE_SUFFIXES)
        if "train" not in files:
            raise ScalelabError(f"{path} needs a train file (train.jsonl, train.csv, ...)")
        frames = [read_table(p).assign(split=s) for s, p in files.items()]
        df = pd.concat(frames, ignore_index=True)
    else:
        df = read_table(path)
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise ScalelabError(f"{path} needs columns text and label; missing: {', '.join(missing)}")
    return df


def load_classification(name_or_path: str) -> ClassificationData:
    """Labelled examples with fixed train/validation/test splits (see module docstring).

    A local file (jsonl/csv/tsv/parquet with `text` and `label`) or a folder of
    train/validation/test files works too; string labels map to ids in sorted order.
    """
    if name_or_path in catalog.DATASETS:
        entry = catalog.get_dataset(name_or_path)
        if entry.kind != "classification":
            raise ScalelabError(
                f"dataset {entry.name!r} is a {entry.kind} dataset, not classification"
            )
        return _load_registered(entry)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise not_found_error(name_or_path)
    df = _local_frame(path)
    label, names = _label_ids(df["label"])
    df = df.assign(label=label)
    parts = make_splits(df, dedupe="split" not in df.columns)
    return ClassificationData(**parts, label_names=names)


def stratified_subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """`n` examples keeping class proportions (largest remainder), deterministically.

    Every class gets at least one example when `n` >= the number of classes. Per class the
    order is a fixed seeded permutation, so a smaller subsample is (nearly always) contained
    in a larger one with the same seed. The result keeps the input order.
    """
    if n > len(examples):
        raise ScalelabError(f"train_size {n} is larger than the split ({len(examples)} examples)")
    if n <= 0:
        raise ScalelabError(f"train_size must be positive, got {n}")
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex["label"]].append(i)
    labels = sorted(by_label)
    quotas = _allocate(n, {y: len(by_label[y]) for y in labels})
    rng = random.Random(seed)
    chosen: list[int] = []
    for y in labels:
        idx = by_label[y][:]
        rng.shuffle(idx)
        chosen.extend(idx[: quotas[y]])
    return [examples[i] for i in sorted(chosen)]


def _allocate(n: int, sizes: dict[int, int]) -> dict[int, int]:
    """Split `n` over classes proportionally to `sizes` (largest remainder, min 1 each)."""
    total = sum(sizes.values())
    floor_one = n >= len(sizes)
    exact = {y: n * s / total for y, s in sizes.items()}
    quota = {y: min(s, max(int(exact[y]), 1 if floor_one else 0)) for y, s in sizes.items()}
    # Hand out the rest by largest remainder; take back from the largest if min-1 overshot.
    by_remainder = sorted(sizes, key=lambda y: (exact[y] - quota[y], sizes[y]), reverse=True)
    while sum(quota.values()) < n:
        y = next(y for y in by_remainder if quota[y] < sizes[y])
        quota[y] += 1
        by_remainder.remove(y)
        by_remainder.append(y)
    while sum(quota.values()) > n:
        floor = 1 if floor_one else 0
        y = max((k for k in quota if quota[k] > floor), key=lambda k: quota[k] - exact[k])
        quota[y] -= 1
    return quota
