"""Task kind `classification`: labelled text with fixed splits, fed to a pretrained model.

    tasks: {dataset: trec, max_length: 48, train_size: 2000}

`train_size` / `val_size` take a stratified subsample of the fixed training / validation
split. The subsample is drawn with `data_seed` (default 0), NOT the run seed, so every seed
and every method of a grid trains and selects on exactly the same examples; the seeds then
only vary initialisation, shuffling and dropout. The test split is always used whole.

`half: a` / `half: b` trains on one of two fixed, disjoint, stratified halves of that
(subsampled) training split, also drawn with `data_seed` (`split_halves`): the protocol of
weak-to-strong generalization (Burns et al. 2023), where a weak model learns from half A's
ground truth and labels half B for a strong student. A run on one half also holds out the
other (`TaskData.heldout`): fine-tuning runs write their soft labels on it as a product.

`k_per_class: k` trains on exactly k examples of each class (few-shot fine-tuning), drawn
from the training split (after its `train_size` subsample, if any) by `draw_k_per_class`,
fixed by (`data_seed`, `draw`): `draw: 0, 1, 2` are three different fixed draws, and the
same (data_seed, draw, k) is always the same set. The draws are nested in k (k = 5 holds
k = 1's examples). A class with fewer than k examples is one error (at spec time for a
small local table). `k_per_class` and `half` are not combined; `draw` needs k_per_class.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from scalelab.config import Strict
from scalelab.data.augment import Augment
from scalelab.data.tasks import register_task_kind

# Up to this size a local table is read at spec time to check its splits (a larger one is
# checked when a run loads it, failing that run with the same line).
_SPLIT_CHECK_BYTES = 16 * 2**20


class ClassificationTask(Strict):
    """Sequence classification on a registered dataset or a local table (text, label).

    max_length: tokens per example after truncation (batches are padded to their longest
    example, at most this); train_size / val_size: stratified subsample sizes (None = all);
    data_seed: seed of those subsamples, fixed across runs (see the module docstring);
    half: train on half "a" or "b" of the training split (`split_halves`; None = all of it);
    augment: copies of training examples made by EDA or back-translation (`data/augment.py`;
    None = none); k_per_class: train on exactly k examples of each class
    (`draw_k_per_class`); draw: which fixed draw of those (0, 1, ...; see the module
    docstring).
    """

    ID_OMIT_DEFAULTS: ClassVar[frozenset[str]] = frozenset(
        {"half", "augment", "k_per_class", "draw"}
    )  # added later

    kind: Literal["classification"] = "classification"
    dataset: str
    max_length: PositiveInt = 64
    train_size: PositiveInt | None = None
    val_size: PositiveInt | None = None
    data_seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy seeds take 32 bits
    half: Literal["a", "b"] | None = None
    augment: Augment | None = None
    k_per_class: PositiveInt | None = None
    draw: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _check_few_shot(self) -> ClassificationTask:
        if self.k_per_class is not None and self.half is not None:
            raise ValueError(
                "task.k_per_class cannot be combined with task.half: draw k per class from "
                "the whole training split, or train on a half without k_per_class"
            )
        if self.draw and self.k_per_class is None:
            raise ValueError(
                f"task.draw {self.draw} needs task.k_per_class (a train_size subsample is "
                "drawn with data_seed alone)"
            )
        return self

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


def known_label_names(task: ClassificationTask) -> list[str] | None:
    """The task's label names when known without a download: a catalog dataset's, or a
    small local table's (read at spec time anyway, `_check_local_splits`); else None."""
    import os

    from scalelab.data.catalog import DATASETS

    if task.dataset in DATASETS:
        return list(DATASETS.get(task.dataset).label_names) or None
    path = os.path.expanduser(task.dataset)
    if not os.path.isfile(path) or os.path.getsize(path) > _SPLIT_CHECK_BYTES:
        return None
    return list(_local_data(path, os.stat(path).st_mtime_ns).label_names)


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
    if task.k_per_class is not None:
        few_shot_positions(task, data.train, data.label_names)


register_task_kind("classification", ClassificationTask)


