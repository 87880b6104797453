"""Accuracy, macro-F1, per-class precision/recall and the confusion matrix on known cases."""

from __future__ import annotations

import numpy as np
import pytest

from scalelab.eval.classification import (
    accuracy,
    classification_report,
    confusion_matrix,
    macro_f1,
    per_class,
)

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_are_true_labels():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.dtype == np.int64 and cm.sum() == 6


def test_per_class_and_macro_by_hand():
    stats = per_class(confusion_matrix(Y_TRUE, Y_PRED, 3))
    # class 0: P=2/2 R=2/3; class 1: P=1/2 R=1/2; class 2: P=1/2 R=1/1
    assert stats["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert stats["recall"] == pytest.approx([2 / 3, 0.5, 1.0])
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert stats["f1"] == pytest.approx(f1)
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx(np.mean(f1))
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)


def test_never_predicted_classes_count_as_zero_absent_ones_are_left_out():
    # class 2 never occurs and is never predicted (left out of the macro average, as in
    # scikit-learn); class 1 occurs but is never predicted (F1 0, counted).
    stats = per_class(confusion_matrix([0, 1], [0, 0], 3))
    assert stats["precision"].tolist() == [0.5, 0.0, 0.0]
    assert stats["recall"].tolist() == [1.0, 0.0, 0.0]
    assert macro_f1([0, 1], [0, 0], 3) == pytest.approx((2 / 3) / 2)


def test_report_is_json_able_and_consistent():
    import json

    rep = classification_report(Y_TRUE, Y_PRED, ["a", "b", "c"])
    json.dumps(rep)
    assert rep["n"] == 6 and rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["per_class"]["a"]["support"] == 3 and rep["per_class"]["c"]["recall"] == 1.0
    assert rep["confusion_matrix"][0] == [2, 1, 0] and rep["labels"] == ["a", "b", "c"]
    assert rep["macro_f1"] == pytest.approx(macro_f1(Y_TRUE, Y_PRED, 3))
