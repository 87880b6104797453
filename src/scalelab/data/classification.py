"""Task kind `classification`: labelled text with fixed splits, fed to a pretrained model.

    tasks: {dataset: trec, max_length: 48, train_size: 2000}

`train_size` / `val_size` take a stratified subsample of the fixed training / validation
split. The subsample is drawn with `data_seed` (default 0), NOT the run seed, so every seed
and every method of a grid trains and selects on exactly the same examples; the seeds then
only vary initialisation, shuffling and dropout. The test split is always used whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from scalelab.config import Strict
from scalelab.data.tasks import register_task_kind

# Up to this size a local table is read at spec time to check its splits (a larger one is
# checked when a run loads it, failing that run with the same line).
_SPLIT_CHECK_BYTES = 16 * 2**20


class ClassificationTask(Strict):
    """Sequence classification on a registered dataset or a local table (text, label).

    max_length: tokens per example after truncation (batches are padded to their longest
    example, at most this); train_size / val_size: stratified subsample sizes (None = all);
    data_seed: seed of those subsamples, fixed across runs (see the module docstring).
    """

    kind: Literal["classification"] = "classification"
    dataset: str
    max_length: PositiveInt = 64
    train_size: PositiveInt | None = None
    val_size: PositiveInt | None = None
    data_seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy seeds take 32 bits

    @model_validator(mode="after")
    def _check(self) -> ClassificationTask:
        _check_local_splits(self)
        return self


def _check_local_splits(task: ClassificationTask) -> None:
    """A small local table is split here, at spec time, so that an empty split or a
    subsample larger than its split is one spec error, not a failed run per grid point.
    Registered datasets (which may need a download) and large files are left to the run."""
    import os

    from scalelab.data.catalog import DATASETS
    from scalelab.errors import ScalelabError

    if task.dataset in DATASETS:
        return
    path = os.path.expanduser(task.dataset)
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > _SPLIT_CHECK_BYTES:
            return
        check_splits(task, _local_data(path, os.stat(path).st_mtime_ns))
    except (ScalelabError, ValueError, OSError) as err:  # one line, not a traceback
        raise ValueError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None


@lru_cache(maxsize=32)
def _local_data(path: str, mtime_ns: int):
    """A local table's splits (cached by path and modification time: each grid point of
    one file re-validates its task)."""
    from scalelab.data.loaders import load_classification

    return load_classification(path)


def check_splits(task: ClassificationTask, data) -> None:
    """Raise ScalelabError naming each empty split of `data` (a ClassificationData) and a
    train_size / val_size larger than its split."""
    from scalelab.errors import ScalelabError, clip

    sizes = {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    if empty := [s for s, n in sizes.items() if n == 0]:
        raise ScalelabError(
            f"task.dataset {clip(task.dataset, 60)}: the {' and '.join(empty)} split"
            f"{'s are' if len(empty) > 1 else ' is'} empty ({sizes['train']} train, "
            f"{sizes['validation']} validation, {sizes['test']} test examples; a table "
            "without a split column is cut 80/10/10 per label): add examples"
        )
    for field, split in (("train_size", "train"), ("val_size", "validation")):
        want = getattr(task, field)
        if want is not None and want > sizes[split]:
            raise ScalelabError(
                f"task.{field} {want} is larger than the {split} split ({sizes[split]})"
            )


register_task_kind("classification", ClassificationTask)


@dataclass
class TaskData:
    """The examples one run uses: lists of {"text", "label"} and the label names."""

    train: list[dict]
    validation: list[dict]
    test: list[dict]
    label_names: list[str]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_task_data(task: ClassificationTask) -> TaskData:
    """Load the fixed splits and apply the (data-seeded) subsamples."""
    from scalelab.data.loaders import load_classification, stratified_subsample

    data = load_classification(task.dataset)
    check_splits(task, data)
    train, val = data.train, data.validation
    if task.train_size is not None:
        train = stratified_subsample(train, task.train_size, task.data_seed)
    if task.val_size is not None:
        val = stratified_subsample(val, task.val_size, task.data_seed)
    names = data.label_names or [str(i) for i in range(1 + max(e["label"] for e in train))]
    return TaskData(train, val, data.test, list(names))


def encode(tok, examples: list[dict], max_length: int) -> list[list[int]]:
    """Token ids per example, truncated to max_length (no padding here)."""
    texts = [e["text"] for e in examples]
    return tok(texts, truncation=True, max_length=max_length)["input_ids"]


def collate(seqs: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) int64 [batch, longest]: right-padded to the longest."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
