"""PGR on known numbers: roles from a runs table, exclusion of inverted pairs, medians and
the paired bootstrap over seeds and test examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis.w2s import accuracy_table, pgr, roles, summarize_pgr
from scalelab.errors import ScalelabError

SIZES = {"s": 1e6, "m": 5e6, "l": 1e7}


def _runs(acc: dict[tuple[str, str, str], float], seeds=(0, 1)) -> pd.DataFrame:
    """A runs table: weak runs (half a) of s and m, ceilings (half b) of m and l, and
    students per (method, weak, strong). acc: (role, model, weak) -> test accuracy, where
    role is weak | ceiling | a method and `weak` is "" for the first two."""
    rows = []
    for seed in seeds:
        for (role, model, weak), a in acc.items():
            rid = f"{role}-{model}-{weak}-{seed}"
            row = {"run_id": rid, "status": "done", "model": model, "seed": seed,
                   "method": "full", "variant": role, "task.dataset": "d",
                   "task.half": "a" if role == "weak" else "b", "params.labels": None,
                   "test_accuracy": a, "non_embedding_params": SIZES[model]}  # fmt: skip
            if role not in ("weak", "ceiling"):
                row.update(method="w2s", chain_step=1, chain_steps=1,
                           **{"params.labels": f"run:weak-{weak}--{seed}"})  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def test_pgr_of_known_numbers_and_an_inverted_gap():
    assert pgr(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert pgr(0.65, 0.7, 0.9) == pytest.approx(-0.25)  # worse than its supervisor
    assert np.isnan(pgr(0.8, 0.7, 0.7)) and np.isnan(pgr(0.8, 0.9, 0.7))


def test_medians_per_method_exclude_and_list_pairs_whose_ceiling_does_not_beat_the_weak():
    acc = {("weak", "s", ""): 0.6, ("weak", "m", ""): 0.8,
           ("ceiling", "m", ""): 0.7, ("ceiling", "l", ""): 0.9,
           ("naive", "m", "s"): 0.65,   # PGR (0.65 - 0.6) / (0.7 - 0.6) = 0.5
           ("naive", "l", "s"): 0.72,   # (0.72 - 0.6) / 0.3 = 0.4
           ("naive", "l", "m"): 0.83,   # (0.83 - 0.8) / 0.1 = 0.3
           ("logconf", "l", "s"): 0.78,  # 0.6
           ("logconf", "m", "m"): 0.75}  # m's ceiling 0.7 < m's weak 0.8: inverted  # fmt: skip
    s = summarize_pgr(_runs(acc), n_boot=200)
    pairs = s.pairs.set_index(["method", "weak", "strong"])
    assert pairs.at[("naive", "s", "m"), "pgr"] == pytest.approx(0.5)
    assert pairs.at[("naive", "m", "l"), "pgr"] == pytest.approx(0.3)
    assert pairs.at[("logconf", "m", "m"), "excluded"]
    assert s.excluded == ["m -> m (logconf): strong ceiling 0.7000 <= weak ceiling 0.8000"]
    med = s.medians.set_index("method")
    assert med.at["naive", "median_pgr"] == pytest.approx(0.4)
    assert med.at["logconf", "median_pgr"] == pytest.approx(0.6)
    assert (med.at["logconf", "pairs"], med.at["logconf", "excluded"]) == (1, 1)
    # identical seeds and no per-example results: the interval collapses on the point
    assert med.at["naive", "ci_low"] == pytest.approx(0.4)
    assert med.at["naive", "ci_high"] == pytest.approx(0.4)
    assert s.baseline == "naive" and s.resampled == "seeds"
    d = s.differences.set_index("method")
    assert d.at["logconf", "difference"] == pytest.approx(0.2)
    table = accuracy_table(_runs(acc), s).set_index("model")
    assert list(table.index) == ["s", "m", "l"]  # by size
    assert table.at["s", "weak ceiling"] == pytest.approx(0.6)
    assert table.at["l", "strong ceiling"] == pytest.approx(0.9)
    assert table.at["l", "naive"] == pytest.approx((0.72 + 0.83) / 2)


def test_the_bootstrap_resamples_test_examples_paired_across_runs():
    acc = {("weak", "s", ""): 0.6, ("ceiling", "l", ""): 0.9, ("naive", "l", "s"): 0.75}
    runs = _runs(acc, seeds=(0, 1, 2))
    rng = np.random.default_rng(0)
    n = 400
    correct = {}
    for rid, a in zip(runs["run_id"], runs["test_accuracy"], strict=True):
        c = np.zeros(n, bool)
        c[rng.choice(n, int(a * n), replace=False)] = True
        correct[rid] = c
    s = summarize_pgr(runs, correct, n_boot=300, seed=1)
    assert s.resampled == "seeds and test examples"
    med = s.medians.iloc[0]
    assert med["median_pgr"] == pytest.approx(0.5)
    assert med["ci_low"] < 0.5 < med["ci_high"] and med["ci_high"] - med["ci_low"] < 0.5
    # a fixed bootstrap seed gives the same interval
    again = summarize_pgr(runs, correct, n_boot=300, seed=1).medians.iloc[0]
    assert (again["ci_low"], again["ci_high"]) == (med["ci_low"], med["ci_high"])


def test_students_are_paired_with_their_own_seeds_weak_run_and_ceiling():
    acc = {("weak", "s", ""): 0.6, ("ceiling", "l", ""): 0.9, ("naive", "l", "s"): 0.75}
    r = roles(_runs(acc))
    assert list(r["seed"]) == [0, 1]
    assert list(r["weak_id"]) == ["weak-s--0", "weak-s--1"]
    assert list(r["ceiling_id"]) == ["ceiling-l--0", "ceiling-l--1"]


def test_no_student_with_a_ceiling_is_one_error():
    acc = {("weak", "s", ""): 0.6, ("naive", "l", "s"): 0.75}
    with pytest.raises(ScalelabError, match="no weak-to-strong student"):
        summarize_pgr(_runs(acc))
