"""Active-learning analysis on synthetic curves with known answers: where random sampling
reaches an accuracy (log-linear between rounds, censored outside its range), the label
saving of a strategy against random with its bootstrap interval over seeds, and the
learning curves' means and intervals."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scalelab.analysis.active import (
    active_points,
    label_savings,
    labels_to_reach,
    learning_curves,
)
from scalelab.errors import ScalelabError

LABELS = [100, 200, 400, 800]
RANDOM = [0.5, 0.6, 0.7, 0.8]  # +0.1 per doubling: linear in log(labels)


def test_labels_to_reach_interpolates_on_log_labels_and_flags_the_ends():
    assert labels_to_reach(LABELS, RANDOM, 0.65) == (pytest.approx(math.sqrt(200 * 400)), "")
    assert labels_to_reach(LABELS, RANDOM, 0.7) == (pytest.approx(400), "")
    assert labels_to_reach(LABELS, RANDOM, 0.5) == (100, "")
    assert labels_to_reach(LABELS, RANDOM, 0.4) == (100, "at most")
    assert labels_to_reach(LABELS, RANDOM, 0.9) == (800, "more than")
    # a dip: the first crossing counts
    assert labels_to_reach(LABELS, [0.5, 0.7, 0.6, 0.8], 0.65) == (
        pytest.approx(100 * 2**0.75), "")  # fmt: skip
    with pytest.raises(ValueError, match="ascending"):
        labels_to_reach([200, 100], [0.5, 0.6], 0.55)


def _tables(curves: dict[tuple[str, int], list[float]]):
    runs, points = [], []
    for i, ((strategy, seed), acc) in enumerate(curves.items()):
        rid = f"r{i}"
        runs.append({"run_id": rid, "method": "active", "seed": seed, "status": "done",
                     "model": "m", "params.strategy": strategy, "params.budget": 800})  # fmt: skip
        points += [
            {"run_id": rid, "step": L, "test_accuracy": a} for L, a in zip(LABELS, acc, strict=True)
        ]
    return pd.DataFrame(runs), pd.DataFrame(points)


def test_the_saving_is_the_labels_random_needs_over_the_strategys_labels():
    runs, curves = _tables({
        ("random", 0): RANDOM, ("random", 1): RANDOM,
        ("margin", 0): [0.5, 0.6, 0.7, 0.8],  # as random: saving 1
        ("margin", 1): [0.5, 0.7, 0.8, 0.9],  # one doubling ahead: saving 2 (then censored)
    })  # fmt: skip
    pts = active_points(runs, curves)
    assert set(pts["setting"]) == {""} and len(pts) == 16
    s = label_savings(pts, n_boot=400, seed=1).set_index("labels")
    assert list(s["strategy"].unique()) == ["margin"]
    # means 0.5, 0.65, 0.75, 0.85: random reaches 0.65 at sqrt(200 * 400) labels
    assert s.at[100, "ratio"] == 1.0 and s.at[100, "censored"] == ""
    assert s.at[200, "ratio"] == pytest.approx(math.sqrt(2))
    assert s.at[400, "ratio"] == pytest.approx(math.sqrt(2))
    assert s.at[800, "censored"] == "more than" and s.at[800, "ratio"] == 1.0
    # bootstrap over seeds: {0, 0} gives 1, {1, 1} gives 2 (each drawn 1 in 4)
    assert s.at[200, "ci_low"] == pytest.approx(1.0) and s.at[200, "ci_high"] == pytest.approx(2.0)
    assert s.at[100, "ci_low"] == s.at[100, "ci_high"] == 1.0
    lc = learning_curves(pts).set_index(["strategy", "labels"])
    assert lc.at[("margin", 200), "mean"] == pytest.approx(0.65)
    assert lc.at[("margin", 200), "n"] == 2
    assert lc.at[("random", 200), "ci_low"] == lc.at[("random", 200), "ci_high"] == 0.6
    assert lc.at[("margin", 800), "ci_high"] <= 1.0  # cut to the bounds


def test_strategies_are_compared_within_a_setting_and_need_a_baseline():
    runs, curves = _tables({("random", 0): RANDOM, ("entropy", 0): [0.5, 0.7, 0.8, 0.9]})
    two = pd.concat([runs, runs.assign(run_id=runs["run_id"] + "b", model="m2")])
    both = pd.concat([curves, curves.assign(run_id=curves["run_id"] + "b")])
    pts = active_points(two, both)
    assert set(pts["setting"]) == {"model=m", "model=m2"}
    s = label_savings(pts, n_boot=10)
    assert len(s) == 8 and s["ci_low"].isna().all()  # one seed: no interval
    assert s[s["labels"] == 200]["ratio"].tolist() == pytest.approx([2.0, 2.0])
    labelled = two.assign(variant=two["params.strategy"].map({"random": "uniform",
                                                              "entropy": "H"}))  # fmt: skip
    s = label_savings(active_points(labelled, both), n_boot=10)  # random under another name
    assert set(s["strategy"]) == {"H"} and len(s) == 8
    only = active_points(*_tables({("entropy", 0): RANDOM}))
    with pytest.raises(ScalelabError, match="no strategy to compare with 'random'"):
        label_savings(only)
    with pytest.raises(ScalelabError, match="no finished active-learning runs"):
        active_points(runs.assign(method="full"), curves)


def test_console_table_shows_a_setting_column_only_where_settings_differ():
    import pandas as pd

    from scalelab.cli.active import _text

    def curves(settings):
        return pd.DataFrame({"setting": settings, "strategy": ["random", "margin"],
                             "labels": [200, 200], "n": [3, 3], "mean": [0.5, 0.6],
                             "ci_low": [0.4, 0.5], "ci_high": [0.6, 0.7]})  # fmt: skip

    plain = _text(curves(["", ""]), None, "test_accuracy", 10)
    assert "setting" not in plain and "\nrandom " in plain
    both = _text(curves(["lr=1e-4", "lr=3e-4"]), None, "test_accuracy", 10)
    assert "setting" in both and "\nlr=1e-4" in both
