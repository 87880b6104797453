"""Multi-seed statistics on known numbers: mean, std, t intervals and paired tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scalelab.analysis.seeds import mean_ci, paired_test, paired_tests, seed_summary


def test_mean_std_ci_of_one_two_three():
    s = mean_ci([1, 2, 3])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * 1 / sqrt(3)
    assert s["ci_low"] == pytest.approx(2 - half) and s["ci_high"] == pytest.approx(2 + half)


def test_single_value_has_no_spread():
    s = mean_ci([0.9])
    assert s["mean"] == 0.9 and math.isnan(s["std"]) and math.isnan(s["ci_low"])


def test_paired_test_known_answer():
    a, b = [0.90, 0.92, 0.94], [0.88, 0.91, 0.90]  # differences 0.02, 0.01, 0.04
    r = paired_test(a, b)
    d = [0.02, 0.01, 0.04]
    t = (sum(d) / 3) / (stats.tstd(d) / math.sqrt(3))
    assert r["mean_diff"] == pytest.approx(0.07 / 3)
    assert r["t"] == pytest.approx(t)
    assert r["p_value"] == pytest.approx(2 * stats.t.sf(t, 2))
    assert r["diff_ci_low"] < r["mean_diff"] < r["diff_ci_high"]


def test_paired_test_constant_difference_is_undefined():
    r = paired_test([1.0, 2.0], [0.5, 1.5])
    assert r["mean_diff"] == 0.5 and math.isnan(r["p_value"])


def _runs() -> pd.DataFrame:
    rows = []
    acc = {"full": [0.95, 0.96, 0.97], "lora": [0.90, 0.905, 0.93]}
    for method, lr in (("full", 1e-4), ("lora", 2e-3)):
        for seed, y in enumerate(acc[method]):
            rows.append(
                {
                    "run_id": f"{method}{seed}",
                    "status": "done",
                    "model": "m",
                    "method": method,
                    "seed": seed,
                    "task.dataset": "trec",
                    "params.lr": lr,
                    "params.r": 8 if method == "lora" else None,
                    "test_accuracy": y,
                }
            )
    return pd.DataFrame(rows)


def test_seed_summary_groups_configs_over_seeds():
    summary = seed_summary(_runs(), "test_accuracy")
    assert list(summary["method"]) == ["full", "lora"]
    full = summary.iloc[0]
    assert (
        full["n"] == 3
        and full["mean"] == pytest.approx(0.96)
        and full["std"] == pytest.approx(0.01)
    )
    assert full["seeds"] == "0,1,2"


def test_paired_tests_pair_by_seed_ignoring_method_specific_params():
    out = paired_tests(_runs(), "method", "test_accuracy")
    assert len(out) == 1
    r = out.iloc[0]
    assert (r["a"], r["b"], r["n"]) == ("full", "lora", 3)
    want = stats.ttest_rel([0.95, 0.96, 0.97], [0.90, 0.905, 0.93])
    assert r["p_value"] == pytest.approx(want.pvalue) and r["significant"] == (want.pvalue < 0.05)
    assert r["mean_diff"] == pytest.approx(0.145 / 3)


def test_paired_tests_match_other_axes():
    a = _runs().assign(**{"task.dataset": "trec"})
    b = _runs().assign(**{"task.dataset": "sst", "run_id": lambda d: d["run_id"] + "b"})
    out = paired_tests(pd.concat([a, b], ignore_index=True), "method", "test_accuracy")
    assert sorted(out["task.dataset"]) == ["sst", "trec"] and (out["n"] == 3).all()


def test_intervals_of_a_bounded_metric_stay_inside_its_bounds():
    # 0.93 and 0.999: the Student t interval (df 1) reaches 1.403; an accuracy cannot.
    s = mean_ci([0.93, 0.999, float("nan")], bounds=(0.0, 1.0))
    assert s["n"] == 2 and s["ci_high"] == 1.0 and s["ci_low"] == pytest.approx(0.5261, abs=1e-4)
    assert s["ci_cut"] == "upper end 1.403 cut to 1"
    free = mean_ci([0.93, 0.999])
    assert free["ci_high"] == pytest.approx(1.4029, abs=1e-4) and free["ci_cut"] == ""
    # Coverage is unchanged: the mean of a metric in [0, 1] is in [0, 1], so the cut
    # interval holds it exactly when the uncut one does.
    rng = np.random.default_rng(0)
    true = float(np.mean(np.clip(rng.normal(0.97, 0.03, 1_000_000), 0, 1)))
    hits = [0, 0]
    for _ in range(2000):
        x = np.clip(rng.normal(0.97, 0.03, 3), 0, 1)
        for i, b in enumerate((None, (0.0, 1.0))):
            r = mean_ci(x, bounds=b)
            hits[i] += r["ci_low"] <= true <= r["ci_high"]
    assert hits[0] == hits[1]


def test_seed_summary_says_how_many_planned_seeds_have_a_value():
    table = pd.DataFrame({"method": ["a", "a", "b", "b", "b"], "seed": [0, 2, 0, 1, 2],
                          "acc": [0.9, 0.95, 0.8, 0.85, 0.9]})  # fmt: skip
    planned = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2})
    s = seed_summary(table, "acc", planned=planned, bounds=(0, 1)).set_index("method")
    assert s.loc["a", "seed_note"] == "2 of 3 seeds" and s.loc["b", "seed_note"] == ""
    assert list(s["n_planned"]) == [3, 3] and s.loc["a", "seeds"] == "0,2"


def test_paired_tests_skip_a_cell_that_leaves_several_runs_per_seed():
    """A setting only one side has (lora's r over 2 values beside full) leaves two runs per
    seed of lora in the one shared cell: no pairing, where a join used to raise."""
    runs = _runs()
    other_r = runs[runs["method"] == "lora"].assign(
        **{"params.r": 16, "run_id": lambda d: d["run_id"] + "r"}
    )
    out = paired_tests(pd.concat([runs, other_r], ignore_index=True), "method", "test_accuracy")
    assert out.empty
