"""Task accuracy: the chance-aware laws, their fitters, the two-step chain and its bootstrap,
on synthetic points from known laws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis import laws
from scalelab.analysis.api import FitSpec, fit_table
from scalelab.analysis.smallest import size_for_task_loss, smallest_for_accuracy
from scalelab.analysis.task_accuracy import problem, task_holdout
from scalelab.analysis.task_fitting import fit_acc_exponential, fit_acc_sigmoid
from scalelab.errors import ScalelabError

STEP1 = {"E": 1.2, "A": 60.0, "alpha": 0.22}  # task loss L(N) = E + A N^-alpha
STEP2 = {"floor": 0.25, "ceiling": 0.9, "k": 4.0, "L0": 2.0}  # 4-choice task, chance 0.25
TRUE = {**STEP1, **STEP2}


def ladder(seed: int, n: int = 14, loss_noise: float = 0.004, acc_noise: float = 0.006):
    """A ladder of n models, 2e7..2e9 parameters: noisy task loss and accuracy."""
    rng = np.random.default_rng(seed)
    size = np.geomspace(2e7, 2e9, n)
    loss = laws.power_law(size, STEP1) * np.exp(loss_noise * rng.standard_normal(n))
    acc = laws.acc_sigmoid(loss, STEP2) + acc_noise * rng.standard_normal(n)
    return pd.DataFrame({"N": size, "task_loss": loss, "acc": np.clip(acc, 0, 1)})


# --- the laws -------------------------------------------------------------------------------


def test_sigmoid_is_bhagia_eq2_with_floor_and_ceiling():
    loss = np.linspace(0.5, 4.0, 50)
    a, b = STEP2["floor"] - STEP2["ceiling"], STEP2["ceiling"]  # the paper's a < 0, b
    paper = a / (1 + np.exp(-STEP2["k"] * (loss - STEP2["L0"]))) + b
    np.testing.assert_allclose(laws.acc_sigmoid(loss, STEP2), paper, rtol=1e-12)
    # Floor as L -> inf (chance), ceiling as L -> -inf.
    assert laws.acc_sigmoid(50.0, STEP2) == pytest.approx(0.25)
    assert laws.acc_sigmoid(-50.0, STEP2) == pytest.approx(0.9)


def test_exponential_is_one_minus_gadre_error():
    p = {"epsilon": 0.75, "k": 3.0, "gamma": 0.8}
    loss = np.linspace(1.0, 6.0, 20)
    np.testing.assert_allclose(
        laws.acc_exponential(loss, p), 1 - (0.75 - 3.0 * np.exp(-0.8 * loss)), rtol=1e-12
    )
    assert laws.acc_exponential(1e3, p) == pytest.approx(0.25)  # the error tends to epsilon


@pytest.mark.parametrize("params", [STEP2, {"epsilon": 0.75, "k": 3.0, "gamma": 0.8}])
def test_inverse_of_accuracy_law_round_trips(params):
    for loss in (1.5, 2.0, 2.7):
        acc = float(laws.acc_from_loss(loss, params))
        assert laws.invert_acc_from_loss(acc, params) == pytest.approx(loss, rel=1e-9)
    assert np.isnan(laws.invert_acc_from_loss(0.2, params))  # below chance: never reached


def test_chain_is_step1_then_step2():
    n = np.geomspace(1e7, 1e10, 5)
    expect = laws.acc_sigmoid(laws.power_law(n, STEP1), STEP2)
    np.testing.assert_allclose(laws.task_accuracy((n,), TRUE), expect)


# --- the fitters ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step2_sigmoid_recovers_parameters(seed):
    df = ladder(seed)
    fit = fit_acc_sigmoid(df["task_loss"], df["acc"], floor=0.25)
    p = fit.params
    assert p["floor"] == 0.25 and "flat" not in fit.extras
    # Tolerances: ceiling within 0.05 (it lies above the data), k within 10%, L0 within 0.05.
    assert p["ceiling"] == pytest.approx(0.9, abs=0.05)
    assert p["k"] == pytest.approx(4.0, rel=0.1)
    assert p["L0"] == pytest.approx(2.0, abs=0.05)


def test_step2_sigmoid_fits_the_floor_when_chance_is_not_given():
    df = ladder(3, n=30, acc_noise=0.003)
    loss = np.concatenate([df["task_loss"], df["task_loss"] + 1.0])  # down to the floor
    acc = np.concatenate([df["acc"], laws.acc_sigmoid(df["task_loss"] + 1.0, STEP2)])
    fit = fit_acc_sigmoid(loss, acc)
    assert fit.params["floor"] == pytest.approx(0.25, abs=0.02)
    assert set(fit.extras["free"]) == {"floor", "ceiling", "k", "L0"}


def test_step2_exponential_recovers_parameters():
    truth = {"epsilon": 0.75, "k": 30.0, "gamma": 1.5}
    rng = np.random.default_rng(0)
    loss = np.linspace(1.8, 3.0, 15)
    acc = laws.acc_exponential(loss, truth) + 0.003 * rng.standard_normal(15)
    p = fit_acc_exponential(loss, acc, chance=0.25).params
    assert p["epsilon"] == 0.75
    assert p["gamma"] == pytest.approx(1.5, rel=0.1) and p["k"] == pytest.approx(30, rel=0.25)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_step_chain_recovers_both_steps(seed):
    g = fit_table(
        ladder(seed), FitSpec("task-accuracy", "N", "acc", loss_col="task_loss", chance=0.25)
    )
    p = g.groups[0].fit.params
    # Step 1: E within 10%, alpha within 0.03; step 2 as above.
    assert p["E"] == pytest.approx(1.2, rel=0.1) and p["alpha"] == pytest.approx(0.22, abs=0.03)
    assert p["ceiling"] == pytest.approx(0.9, abs=0.05) and p["k"] == pytest.approx(4, rel=0.1)
    assert g.groups[0].as_dict()["steps"]["step1"]["law"] == "power"


def test_heldout_accuracy_lies_in_the_bootstrap_interval_in_most_draws():
    """8 ladders; refit on 12, predict the 2 largest; 40 refits each (320 in all)."""
    covered = 0
    for seed in range(8):
        df = ladder(seed)
        prob = problem(
            (df["N"].to_numpy(),),
            df["task_loss"].to_numpy(),
            df["acc"].to_numpy(),
            form="sigmoid",
            chance=0.25,
            ceiling=None,
        )
        h = task_holdout(prob, 2, n_boot=40, seed=seed, chance=0.25)
        truth = laws.task_accuracy((df["N"].to_numpy()[-2:],), TRUE)  # noiseless
        assert (
            h.lo is not None and np.all(h.lo <= h.pred + 1e-12) and np.all(h.pred <= h.hi + 1e-12)
        )
        covered += bool(h.lo[-1] <= truth[-1] <= h.hi[-1])
        assert h.mean_abs_error < 0.03
    assert covered >= 6, covered


def test_bootstrap_refits_both_steps():
    spec = FitSpec("task-accuracy", "N", "acc", loss_col="task_loss", chance=0.25, bootstrap=30)
    g = fit_table(ladder(0), spec).groups[0]
    assert g.boot.n_ok >= 28
    # Both steps vary across refits; the fixed floor does not and has no interval.
    assert np.std(g.boot.samples["alpha"]) > 0 and np.std(g.boot.samples["k"]) > 0
    assert "floor" not in g.as_dict()["ci"] and {"E", "k", "ceiling"} <= set(g.as_dict()["ci"])


def test_flat_task_is_flagged_not_fitted_to_nonsense():
    rng = np.random.default_rng(5)
    df = ladder(0)
    df["acc"] = 0.25 + 0.01 * rng.standard_normal(len(df))  # at chance at every size
    g = fit_table(df, FitSpec("loss-to-acc", "task_loss", "acc", chance=0.2)).groups[0]
    kinds = [f.kind for f in g.flags]
    assert "flat" in kinds and "does not change" in g.as_dict()["flags"][0]["message"]
    pred = g.fit.predict(np.array([0.5, 2.0, 9.0]))
    np.testing.assert_allclose(pred, df["acc"].mean())  # the mean, not a wild curve
    # The same task with signal is not flagged flat.
    g2 = fit_table(ladder(0), FitSpec("loss-to-acc", "task_loss", "acc", chance=0.25)).groups[0]
    assert "flat" not in [f.kind for f in g2.flags]


# --- "how small" for an accuracy ------------------------------------------------------------


def test_smallest_n_for_an_accuracy_inverts_the_chain():
    n_true = 7e8
    target = float(laws.task_accuracy((np.array([n_true]),), TRUE)[0])
    s = smallest_for_accuracy(TRUE, target)
    assert s.n == pytest.approx(n_true, rel=1e-6)
    with pytest.raises(ScalelabError, match="unreachable"):
        smallest_for_accuracy(TRUE, 0.95)  # above the ceiling 0.9


def test_smallest_n_with_an_nd_step1_at_fixed_tokens_and_ratio():
    p = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28, **STEP2}
    n, d = 1e9, 2e10
    loss = float(laws.chinchilla(n, d, p))
    assert size_for_task_loss(loss, p, d=d) == pytest.approx(n, rel=1e-6)
    assert size_for_task_loss(loss, p, ratio=20.0) == pytest.approx(n, rel=1e-6)
    assert size_for_task_loss(1.0, p, ratio=20.0) == float("inf")  # below E


def test_target_through_fit_table_has_an_interval():
    spec = FitSpec(
        "task-accuracy", "N", "acc", loss_col="task_loss", chance=0.25, bootstrap=30, target=0.7
    )
    s = fit_table(ladder(1), spec).groups[0].smallest
    truth = laws.invert_power_law(laws.invert_acc_from_loss(0.7, STEP2), STEP1)
    # One draw: the interval brackets the point answer, which is within 15% of the truth
    # (how often intervals cover the truth is the held-out test above).
    assert s.lo < s.n < s.hi and s.n == pytest.approx(truth, rel=0.15)
    assert s.reachable_fraction == 1.0 and s.at == "smallest N"
