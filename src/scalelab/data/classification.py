"""Task kind `classification`: labelled text with fixed splits, fed to a pretrained model.

    tasks: {dataset: trec, max_length: 48, train_size: 2000}

`train_size` / `val_size` take a stratified subsample of the fixed training / validation
split. The subsample is drawn with `data_seed` (default 0), NOT the run seed, so every seed
and every method of a grid trains and selects on exactly the same examples; the seeds then
only vary initialisation, shuffling and dropout. The test split is always used whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt

from scalelab.config import Strict
from scalelab.data.tasks import register_task_kind


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
    from scalelab.errors import ScalelabError

    data = load_classification(task.dataset)
    train, val = data.train, data.validation
    if task.train_size is not None:
        train = stratified_subsample(train, task.train_size, task.data_seed)
    if task.val_size is not None:
        if task.val_size > len(val):
            raise ScalelabError(
                f"task.val_size {task.val_size} is larger than the validation split ({len(val)})"
            )
        val = stratified_subsample(val, task.val_size, task.data_seed)
    if not train or not val or not data.test:
        raise ScalelabError(f"task.dataset {task.dataset!r}: a split is empty")
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
