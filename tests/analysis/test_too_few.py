"""Statistics over too few seeds, refits or points: NaN with a flag, or a clear error; never
a zero-width interval that looks certain."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis import laws
from scalelab.analysis.api import FitSpec, fit_table
from scalelab.analysis.seeds import mean_ci, seed_summary
from scalelab.analysis.smallest import smallest_n
from scalelab.analysis.uncertainty import Bootstrap, prediction_band
from scalelab.errors import ScalelabError

TRUE = {"E": 2.0, "A": 300.0, "alpha": 0.3}


def power_table(n: int) -> pd.DataFrame:
    x = np.geomspace(1e6, 1e9, n)
    noise = np.exp(0.01 * np.random.default_rng(0).standard_normal(n))
    return pd.DataFrame({"non_embedding_params": x, "val_loss": laws.power_law(x, TRUE) * noise})


def one_refit() -> Bootstrap:
    return Bootstrap({k: np.array([v]) for k, v in TRUE.items()}, 20, 19, 0)


# --- seeds ----------------------------------------------------------------------------------


def test_mean_ci_flags_too_few_values():
    one, none, two = mean_ci([0.9]), mean_ci([]), mean_ci([0.9, 0.8])
    assert math.isnan(one["std"]) and math.isnan(one["ci_high"]) and "1 value" in one["flag"]
    assert math.isnan(none["mean"]) and "no values" in none["flag"]
    assert two["flag"] == "" and two["ci_low"] < two["ci_high"]
    # NaN metrics (failed runs) do not count as seeds.
    assert mean_ci([0.9, float("nan")])["flag"] == one["flag"]


def test_seed_summary_of_a_single_seed_is_nan_and_flagged():
    runs = pd.DataFrame(
        {"model": ["a", "a", "b"], "method": "m", "seed": [0, 1, 0], "acc": [0.8, 0.9, 0.7]}
    )
    summary = seed_summary(runs, "acc").set_index("model")
    assert summary.loc["a", "flag"] == "" and summary.loc["a", "n"] == 2
    assert math.isnan(summary.loc["b", "std"]) and math.isnan(summary.loc["b", "ci_low"])
    assert "1 value" in summary.loc["b", "flag"]


def test_seed_summary_of_no_runs_is_a_clear_error():
    with pytest.raises(ScalelabError, match="no runs"):
        seed_summary(pd.DataFrame({"model": [], "seed": [], "acc": []}), "acc")


# --- bootstrap ------------------------------------------------------------------------------


def test_one_refit_gives_nan_intervals_not_zero_width():
    boot = one_refit()
    assert boot.n_ok == 1 and boot.too_few
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in boot.ci().values())
    assert "1 of 20 bootstrap refits" in boot.notes()[0]


def test_no_refit_gives_nan_intervals():
    boot = Bootstrap({k: np.array([]) for k in TRUE}, 5, 5, 0)
    assert boot.too_few and set(boot.ci()) == set(TRUE)
    assert all(math.isnan(v[0]) for v in boot.ci().values())
    with pytest.raises(ScalelabError, match="no bootstrap refit"):
        prediction_band(lambda p: np.ones(3), boot)


def test_prediction_band_of_one_refit_is_nan():
    grid = np.geomspace(1e6, 1e9, 5)
    lo, hi = prediction_band(lambda p: laws.power_law(grid, p), one_refit())
    assert lo.shape == hi.shape == (5,) and np.isnan(lo).all() and np.isnan(hi).all()


def test_smallest_n_with_one_refit_has_no_interval():
    s = smallest_n(TRUE, 3.0, [TRUE])
    assert math.isnan(s.lo) and math.isnan(s.hi) and s.reachable_fraction == 1.0


def test_fit_with_a_single_refit_flags_instead_of_a_zero_width_ci():
    g = fit_table(power_table(9), FitSpec("power", "non_embedding_params", "val_loss", bootstrap=1))
    g = g.groups[0]
    out = g.as_dict()
    assert out["ci"] == {} and out["bootstrap"]["too_few"] and out["bootstrap"]["ok"] == 1
    assert any("no confidence intervals" in n for n in out["notes"])


def test_few_refits_are_flagged_as_unresolved():
    from scalelab.analysis.uncertainty import resolving_samples

    assert resolving_samples(0.95) == 41 and resolving_samples(0.9) == 21
    spec = FitSpec("power", "non_embedding_params", "val_loss", bootstrap=10)
    out = fit_table(power_table(9), spec).groups[0].as_dict()
    assert out["bootstrap"]["too_few"] is False and set(out["ci"]) == set(TRUE)
    assert any("fewer than 41" in n for n in out["notes"])


# --- holdout --------------------------------------------------------------------------------


def test_holdout_leaving_too_few_points_for_the_refit_is_an_error():
    # 5 points, hold out 2: the 3-parameter power law would be refitted on 3 points exactly.
    spec = FitSpec("power", "non_embedding_params", "val_loss", holdout=2)
    with pytest.raises(ScalelabError, match="too few points for --holdout 2.*keeps 3 of 5"):
        fit_table(power_table(5), spec)
    fit_table(power_table(6), spec)  # 4 points left: enough
