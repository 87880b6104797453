"""Identifiability flags on every fitter: a parameter on its bound, an interval spanning more
than a stated factor, a holdout error above a stated threshold, fewer points than
parameters + 2; in plain words, in the result, its JSON and the CLI table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis.api import FitSpec, fit_table
from scalelab.analysis.identify import Thresholds
from scalelab.cli import main

X = np.geomspace(1e6, 1e9, 8)


def kinds(group_fit) -> list[str]:
    return [f.kind for f in group_fit.flags]


def test_offset_on_its_bound_is_flagged_in_words():
    # y = A x^-alpha exactly: the best offset E is the bound 0 of E = exp(e) > 0.
    df = pd.DataFrame({"N": X, "loss": 300 * X**-0.3})
    g = fit_table(df, FitSpec("power", "N", "loss")).groups[0]
    (flag,) = [f for f in g.flags if f.kind == "bound"]
    assert flag.param == "E" and flag.message.startswith("E is not identified by these points")
    # A law with an offset in the data has none.
    g = fit_table(df.assign(loss=2 + df["loss"]), FitSpec("power", "N", "loss")).groups[0]
    assert g.flags == ()


def test_wide_interval_is_flagged_at_the_stated_factor():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"N": X, "loss": 300 * X**-0.3 * np.exp(0.01 * rng.standard_normal(8))})
    spec = FitSpec("power", "N", "loss", bootstrap=50)
    g = fit_table(df, spec).groups[0]
    lo, hi = g.boot.ci()["E"]
    wide = [f for f in g.flags if f.kind == "interval"]
    assert [f.param for f in wide] == ["E"] and hi / lo > 10
    assert f"[{lo:.4g}, {hi:.4g}]" in wide[0].message
    # A factor above the interval's own passes it.
    loose = FitSpec(
        "power", "N", "loss", bootstrap=50, thresholds=Thresholds(ci_factor=hi / lo * 2)
    )
    assert "interval" not in kinds(fit_table(df, loose).groups[0])


def test_holdout_error_above_threshold_is_flagged():
    # The offset jumps between the small and the large models: the law cannot extrapolate.
    df = pd.DataFrame({"N": X, "loss": np.where(X < 3e7, 2.0, 2.6) + 300 * X**-0.3})
    g = fit_table(df, FitSpec("power", "N", "loss", holdout=2)).groups[0]
    err = g.holdout.mean_abs_rel_error
    assert err > 0.05 and "holdout" in kinds(g)
    assert any(f"{err:.3g}" in f.message for f in g.flags)
    ok = FitSpec("power", "N", "loss", holdout=2, thresholds=Thresholds(holdout_rel=2 * err))
    assert "holdout" not in kinds(fit_table(df, ok).groups[0])


def test_fewer_points_than_parameters_plus_two_is_flagged():
    df = pd.DataFrame({"N": X, "loss": 2 + 300 * X**-0.3})
    four = fit_table(df.iloc[:4], FitSpec("power", "N", "loss")).groups[0]
    five = fit_table(df.iloc[:5], FitSpec("power", "N", "loss")).groups[0]
    assert "few_points" in kinds(four) and "need parameters + 2 = 5" in four.flags[0].message
    assert "few_points" not in kinds(five)


def test_free_irreducible_loss_on_its_bound_is_flagged_for_loss_to_loss():
    rng = np.random.default_rng(0)
    lx = np.linspace(2.5, 4.0, 10)
    df = pd.DataFrame({"lx": lx, "ly": lx**1.2 * np.exp(0.005 * rng.standard_normal(10))})
    g = fit_table(df, FitSpec("loss-to-loss", "lx", "ly")).groups[0]
    assert "E_x" in [f.param for f in g.flags if f.kind == "bound"]


def test_chain_counts_points_per_step():
    size = np.geomspace(1e7, 1e9, 5)
    loss = 1.2 + 60 * size**-0.22
    acc = 0.25 + 0.65 / (1 + np.exp(4 * (loss - 2.0)))
    df = pd.DataFrame({"N": size, "L": loss, "acc": acc})
    spec = FitSpec("task-accuracy", "N", "acc", loss_col="L", chance=0.25)
    msgs = [f.message for f in fit_table(df, spec).groups[0].flags if f.kind == "few_points"]
    # Step 1 (E, A, alpha) and step 2 (ceiling, k, L0) each have 3 parameters: 5 points pass...
    assert msgs == []
    # ... 4 do not, and the flag names the steps.
    msgs = [f.message for f in fit_table(df.iloc[:4], spec).groups[0].flags]
    assert any("step 1" in m for m in msgs) and any("step 2" in m for m in msgs)


def test_flags_in_json_and_table(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"N": X, "loss": 300 * X**-0.3}).to_csv(path, index=False)
    args = ["fit", str(path), "--law", "power", "--x", "N", "--y", "loss"]
    assert main([*args, "--format", "json"]) == 0
    (obj,) = json.loads(capsys.readouterr().out)
    assert obj["flags"][0]["kind"] == "bound" and obj["flags"][0]["param"] == "E"
    assert main(args) == 0
    assert "flag: E is not identified by these points" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--max-ci-factor", "1"], ["--max-holdout-error", "0"]])
def test_bad_thresholds_are_one_error_line(tmp_path, capsys, bad):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"N": X, "loss": 300 * X**-0.3}).to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "power", "--x", "N", "--y", "loss", *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --max-ci-factor")


def test_a_d_term_the_points_cannot_see_is_flagged_not_printed_as_certain():
    # Every model saw ~300B tokens (as for The Pile's models in the llm-line table): B and
    # beta of L(N, D) get no signal; the fit leaves them at its start.
    rng = np.random.default_rng(0)
    n = np.geomspace(1e7, 1e10, 10)
    d = 3e11 * (1 + 0.02 * rng.standard_normal(10))
    loss = 1.8 + 400 * n**-0.34 + 400 * d**-0.28
    df = pd.DataFrame({"N": n, "D": d, "loss": loss * np.exp(0.005 * rng.standard_normal(10))})
    g = fit_table(df, FitSpec("chinchilla", "N", "loss", x2="D", bootstrap=30)).groups[0]
    (spread,) = [f for f in g.flags if f.kind == "spread"]
    assert spread.param == "beta" and "D varies only 1." in spread.message
    # D spread over two orders of magnitude: no such flag
    df["D"] = np.geomspace(1e9, 1e11, 10)
    g = fit_table(df, FitSpec("chinchilla", "N", "loss", x2="D")).groups[0]
    assert "spread" not in kinds(g)


def test_an_interval_no_refit_moved_means_no_information():
    from types import SimpleNamespace

    from scalelab.analysis.identify import _wide

    fit = SimpleNamespace(params={"B": 148.413, "beta": 1.5, "E": 1.7},
                          extras={"free": ["B", "beta", "E"]})  # fmt: skip
    ci = {"B": (148.413, 148.413), "beta": (1.5, 1.5), "E": (1.6, 1.8)}
    flags = _wide(fit, ci, 10.0, frozenset(), 0.95)
    assert [(f.kind, f.param) for f in flags] == [("interval", "B"), ("interval", "beta")]
    assert all("zero-width interval here means no information" in f.message for f in flags)


def test_a_loss_that_rises_with_size_is_flagged_and_gets_no_allocation(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(1e4, 1e6, 4), 3)
    d = np.tile(np.geomspace(1e6, 1e8, 3), 4)
    rising = 1.5 + 0.02 * np.log(n) + 40 * d**-0.3 + rng.normal(0, 1e-3, n.size)
    df = pd.DataFrame({"N": n, "D": d, "loss": rising})
    g = fit_table(df, FitSpec("chinchilla", "N", "loss", x2="D")).groups[0]
    (flag,) = [f for f in g.flags if f.kind == "sign"]
    assert flag.param == "alpha" and g.fit.params["alpha"] <= 0
    assert "does not fall with N" in flag.message
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    args = ["fit", str(path), "--law", "chinchilla", "--x", "N", "--x2", "D", "--y", "loss"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "flag: alpha =" in out and "N_opt" not in out
    falling = df.assign(loss=1.5 + 30 * n**-0.3 + 40 * d**-0.3)
    g = fit_table(falling, FitSpec("chinchilla", "N", "loss", x2="D")).groups[0]
    assert "sign" not in kinds(g)