@dataclass
class TaskData:
    """The examples one run uses: lists of {"text", "label"} and the label names.

    train_index: each training example's position in the (subsampled) training split;
    heldout / heldout_index: the other half's examples and positions when the task trains on
    a half (empty otherwise). Positions name examples across runs (label products)."""

    train: list[dict]
    validation: list[dict]
    test: list[dict]
    label_names: list[str]
    train_index: list[int] = dataclass_field(default_factory=list)
    heldout: list[dict] = dataclass_field(default_factory=list)
    heldout_index: list[int] = dataclass_field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_task_data(task: ClassificationTask) -> TaskData:
    """Load the fixed splits and apply the (data-seeded) subsamples, then `augment` to the
    training examples only (copies follow the originals and carry their positions)."""
    from scalelab.data.augment import augment_training
    from scalelab.data.loaders import load_classification, stratified_subsample

    data = load_classification(task.dataset)
    check_splits(task, data)
    train, val = data.train, data.validation
    if task.train_size is not None:
        train = stratified_subsample(train, task.train_size, task.data_seed)
    if task.val_size is not None:
        val = stratified_subsample(val, task.val_size, task.data_seed)
    names = data.label_names or [str(i) for i in range(1 + max(e["label"] for e in train))]
    index, heldout = list(range(len(train))), []
    if task.k_per_class is not None:
        index = few_shot_positions(task, train, names, subsampled=True)
    if task.half is not None:
        halves = split_halves([e["label"] for e in train], task.data_seed)
        index, heldout = halves if task.half == "a" else halves[::-1]
    own, index = augment_training([train[i] for i in index], index, task.augment, task.data_seed)
    return TaskData(own, val, data.test, list(names), index,
                    [train[i] for i in heldout], heldout)  # fmt: skip


def split_halves(labels: list[int], seed: int) -> tuple[list[int], list[int]]:
    """(A, B): two disjoint halves of positions 0..n-1 that together cover them, each
    keeping the class proportions, fixed by `seed` (a numpy permutation, then a stable
    sort by label: a random order within each class; A takes every even place, B every
    odd one, so |A| - |B| is 0 or 1). Both come back ascending. The same (labels, seed)
    always gives the same halves (Burns et al. 2023 split the training set in two: the
    weak supervisor learns on one half and labels the other)."""
    import numpy as np

    y = np.asarray(labels, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    order = perm[np.argsort(y[perm], kind="stable")]
    return sorted(order[0::2].tolist()), sorted(order[1::2].tolist())


def few_shot_positions(
    task: ClassificationTask, train: list[dict], names: list[str], *, subsampled: bool = False
) -> list[int]:
    """Positions in `train` of the task's k-per-class draw (`draw_k_per_class` with its
    k_per_class, data_seed and draw). `train`: the training split, or with `subsampled` its
    train_size subsample already; names: the label names ([] = 0..max label). Raises
    ScalelabError when a class has fewer than k_per_class examples."""
    from scalelab.data.loaders import stratified_subsample

    if not subsampled and task.train_size is not None:
        train = stratified_subsample(train, task.train_size, task.data_seed)
    labels = [e["label"] for e in train]
    names = names or [str(i) for i in range(1 + max(labels, default=-1))]
    where = "the training split"
    if task.train_size is not None:
        where = f"the training split's train_size {task.train_size} subsample"
    return draw_k_per_class(labels, task.k_per_class, task.data_seed, task.draw, names, where)


def draw_k_per_class(
    labels: list[int],
    k: int,
    data_seed: int,
    draw: int,
    names: list[str],
    where: str = "the training split",
) -> list[int]:
    """Positions (ascending) of exactly `k` examples of each class 0..len(names)-1 among
    `labels` (class ids, shape (n,)): the few-shot training set of few-shot fine-tuning.

    One numpy Generator seeded by (data_seed, draw) permutes each class's positions in
    class order; a class keeps the first k of its permutation. Its permutations depend on
    the class sizes only, never on k, so the sets are nested in k (k = 5 contains k = 1)
    and the same (labels, data_seed, draw) always gives the same set; another draw gives
    another (unless a class has exactly k examples). Raises ScalelabError naming the
    classes with fewer than k examples in `where`.
    """
    import numpy as np

    from scalelab.errors import ScalelabError

    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=len(names)) if len(y) else np.zeros(len(names), int)
    short = [f"{names[c]!r} ({counts[c]})" for c in range(len(names)) if counts[c] < k]
    if short:
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        raise ScalelabError(
            f"task.k_per_class {k}: class{'es' * (len(short) > 1)} {', '.join(short[:3])}"
            f"{more} ha{'ve' if len(short) > 1 else 's'} fewer than {k} examples in {where}"
        )
    rng = np.random.default_rng([data_seed, draw])
    chosen = []
    for c in range(len(names)):
        where_c = np.flatnonzero(y == c)
        chosen.extend(where_c[rng.permutation(len(where_c))[:k]].tolist())
    return sorted(chosen)


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
