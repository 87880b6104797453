"""Data scaling on runs tables drawn from a known law: the fit recovers alpha, the point of
diminishing returns is where doubling n gains `min_gain`, and the answer says when the
data do not bound it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis import laws
from scalelab.analysis.data_scaling import (
    data_scaling,
    diminishing_point,
    doubling_gain,
    varies_data,
)
from scalelab.errors import ScalelabError

LAW = {"small": (1e6, {"A": 1.2, "alpha": 0.5, "E": 0.06}),
       "big": (1e7, {"A": 0.9, "alpha": 0.45, "E": 0.04})}  # fmt: skip
SIZES = (50, 100, 200, 500, 1000, 2000)
SHOTS = (1, 5, 10)  # x 6 classes


def runs_table(sizes=SIZES, shots=SHOTS, noise=0.002, seeds=(0, 1), draws=(0, 1, 2), seed=0):
    """Runs of two models: train_size runs (seeds) and k-per-class runs (seeds x draws),
    test accuracy = 1 - law(n) plus Gaussian noise of `noise`."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, (size, law) in LAW.items():
        cells = [({"task.train_size": n}, n, 0) for n in sizes]
        cells += [({"task.k_per_class": k, "task.draw": d}, 6 * k, d) for k in shots for d in draws]
        for task, n, _ in cells:
            for s in seeds:
                acc = 1 - laws.power_law(n, law) + rng.normal(0, noise)
                rows.append({"run_id": f"{model}-{n}-{task}-{s}", "status": "done",
                             "model": model, "method": "full", "seed": s,
                             "task.dataset": "trec", **task, "train_examples": n,
                             "params.epochs": 20 if "task.k_per_class" in task else 3,
                             "non_embedding_params": size, "test_accuracy": acc})  # fmt: skip
    return pd.DataFrame(rows)


def test_n_star_is_where_a_doubling_gains_min_gain():
    params = {"A": 0.9, "alpha": 0.5, "E": 0.05}
    n = diminishing_point(params, 0.01)
    grid = np.geomspace(1, 1e6, 200_001)  # brute force: err(n) - err(2n) from the law itself
    gain = laws.power_law(grid, params) - laws.power_law(2 * grid, params)
    first = grid[np.argmax(gain < 0.01)]
    assert n == pytest.approx(first, rel=1e-4)
    assert doubling_gain(n, params) == pytest.approx(0.01)
    assert diminishing_point(params, 0.001) > n  # a smaller gain: further out
    assert diminishing_point({"A": 0.9, "alpha": -0.1}, 0.01) == 0.0  # never gains
    assert diminishing_point({"A": 1e6, "alpha": 1e-3}, 0.01) == float("inf")  # past floats
    assert diminishing_point({"A": 0.5, "alpha": 1e-17}, 0.01) == 0.0  # 2^-alpha rounds to 1
    assert diminishing_point({"A": 1e30, "alpha": 1e-17}, 1e-30) > 0
    with pytest.raises(ValueError):
        diminishing_point(params, 0.0)


def test_fit_recovers_alpha_and_the_data_bound_n_star():
    result = data_scaling(runs_table(), "test_accuracy", higher_is_better=True,
                          bounds=(0, 1), n_boot=200)  # fmt: skip
    assert [c.model for c in result.curves] == ["small", "big"]  # by size
    for c in result.curves:
        size, law = LAW[c.model]
        assert c.size == size
        assert c.fit.fit.params["alpha"] == pytest.approx(law["alpha"], abs=0.05)
        lo, hi = c.fit.boot.ci()["alpha"]
        assert lo < c.fit.fit.params["alpha"] < hi and hi - lo < 0.1
        r = c.returns
        assert r.lo < r.n < r.hi and r.n == pytest.approx(diminishing_point(law, 0.01), rel=0.2)
        assert r.where == "within" and r.bounded and "the data bound it" in r.text()
        assert r.metric_at == pytest.approx(1 - laws.power_law(r.n, c.fit.fit.params))
        assert c.fit.holdout is not None  # 9 distinct n: the largest is held out
        assert not [f for f in c.fit.flags if f.kind != "holdout"]
    points = result.curves[0].points.set_index("n")
    assert points.at[6.0, "runs"] == 6 and points.at[6.0, "draws"] == 3  # seeds x draws
    assert points.at[6.0, "few_shot"] and not points.at[50.0, "few_shot"]
    assert points.at[50.0, "ci_low"] < points.at[50.0, "mean"] < points.at[50.0, "ci_high"]
    assert result.notes == ("params.epochs changes with the number of examples, never between "
                            "runs at one n: part of each point's recipe, not a curve of its own",)  # fmt: skip
    grid = result.grid().set_index("model")
    assert list(grid.columns[3:]) == [6, 30, 50, 60, 100, 200, 500, 1000, 2000]
    assert grid.at["big", 2000] > grid.at["small", 2000]


def test_an_n_star_past_the_data_is_said_to_be_unbounded():
    runs = runs_table(sizes=(50, 100, 200), shots=(1, 2, 5))  # n* of both lies near 1,000
    result = data_scaling(runs, "test_accuracy", higher_is_better=True, n_boot=100)
    for c in result.curves:
        assert c.returns.where == "beyond" and not c.returns.bounded
        assert "an extrapolation, not bounded by the data" in c.returns.text()


