"""The smallest model that beats a reference: known answers, a known non-answer, a cell too
thin to test, and a crossover fit the points cannot support."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis.beats import smallest_that_beats, verdicts
from scalelab.errors import ScalelabError

SIZES = {"m1": 1e4, "m2": 3e4, "m3": 1e5, "m4": 3e5, "big": 3e6}


def table(cells: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = [
        {"method": me, "model": mo, "seed": s, "non_embedding_params": SIZES[mo], "val_loss": v}
        for (me, mo), values in cells.items()
        for s, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


C = 12.85  # the `kd` method's losses 1.5 + C N^-0.3 cross the reference's 2.0 at N ~ 5e4


def law(n: float) -> float:
    return 1.5 + C * n**-0.3


NOISE = (0.004, -0.003, 0.001)
CELLS = {
    ("pretrain", "big"): [2.0, 2.01, 1.99],
    # kd: m3 and m4 are below 2.0 with a margin the 3 seeds support
    **{("kd", m): [law(SIZES[m]) + e for e in NOISE] for m in ("m1", "m2", "m3", "m4")},
    # plain: never better than the reference
    ("plain", "m2"): [2.4, 2.42, 2.41], ("plain", "m3"): [2.2, 2.21, 2.19],
    ("plain", "m4"): [2.03, 2.06, 2.05],
    # thin: one seed per cell (better in the mean, but nothing can be claimed)
    ("thin", "m3"): [1.7], ("thin", "m4"): [1.6],
}  # fmt: skip


def test_the_smallest_model_with_support_and_the_crossover_of_its_law():
    answers = {a.method: a for a in smallest_that_beats(table(CELLS), ("big", "pretrain"),
                                                        "val_loss", False, bootstrap=50)}  # fmt: skip
    kd = answers["kd"]
    assert [law(SIZES[m]) < 2.0 for m in ("m1", "m2", "m3", "m4")] == [False, False, True, True]
    assert (
        kd.smallest.model == "m3" and kd.smallest.lo > 0 and "paired t, 3 seeds" in kd.smallest.test
    )
    assert kd.statement.startswith("m3 (non_embedding_params 100,000) is the smallest kd model")
    true_n = (C / 0.5) ** (1 / 0.3)  # where the law reaches the reference's mean 2.0
    assert kd.crossover.n == pytest.approx(true_n, rel=0.3)
    assert kd.crossover.lo <= true_n <= kd.crossover.hi


def test_a_method_that_never_beats_the_reference_says_so_with_the_closest_cell():
    answers = {a.method: a for a in smallest_that_beats(table(CELLS), ("big", "pretrain"),
                                                        "val_loss", False, bootstrap=0)}  # fmt: skip
    plain = answers["plain"]
    assert plain.smallest is None and all(not c.beats for c in plain.cells)
    assert plain.statement.startswith("no plain model beats big/pretrain on val_loss")
    assert "closest: m4" in plain.statement
    thin = answers["thin"]  # better in the mean, one seed: no claim
    assert thin.smallest is None and all(math.isnan(c.lo) for c in thin.cells)
    assert thin.statement == "no answer for thin: no cell has the seeds a test needs (>= 2)"
    assert thin.crossover is None and "no crossover fit" in thin.notes[0]  # 2 points: too few


def test_accuracies_beat_upwards_and_unpaired_seeds_use_welch():
    df = table({("pretrain", "big"): [0.80, 0.81, 0.79], ("kd", "m3"): [0.86, 0.87]})
    df.loc[df["method"] == "kd", "seed"] += 10  # no seed in common with the reference
    df = df.rename(columns={"val_loss": "val_accuracy"})
    (cell,) = verdicts(df, ("big", "pretrain"), "val_accuracy", True, "non_embedding_params")["kd"]
    assert cell.gain == pytest.approx(0.865 - 0.80) and cell.test == "Welch t, 2 vs 3 seeds"
    assert cell.beats


def test_a_reference_of_one_run_is_a_fixed_value_for_a_one_sample_interval():
    # A teacher's few-shot accuracy: one evaluation run, no training seed.
    df = table({("evaluate", "big"): [0.30], ("kd", "m3"): [0.34, 0.36, 0.35],
                ("kd", "m2"): [0.29, 0.33, 0.31]})  # fmt: skip
    df = df.rename(columns={"val_loss": "acc"})
    m2, m3 = verdicts(df, ("big", "evaluate"), "acc", True, "non_embedding_params")["kd"]
    diffs = np.array([0.04, 0.06, 0.05])
    half = 4.302653 * diffs.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
    assert m3.test == "one-sample t, 3 seeds vs 1 reference run"
    assert (m3.lo, m3.hi) == pytest.approx((0.05 - half, 0.05 + half))
    assert m3.beats and not m2.beats  # m2's interval spans 0


def test_a_flat_metric_is_not_fitted_for_a_crossover():
    df = table(
        {("evaluate", "big"): [0.10], **{("kd", m): [0.0, 0.0] for m in SIZES if m != "big"}}
    )
    df = df.rename(columns={"val_loss": "acc"})
    (kd,) = smallest_that_beats(df, ("big", "evaluate"), "acc", True, bootstrap=20)
    assert all(
        (c.lo, c.hi) == (-0.1, -0.1) and c.test.endswith("all seeds equal") for c in kd.cells
    )
    assert kd.crossover is None and kd.notes == (
        "no crossover fit: every acc is 0 (a flat metric has no power law)",
    )


def test_a_reference_that_is_not_a_cell_is_named_with_the_cells_there_are():
    with pytest.raises(
        ScalelabError,
        match=r"reference nope/pretrain: no finished runs of such a cell with val_loss; its cells: big/pretrain$",
    ):
        verdicts(table(CELLS), ("nope", "pretrain"), "val_loss", False, "non_embedding_params")
    assert np.isfinite(SIZES["big"])


def test_labelled_entries_are_methods_apart_and_kept_blocks_are_cells_apart():
    base = table({("pretrain", "big"): [2.0, 2.01, 1.99], ("kd", "m3"): [1.9, 1.91, 1.92]})
    # `distill` twice under two labels, and one product cut to two block sets (two sizes)
    cut = pd.DataFrame([
        {"method": "distill", "variant": "cut", "model": "run:abc", "seed": s,
         "non_embedding_params": n, "val_loss": v, "params.keep_layers": kl}
        for kl, n, v in (("[0]", 5e4, 2.2), ("[0, 7]", 1e5, 1.95)) for s in range(3)])  # fmt: skip
    teacher = pd.DataFrame([{"run_id": "abc", "method": "pretrain", "variant": "pretrain",
                             "model": "gpt-d8", "stage": "teacher", "seed": 0,
                             "non_embedding_params": 6e6, "val_loss": 1.5}])  # fmt: skip
    df = pd.concat([base.assign(variant=base["method"]), cut, teacher], ignore_index=True)
    df.loc[df["method"] == "kd", ["method", "variant"]] = ["distill", "kd-big"]
    found = verdicts(df, ("big", "pretrain"), "val_loss", False, "non_embedding_params")
    assert set(found) == {"cut", "kd-big", "pretrain"}  # labels, not the shared method name
    assert [c.model for c in found["cut"]] == ["gpt-d8 (stage teacher) blocks [0]",
                                               "gpt-d8 (stage teacher) blocks [0, 7]"]  # fmt: skip
    assert [c.beats for c in found["cut"]] == [False, True]
    # the reference may be named as the table has it or as the cell is shown
    assert verdicts(df, ("gpt-d8 (stage teacher) blocks [0, 7]", "cut"), "val_loss", False,
                    "non_embedding_params")  # fmt: skip
    with pytest.raises(
        ScalelabError,
        match=r"reference run:abc/cut: 2 cells match; name one: gpt-d8 \(stage teacher\) blocks \[0\]/cut, ",
    ):
        verdicts(df, ("run:abc", "cut"), "val_loss", False, "non_embedding_params")


def test_other_fields_that_vary_within_a_method_make_cells_apart_and_stop_the_crossover():
    df = table({("pretrain", "big"): [2.0, 2.01], ("kd", "m3"): [1.9, 1.91],
                ("kd", "m4"): [1.85, 1.86]})  # fmt: skip
    sweep = df[df["method"] == "kd"].assign(**{"params.alpha": 0.9, "val_loss": 1.8})
    df = pd.concat([df.assign(**{"params.alpha": 0.5}), sweep], ignore_index=True)
    (kd,) = [a for a in smallest_that_beats(df, ("big", "pretrain"), "val_loss", False,
                                            bootstrap=0) if a.method == "kd"]  # fmt: skip
    # never two runs of one seed averaged as replicates: alpha names the cells apart
    assert sorted(c.model for c in kd.cells) == ["m3 alpha=0.5", "m3 alpha=0.9",
                                                 "m4 alpha=0.5", "m4 alpha=0.9"]  # fmt: skip
    assert all(c.n_seeds == 2 for c in kd.cells)
    assert kd.crossover is None and "differ in params.alpha besides size" in kd.notes[0]


def test_a_margin_asks_for_non_inferiority_not_superiority():
    ref = [0.900, 0.910, 0.905]  # accuracies: the student is ~0.4 points below the teacher
    close = [a - 0.004 + e / 4 for a, e in zip(ref, NOISE, strict=True)]
    df = table({("full", "big"): ref, ("kd", "m3"): close, ("kd", "m1"): [a - 0.05 for a in ref]})
    df = df.rename(columns={"val_loss": "val_accuracy"})
    (strict,) = smallest_that_beats(df, ("big", "full"), "val_accuracy", True, bootstrap=0)
    assert strict.smallest is None  # not better than the teacher
    (within,) = smallest_that_beats(df, ("big", "full"), "val_accuracy", True, bootstrap=0,
                                    margin=0.01)  # fmt: skip
    assert [c.beats for c in within.cells] == [False, True]  # m1 is 5 points short
    assert within.smallest.model == "m3" and -0.01 < within.smallest.lo < 0
    assert within.statement.startswith("m3 (non_embedding_params 100,000) is the smallest kd "
                                       "model that comes within 0.01 of big/full")  # fmt: skip


def test_a_crossover_past_the_largest_size_says_it_is_an_extrapolation():
    from scalelab.analysis.beats import crossover_text

    # a law that crosses the reference's 2.0 at N = 6e5, past the largest cell (3e5)
    c = 0.5 * 6e5**0.3
    cells = {("pretrain", "big"): [2.0, 2.01, 1.99],
             **{("kd", m): [1.5 + c * SIZES[m] ** -0.3 + e for e in NOISE]
                for m in ("m1", "m2", "m3", "m4")}}  # fmt: skip
    (kd,) = [a for a in smallest_that_beats(table(cells), ("big", "pretrain"), "val_loss", False,
                                            bootstrap=0) if a.method == "kd"]  # fmt: skip
    assert kd.crossover.n == pytest.approx(6e5, rel=0.3)
    text = crossover_text(kd)
    assert "an extrapolation" in text and "beyond the largest size in the data (3e+05)" in text


def test_a_table_without_methods_has_nothing_to_compare():
    from scalelab.analysis.beats import answer_for

    df = table(CELLS).drop(columns="method")
    with pytest.raises(ScalelabError, match="no 'method' column"):
        answer_for(df, "big/pretrain", "val_loss", "non_embedding_params", 0)


def test_counts_of_one_read_in_the_singular():
    answers = {a.method: a for a in smallest_that_beats(table(CELLS), ("big", "pretrain"),
                                                        "val_loss", False, bootstrap=0)}  # fmt: skip
    assert [c.test for c in answers["thin"].cells] == ["no test: 1 seed", "no test: 1 seed"]
