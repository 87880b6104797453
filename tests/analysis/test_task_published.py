"""Task accuracy on published data: the 129 models of "LLMs on the Line" (copied to
tests/analysis/data; see its README). Per pretraining-data group, the largest models'
accuracy is predicted from the smaller ones; the README table is this measurement."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from scalelab.analysis.api import FitSpec, fit_table
from scalelab.analysis.table import read_csv

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data" / "llm_line_tasks.csv"


def _script():
    path = REPO / "benchmarks" / "task_accuracy_llm_line.py"
    spec = importlib.util.spec_from_file_location("task_accuracy_llm_line", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BENCH = _script()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with np.errstate(over="ignore", invalid="ignore"):
        return BENCH.measure(DATA, holdout=3)


def test_data_copy_has_every_model():
    df = read_csv(DATA)
    assert len(df) == 129 and df["Pretraining Data"].nunique() == 5


def test_every_group_with_sizes_is_predicted_per_task(rows):
    pairs = [r for r in rows if "two_step" in r]
    groups = {r["group"] for r in pairs}
    assert groups == {"C4", "FineWeb-Edu", "The Pile", "The Pile Deduped"}
    # Dolma has no sizes: step 2 alone, on every task.
    assert {r["task"] for r in rows if r["group"] == "Dolma"} == set(BENCH.CHOICES)
    for r in pairs:
        for key in ("two_step", "step2_alone", "direct_power"):
            assert 0 <= r[key] < 0.15, (r["group"], r["task"], key, r[key])


def test_groups_at_chance_are_skipped_with_the_reason():
    df = read_csv(DATA)
    spec = FitSpec(
        "loss-to-acc",
        "OpenBookQA Loss",
        "OpenBookQA Accuracy",
        chance=0.25,
        group="Pretraining Data",
    )
    report = fit_table(df, spec)
    assert any("'C4'" in s and "nothing above chance" in s for s in report.skipped)


def test_no_prediction_below_chance(rows):
    assert sum(r["below_chance"] for r in rows) == 0
    # The fitted curves themselves stay at or above chance over any task loss.
    df = read_csv(DATA)
    grid = np.linspace(0.0, 20.0, 201)
    for task, k in BENCH.CHOICES.items():
        spec = FitSpec(
            "loss-to-acc",
            f"{task} Loss",
            f"{task} Accuracy",
            chance=1 / k,
            group="Pretraining Data",
        )
        for g in fit_table(df, spec).groups:
            assert np.all(g.fit.predict(grid) >= 1 / k - 1e-12), (task, g.group)


def test_small_groups_are_flagged():
    df = read_csv(DATA)
    df = df[df["Size"].notna()].assign(C=6 * df["Size"] * df["Tokens"])
    spec = FitSpec(
        "task-accuracy", "C", "HellaSwag Accuracy", loss_col="HellaSwag Loss", chance=0.25,
        group="Pretraining Data",
    )  # fmt: skip
    smallest = df.sort_values("C").groupby("Pretraining Data").head(4)
    for g in fit_table(smallest, spec).groups:
        assert "few_points" in [f.kind for f in g.flags], g.group
    enough = df.sort_values("C").groupby("Pretraining Data").head(8)
    for g in fit_table(enough, spec).groups:
        assert "few_points" not in [f.kind for f in g.flags], g.group


def test_readme_table_is_this_measurement(rows):
    readme = (REPO / "README.md").read_text()
    assert BENCH.markdown(rows) in readme
    s = BENCH.summary(rows)
    assert f"on {s['two_step_wins']} of {s['pairs']}" in readme
    assert f"(the exponential form of Gadre et al. on {s['exponential_wins']})" in readme
    assert f"for {s['tasks_direct_majority']} of 9 tasks, with {s['tasks_tied']} tied" in readme
    assert f"and {s['tasks_two_step_majority']} for the chain" in readme
    assert f"step 2 alone misses by\n{100 * s['mean']['step2_alone']:.1f} points" in readme
    assert f"{s['flagged_pairs']} of the {len(rows)} fits carry" in readme
    assert f"{100 * s['mean']['two_step']:.1f} points" in readme
    assert f"{100 * s['mean']['direct_power']:.1f} points" in readme