def test_flags_show_where_the_points_do_not_determine_the_law():
    runs = runs_table(sizes=(100, 200, 500, 1000), shots=(), seeds=(0,))
    result = data_scaling(runs, "test_accuracy", higher_is_better=True, n_boot=50)
    kinds = {f.kind for f in result.curves[0].fit.flags}
    assert "few_points" in kinds  # 4 runs for 3 parameters
    for seed in (0, 1, 2):  # accuracy that does not grow with n: noise around 0.5
        noise = np.random.default_rng(seed).normal(0, 0.01, len(runs_table(shots=())))
        flat = runs_table(shots=(), seed=seed).assign(test_accuracy=0.5 + noise)
        c = data_scaling(flat, "test_accuracy", higher_is_better=True, n_boot=50).curves[0]
        assert ("interval", "alpha") in {(f.kind, f.param) for f in c.fit.flags}
        assert c.returns.where == "below" and not c.returns.bounded
        assert "every measured doubling already gains less" in c.returns.text()


def test_a_swept_setting_splits_curves_and_too_few_n_is_said_not_raised():
    runs = runs_table(shots=())
    other = runs.assign(**{"params.lr": 3e-4, "test_accuracy": runs["test_accuracy"] - 0.05})
    both = pd.concat([runs.assign(**{"params.lr": 1e-4}), other], ignore_index=True)
    result = data_scaling(both, "test_accuracy", higher_is_better=True, n_boot=0)
    assert sorted(c.name for c in result.curves) == ["big full lr=1e-4", "big full lr=3e-4",
                                                     "small full lr=1e-4", "small full lr=3e-4"]  # fmt: skip
    assert result.notes == ()  # the lr splits curves; it is no recipe that changes with n
    few = data_scaling(runs_table(sizes=(50, 100), shots=()), "test_accuracy",
                       higher_is_better=True, n_boot=0)  # fmt: skip
    assert few.curves[0].fit is None and "too few" in few.curves[0].why_not


def test_a_setting_that_only_some_runs_have_splits_curves_and_drops_none():
    """Runs without a setting (no augmentation, NaN in its columns) are a curve of their own,
    not dropped: pandas 3 keeps missing values missing through astype(str), and groupby
    would silently drop every such row (data_centric_trec printed no curve at all)."""
    runs = runs_table(shots=())
    augmented = runs[runs["task.train_size"] == 200].assign(
        **{"task.augment.ratio": 0.5, "train_augmented": 800, "test_accuracy": 0.9}
    )
    both = pd.concat([runs, augmented], ignore_index=True)
    result = data_scaling(both, "test_accuracy", higher_is_better=True, n_boot=0)
    assert sum(len(c.points) for c in result.curves) == 6 * 2 + 2
    assert sum(int(c.points["runs"].sum()) for c in result.curves) == len(both)
    assert [c.name for c in result.curves] == ["small full", "small full ratio=0.5",
                                               "big full", "big full ratio=0.5"]  # fmt: skip


def test_a_staged_experiments_curves_are_named_by_stage_and_what_varies_within_it():
    sizes = runs_table(shots=()).assign(stage="sizes", **{"params.epochs": 8})
    few = runs_table(sizes=()).assign(stage="fewshot", **{"params.epochs": 20})
    aug = sizes[sizes["task.train_size"] == 200].assign(
        stage="augment",
        **{"params.epochs": 4, "task.augment.method": "eda", "task.augment.alpha_sr": 0.05},
    )
    aug = pd.concat([aug.assign(**{"task.augment.ratio": r, "train_augmented": r * 1600})
                     for r in (0.0, 0.5)], ignore_index=True)  # fmt: skip
    runs = pd.concat([sizes, few, aug], ignore_index=True)
    result = data_scaling(runs[runs["model"] == "small"], "test_accuracy",
                          higher_is_better=True, n_boot=0)  # fmt: skip
    # the stage names a curve; EDA's method and alpha, and every stage's epochs, are implied
    assert [c.name for c in result.curves] == ["small full (sizes)", "small full (fewshot)",
                                               "small full (augment) ratio=0",
                                               "small full (augment) ratio=0.5"]  # fmt: skip


def test_loss_is_fitted_as_it_is_and_bad_input_is_one_error():
    runs = runs_table(shots=()).assign(test_loss=lambda t: 1 - t["test_accuracy"])
    c = data_scaling(runs, "test_loss", higher_is_better=False, n_boot=0).curves[0]
    assert c.fit.fit.params["alpha"] == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ScalelabError, match="no metric 'nope' in the results"):
        data_scaling(runs, "nope", higher_is_better=True)
    with pytest.raises(ScalelabError, match="--min-gain must be a positive number"):
        data_scaling(runs, "test_accuracy", higher_is_better=True, min_gain=0)
    with pytest.raises(ScalelabError, match="missing column 'train_examples'"):
        data_scaling(runs.drop(columns="train_examples"), "test_accuracy", higher_is_better=True)
    with pytest.raises(ScalelabError, match="must lie in \\[0, 1\\]"):
        data_scaling(runs.assign(test_accuracy=2.0), "test_accuracy", higher_is_better=True)


def test_only_runs_that_vary_their_data_have_a_data_scaling_section():
    runs = runs_table()
    assert varies_data(runs)
    one = runs[runs["task.train_size"] == 50]
    assert not varies_data(one) and not varies_data(runs.drop(columns="train_examples"))
    # a pretraining stage (no train_size, no train_examples) before one fine-tuning size
    base = pd.DataFrame({"run_id": ["p0"], "method": ["pretrain"], "val_loss": [2.4]})
    assert not varies_data(pd.concat([base, one], ignore_index=True))
