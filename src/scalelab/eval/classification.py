"""Classification metrics from integer labels and predictions (numpy only).

All functions take `y_true`, `y_pred`: int arrays of shape [n] with values in
0..num_labels-1. Per-class ratios that are undefined (a class never predicted, or absent
from the labels) count as 0, as scikit-learn's `zero_division=0` does. Macro averages
follow scikit-learn's `average="macro"` (sklearn.metrics.f1_score): the unweighted mean
over the labels present in `y_true` or `y_pred`. A class of the label set that neither
occurs nor is predicted in this split says nothing about the classifier and is left out:
counting it as F1 = 0 would score a classifier that is right on every example 2/3 when
one of three classes is missing from the split.
Every statistic over zero examples (or zero present labels) is NaN, never a perfect score.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true, y_pred, num_labels: int) -> np.ndarray:
    """int64 [num_labels, num_labels]: row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches (nan for no examples)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support: float/int arrays [num_labels] from a confusion matrix."""
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def present_labels(cm: np.ndarray) -> np.ndarray:
    """bool [num_labels]: classes that occur in the labels or the predictions.

    scikit-learn's default label set for macro averages (`unique_labels(y_true, y_pred)`).
    """
    return (cm.sum(axis=0) + cm.sum(axis=1)) > 0


def macro_mean(values: np.ndarray, cm: np.ndarray) -> float:
    """Unweighted mean of per-class `values` over the present labels (`present_labels`).

    NaN when no label is present (no examples): a mean over nothing is undefined.
    """
    present = present_labels(cm)
    return float(values[present].mean()) if present.any() else float("nan")


def macro_f1(y_true, y_pred, num_labels: int) -> float:
    """Unweighted mean of the per-class F1 over the labels present in y_true or y_pred.

    Equals sklearn.metrics.f1_score(y_true, y_pred, average="macro", zero_division=0);
    NaN for no examples.
    """
    cm = confusion_matrix(y_true, y_pred, num_labels)
    return macro_mean(per_class(cm)["f1"], cm)


def cross_entropy(logits, y_true) -> float:
    """Mean cross-entropy in nats of logits [n, k] (float) against integer labels [n].

    NaN for no examples.
    """
    if len(y_true) == 0:
        return float("nan")
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)  # stable log-softmax
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(z)), np.asarray(y_true, dtype=np.int64)].mean())


def score(logits, y_true, num_labels: int) -> dict[str, float]:
    """accuracy, macro_f1 and loss (mean cross-entropy, nats) of logits [n, k] vs labels [n].

    All three are NaN for no examples.
    """
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "loss": float("nan")}
    pred = np.asarray(logits).argmax(-1)
    return {
        "accuracy": accuracy(y_true, pred),
        "macro_f1": macro_f1(y_true, pred, num_labels),
        "loss": cross_entropy(logits, y_true),
    }


def classification_report(y_true, y_pred, label_names: list[str]) -> dict[str, Any]:
    """JSON-able report: accuracy, macro P/R/F1, per-class P/R/F1/support, confusion matrix.

    Macro averages are over the labels present in y_true or y_pred (see the module
    docstring); accuracy and the macro averages are NaN for no examples.
    """
    k = len(label_names)
    cm = confusion_matrix(y_true, y_pred, k)
    stats = per_class(cm)
    return {
        "n": int(cm.sum()),
        "accuracy": accuracy(y_true, y_pred),
        "macro_precision": macro_mean(stats["precision"], cm),
        "macro_recall": macro_mean(stats["recall"], cm),
        "macro_f1": macro_mean(stats["f1"], cm),
        "macro_labels": [
            name for name, p in zip(label_names, present_labels(cm), strict=True) if p
        ],
        "per_class": {
            name: {
                "precision": float(stats["precision"][i]),
                "recall": float(stats["recall"][i]),
                "f1": float(stats["f1"][i]),
                "support": int(stats["support"][i]),
            }
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": cm.tolist(),  # rows: true label, columns: predicted label
    }


def predict(model, seqs: list[list[int]], pad_id: int, batch_size: int, amp, device) -> np.ndarray:
    """Logits float32 [n, num_labels] in input order. Batches are sorted by length (pure
    speed: less padding); results go back to the original order. `amp` is a context-manager
    factory (engine.precision.autocast_for). No sequences give an empty [0, num_labels]
    array (num_labels from the model's config), which `score` turns into NaN metrics."""
    import torch

    from scalelab.data.classification import collate

    if not seqs:  # torch.stack of nothing would raise; an empty split scores as NaN
        k = int(getattr(getattr(model, "config", None), "num_labels", 0) or 0)
        return np.zeros((0, k), dtype=np.float32)

    was_training = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list = [None] * len(seqs)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = collate([seqs[i] for i in idx], pad_id)
            with amp():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for i, row in zip(idx, logits.float().cpu(), strict=True):
                out[i] = row
    model.train(was_training)
    return torch.stack(out).numpy()
