"""Products of classifier runs that later runs and analyses read: soft labels and test
predictions, as `.npz` files in the producing run's folder.

- `labels.npz`: a run's soft predictions on training examples it did not train on (a run
  on task half A labels half B; a weak-to-strong step labels what its chain leaves for the
  next step). Arrays: `index` [n] int64 (positions in the task's subsampled training split,
  ascending), `probs` [n, K] float32 (softmax probabilities, rows sum to 1), `truth` [n]
  int64 (the ground truth, for the labels' accuracy; never read by a student), `label_names`
  [K] str, `step` and `steps` (0-d int64: this run's place in a bootstrap chain, 0 and 0
  for a run trained on ground truth).
- `predictions.npz`: its probabilities on the test split, `probs` [n_test, K] float32 and
  `truth` [n_test] int64, so analyses can resample test examples (paired across runs).

Written atomically; `read_*` raise ScalelabError naming the file when it is missing or
malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelab.errors import ScalelabError

LABELS = "labels.npz"
PREDICTIONS = "predictions.npz"


@dataclass(frozen=True)
class SoftLabels:
    """The arrays of a `labels.npz` (see the module docstring for shapes)."""

    index: np.ndarray
    probs: np.ndarray
    truth: np.ndarray
    label_names: list[str]
    step: int = 0
    steps: int = 0

    @property
    def accuracy(self) -> float:
        """Accuracy of the argmax labels against the ground truth (NaN when empty)."""
        if not len(self.truth):
            return float("nan")
        return float((self.probs.argmax(-1) == self.truth).mean())


def _save(path: Path, **arrays) -> None:
    """np.savez to a temporary name in the same folder, then an atomic rename."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_labels(run_dir: Path, labels: SoftLabels) -> Path:
    """Save `labels` as run_dir/labels.npz; returns the path."""
    path = Path(run_dir) / LABELS
    _save(path, index=np.asarray(labels.index, dtype=np.int64),
          probs=np.asarray(labels.probs, dtype=np.float32),
          truth=np.asarray(labels.truth, dtype=np.int64),
          label_names=np.asarray(labels.label_names, dtype=str),
          step=np.int64(labels.step), steps=np.int64(labels.steps))  # fmt: skip
    return path


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ScalelabError(f"{path}: not found (the run that should have written it did not)")
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in keys}
    except (OSError, ValueError, KeyError) as err:
        raise ScalelabError(f"{path}: not a readable label file ({err})") from None
    n = len(out["truth"])
    if out["probs"].ndim != 2 or len(out["probs"]) != n:
        raise ScalelabError(f"{path}: probs {out['probs'].shape} do not match {n} examples")
    return out


def read_labels(run_dir: Path) -> SoftLabels:
    """The `labels.npz` of a run folder. Raises ScalelabError when missing or malformed."""
    a = _load(Path(run_dir) / LABELS, ("index", "probs", "truth", "label_names", "step", "steps"))
    return SoftLabels(a["index"], a["probs"], a["truth"], [str(x) for x in a["label_names"]],
                      int(a["step"]), int(a["steps"]))  # fmt: skip


def write_predictions(run_dir: Path, probs: np.ndarray, truth: np.ndarray) -> Path:
    """Save test probabilities [n, K] and ground truth [n] as run_dir/predictions.npz."""
    path = Path(run_dir) / PREDICTIONS
    _save(path, probs=np.asarray(probs, dtype=np.float32), truth=np.asarray(truth, np.int64))
    return path


def read_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probs [n, K], truth [n]) of a run's test predictions; ScalelabError if unreadable."""
    a = _load(Path(run_dir) / PREDICTIONS, ("probs", "truth"))
    return a["probs"], a["truth"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits [n, K] in float64 (stable: the row max is subtracted)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
