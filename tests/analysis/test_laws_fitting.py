from __future__ import annotations

import numpy as np
import pytest

from scalelab.analysis import laws
from scalelab.analysis.chinchilla_fast import default_grid, huber_lse
from scalelab.analysis.fitting import fit_chinchilla, fit_loss_to_loss, fit_power_law
from scalelab.errors import ScalelabError

TRUE_POWER = {"E": 1.7, "A": 400.0, "alpha": 0.34}


def synthetic_power(noise: float = 0.0, seed: int = 0, n: int = 12):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e6, 1e10, n)
    y = laws.power_law(x, TRUE_POWER) * np.exp(noise * rng.standard_normal(n))
    return x, y


def test_power_law_recovers_parameters_exactly_without_noise():
    x, y = synthetic_power()
    fit = fit_power_law(x, y)
    for k, v in TRUE_POWER.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-4)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.residuals.shape == (12,)


def test_power_law_with_noise_within_two_percent():
    x, y = synthetic_power(noise=0.002, seed=1, n=20)
    fit = fit_power_law(x, y)
    for k, v in TRUE_POWER.items():
        assert fit.params[k] == pytest.approx(v, rel=0.02), k


def test_pure_power_law():
    x = np.geomspace(1e3, 1e9, 10)
    fit = fit_power_law(x, 50.0 * x**-0.2, offset=False)
    assert fit.law == "pure-power"
    assert set(fit.params) == {"A", "alpha"}
    assert fit.params["A"] == pytest.approx(50.0, rel=1e-6)
    assert fit.params["alpha"] == pytest.approx(0.2, rel=1e-6)


def test_invert_power_law_round_trip_and_unreachable():
    x = laws.invert_power_law(2.0, TRUE_POWER)
    assert laws.power_law(x, TRUE_POWER) == pytest.approx(2.0)
    assert laws.invert_power_law(1.6, TRUE_POWER) == float("inf")


def test_compute_optimal_minimises_loss_on_isoflop():
    p = {"E": 1.8, "A": 480.0, "alpha": 0.35, "B": 2100.0, "beta": 0.37}
    c = 1e21
    n_opt, d_opt = laws.compute_optimal(c, p)
    assert 6 * n_opt * d_opt == pytest.approx(c, rel=1e-9)
    ns = n_opt * np.array([0.5, 0.9, 1.1, 2.0])
    assert np.all(laws.chinchilla(ns, c / (6 * ns), p) > laws.chinchilla(n_opt, d_opt, p))


def test_huber_lse_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    log_n, log_d = rng.uniform(18, 23, 30), rng.uniform(20, 26, 30)
    log_l = np.log(
        laws.chinchilla(
            np.exp(log_n), np.exp(log_d), {"E": 1.8, "A": 400, "alpha": 0.3, "B": 900, "beta": 0.3}
        )
    )
    log_l += 0.01 * rng.standard_normal(30)
    theta = np.array([5.0, 7.0, 0.4, 0.3, 0.35])
    _, g = huber_lse(theta, log_n, log_d, log_l)
    eps = 1e-6
    num = [
        (
            huber_lse(theta + eps * e, log_n, log_d, log_l)[0][0]
            - huber_lse(theta - eps * e, log_n, log_d, log_l)[0][0]
        )
        / (2 * eps)
        for e in np.eye(5)
    ]
    np.testing.assert_allclose(g[0], num, rtol=1e-4, atol=1e-9)


def test_default_grid_is_the_4500_hoffmann_starts():
    g = default_grid()
    assert g.shape == (4500, 5)
    assert sorted(set(g[:, 2])) == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_chinchilla_recovers_synthetic_parameters():
    rng = np.random.default_rng(3)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 80))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 80))
    true = {"E": 1.9, "A": 500.0, "alpha": 0.33, "B": 1500.0, "beta": 0.31}
    fit = fit_chinchilla(n, d, laws.chinchilla(n, d, true))
    for k, v in true.items():
        assert fit.params[k] == pytest.approx(v, rel=0.01), k


def test_loss_to_loss_with_given_e_is_exact():
    lx = np.linspace(2.5, 4.0, 10)
    p = {"K": 1.2, "kappa": 1.4, "E_x": 1.8, "E_y": 1.1}
    fit = fit_loss_to_loss(lx, laws.loss_to_loss(lx, p), e_x=1.8, e_y=1.1)
    assert fit.params["K"] == pytest.approx(1.2, rel=1e-9)
    assert fit.params["kappa"] == pytest.approx(1.4, rel=1e-9)
    assert fit.notes == ()


def test_loss_to_loss_free_e_is_bounded_and_noted():
    lx = np.linspace(2.5, 4.0, 15)
    p = {"K": 1.2, "kappa": 1.4, "E_x": 1.8, "E_y": 1.1}
    fit = fit_loss_to_loss(lx, laws.loss_to_loss(lx, p))
    assert 0 <= fit.params["E_x"] < lx.min()
    assert fit.r2 > 0.9999
    assert any("free" in n for n in fit.notes)


def test_loss_to_loss_rejects_e_above_data():
    lx = np.linspace(2.5, 4.0, 5)
    with pytest.raises(ScalelabError, match="E_x"):
        fit_loss_to_loss(lx, lx, e_x=3.0, e_y=0.5)


def test_inverting_a_nearly_flat_power_law_gives_inf_not_an_overflow():
    """A flat fit (alpha ~ 0, as degenerate bootstrap refits give) puts the crossover past
    any float: the answer is 'not reached', not a crash of the whole report."""
    from scalelab.analysis.laws import invert_power_law

    assert invert_power_law(2.0, {"E": 1.0, "A": 10.0, "alpha": 1e-5}) == float("inf")
    assert invert_power_law(2.0, {"E": 1.0, "A": 10.0, "alpha": 0.5}) == pytest.approx(100.0)
    assert invert_power_law(0.5, {"E": 1.0, "A": 1.0, "alpha": 1.0}) == float("inf")
