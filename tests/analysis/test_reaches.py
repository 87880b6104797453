"""The smallest model that reaches a named accuracy: cells tested over seeds, one-run cells
with a standard error, and the size the chain (or the power law) predicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis import laws
from scalelab.analysis.reaches import answer_reaching, prediction_text, task_loss_column
from scalelab.errors import ScalelabError

STEP1 = {"E": 1.2, "A": 60.0, "alpha": 0.22}  # task loss from N
STEP2 = {"floor": 0.25, "ceiling": 0.9, "k": 4.0, "L0": 2.0}  # 4 choices: chance 0.25
SIZES = np.geomspace(2e7, 2e9, 9)


def ladder(seeds: int = 3, noise: float = 0.004, seed: int = 0) -> pd.DataFrame:
    """A pretrain ladder of 9 sizes x `seeds` seeds, each row evaluated on one task."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(SIZES):
        for s in range(seeds):
            loss = float(laws.power_law(n, STEP1)) * math.exp(noise * rng.standard_normal())
            acc = float(laws.acc_sigmoid(loss, STEP2)) + noise * rng.standard_normal()
            rows.append({"method": "pretrain", "model": f"m{i}", "seed": s, "status": "done",
                         "non_embedding_params": n, "task_loss@piqa": loss, "acc@piqa": acc})  # fmt: skip
    return pd.DataFrame(rows)


def true_acc(n: float) -> float:
    return float(laws.acc_sigmoid(laws.power_law(n, STEP1), STEP2))


def test_the_smallest_cell_that_reaches_the_target_with_support_and_the_chain_prediction():
    target = 0.6
    t = ladder()
    found = answer_reaching(t, target, "acc@piqa", bootstrap=40, chance=0.25)
    assert found.loss_col == "task_loss@piqa" and found.higher_is_better
    (a,) = found.methods
    means = {c.model: c.mean for c in a.cells}
    # The answer is the first size whose mean clears the target by more than its interval.
    first = next(c for c in a.cells if c.beats)
    assert a.smallest == first and means[first.model] > target
    assert all(c.lo <= 0 for c in a.cells if c.size < first.size)
    assert a.statement.startswith(f"{first.model} (non_embedding_params ")
    assert "one-sample t, 3 seeds" in a.statement
    # The chain inverted at the target: near the true crossing, its interval around it (how
    # often such intervals cover the truth is tests/analysis/test_task_accuracy.py's).
    truth = laws.invert_power_law(laws.invert_acc_from_loss(target, STEP2), STEP1)
    assert a.crossover.n == pytest.approx(truth, rel=0.05)
    assert a.crossover.lo < a.crossover.n < a.crossover.hi
    assert first.size / 2 < a.crossover.n < first.size * 2  # agrees with the cells
    assert any("two-step chain" in n for n in a.notes)
    assert prediction_text(a).startswith("predicted smallest size reaching it: ")


def test_a_target_above_every_model_is_not_reached_and_the_closest_is_named():
    t = ladder()
    best = max(true_acc(n) for n in SIZES)
    (a,) = answer_reaching(t, best + 0.03, "acc@piqa", bootstrap=0).methods
    assert a.smallest is None
    assert a.statement.startswith("no pretrain model reaches acc@piqa")
    assert f"closest: m{len(SIZES) - 1}" in a.statement


def test_without_a_task_loss_column_the_power_law_on_the_error_rate_predicts():
    t = ladder().drop(columns=["task_loss@piqa"])
    assert task_loss_column(t, "acc@piqa") is None
    found = answer_reaching(t, 0.6, "acc@piqa", bootstrap=20)
    (a,) = found.methods
    assert found.loss_col is None and not any("two-step" in n for n in a.notes)
    assert a.crossover is not None and a.crossover.target == pytest.approx(0.4)  # 1 - acc


def test_one_run_cells_use_the_standard_error_over_test_items_else_claim_nothing():
    rows = [{"method": "evaluate", "model": m, "seed": 0, "non_embedding_params": n,
             "acc@piqa": acc, "acc_stderr@piqa": se}
            for m, n, acc, se in (("a", 1e7, 0.55, 0.01), ("b", 1e8, 0.66, 0.01),
                                  ("c", 1e9, 0.70, 0.01))]  # fmt: skip
    t = pd.DataFrame(rows).rename(columns={"acc_stderr@piqa": "acc_stderr"})
    (a,) = answer_reaching(t, 0.65, "acc@piqa", bootstrap=0).methods
    b = next(c for c in a.cells if c.model == "b")
    assert b.lo == pytest.approx(0.01 - 1.96 * 0.01) and b.test == "normal, stderr over test items"
    assert a.smallest.model == "c"  # b's interval reaches below the target
    bare = t.drop(columns=["acc_stderr"])
    (a,) = answer_reaching(bare, 0.65, "acc@piqa", bootstrap=0).methods
    assert a.smallest is None and "reaches it by its mean only" in a.statement


@pytest.mark.parametrize(
    ("target", "message"),
    [(1.2, r"acc@piqa lies in \[0, 1\]"), (0.0, r"lies in \[0, 1\]"), (math.nan, "a finite")],
)
def test_a_target_outside_the_metric_range_is_one_error(target, message):
    with pytest.raises(ScalelabError, match=message):
        answer_reaching(ladder(seeds=2), target, "acc@piqa", bootstrap=0)


def test_a_missing_loss_column_is_named():
    with pytest.raises(ScalelabError, match="--loss-col 'nope'"):
        answer_reaching(ladder(seeds=2), 0.6, "acc@piqa", loss_col="nope")
