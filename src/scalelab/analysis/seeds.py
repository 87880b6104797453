"""Multi-seed statistics: mean, std and 95% CI per configuration, and paired comparisons.

Pure functions on pandas tables of runs (one row per run, as `load_experiment_tables`
returns: config columns `model`, `method`, `seed`, `task.*`, `params.*`, then metrics).

* `seed_summary`: groups runs that differ only in their seed; per group the mean, the
  sample std (ddof=1) and a two-sided Student-t confidence interval of the mean.
* `paired_tests`: for each pair of values of one column (`by`, e.g. `method`), pairs runs
  that agree on every other independent config column and share a seed, and runs a paired
  t-test on the per-seed differences (scipy.stats.ttest_rel): mean difference a - b, its
  t confidence interval, the p-value, and whether p < alpha.

A column whose value is fixed by the `by` value (e.g. `params.lr` when each method has its
own lr, or LoRA's `params.r`, empty for `full`) belongs to that value and is not matched on.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from scalelab.errors import ScalelabError


def mean_ci(values, confidence: float = 0.95) -> dict[str, float | int | str]:
    """n, mean, std (ddof=1), the Student-t CI of the mean, and a flag.

    NaN values (failed or missing metrics) are dropped before counting. With no value every
    statistic is NaN; with one, std and the CI are NaN (a sample std needs two values; a
    zero-width interval would claim certainty). `flag` says so in words ("" when n >= 2).
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = (
        (float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n))
        if n > 1
        else math.nan
    )
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "flag": too_few_flag(n),
    }


def too_few_flag(n: int) -> str:
    """Why a spread statistic over `n` values is NaN, in words; "" when n >= 2."""
    if n == 0:
        return "no values: mean, std and CI undefined"
    if n == 1:
        return "1 value: std and CI undefined"
    return ""


def config_columns(table: pd.DataFrame) -> list[str]:
    """The columns that define a run: model, method, seed, task.*, params.*."""
    return [
        c
        for c in table.columns
        if c in ("model", "method", "seed") or c.startswith(("task.", "params."))
    ]


def _key(table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Config values as strings, so missing values (params a method lacks) group together."""
    return table[cols].astype(str)


def varying_columns(table: pd.DataFrame, exclude: tuple[str, ...] = ("seed",)) -> list[str]:
    """Config columns (other than `exclude`) that take more than one value in `table`."""
    cols = [c for c in config_columns(table) if c not in exclude]
    keyed = _key(table, cols)
    return [c for c in cols if keyed[c].nunique() > 1]


def seed_summary(
    table: pd.DataFrame, metric: str, confidence: float = 0.95, by: str | None = None
) -> pd.DataFrame:
    """One row per configuration (runs differing only in seed): its config columns, then n,
    mean, std, ci_low, ci_high, flag (see `mean_ci`) of `metric`, and the seeds used.

    Configurations are told apart by every varying config column; with `by`, only `by` and
    the independent axes are shown (columns fixed by the `by` value add nothing).
    Raises ScalelabError when `metric` is not a column or the table has no rows.
    """
    if metric not in table.columns:
        raise ScalelabError(f"no metric {metric!r} in the results (have: {_metric_names(table)})")
    if table.empty:
        raise ScalelabError(f"no runs to summarise {metric!r} over")
    cols = varying_columns(table)
    if by is not None:
        cols = [by, *[c for c in pairing_columns(table, by) if c in cols]]
    rows = []
    groups = (
        [((), table)]
        if not cols
        else table.groupby(_key(table, cols).apply(tuple, axis=1), sort=False)
    )
    for _, g in groups:
        first = g.iloc[0]
        rows.append(
            {
                **{c: first[c] for c in cols},
                **mean_ci(g[metric], confidence),
                "seeds": ",".join(str(s) for s in sorted(g["seed"])),
            }
        )
    return pd.DataFrame(rows)


def paired_test(a, b, confidence: float = 0.95) -> dict[str, float]:
    """Paired t-test of a vs b (same-length sequences, matched by position).

    Returns n, mean_diff (a - b), diff_ci_low/high (Student t), t, p_value (two-sided).
    With n < 2, or all differences equal, t and p are nan (the test is undefined).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    d = mean_ci(a - b, confidence)
    t = p = math.nan
    if d["n"] > 1 and d["std"] > 0:
        res = stats.ttest_rel(a, b)
        t, p = float(res.statistic), float(res.pvalue)
    return {
        "n": d["n"],
        "mean_diff": d["mean"],
        "diff_ci_low": d["ci_low"],
        "diff_ci_high": d["ci_high"],
        "t": t,
        "p_value": p,
    }


def pairing_columns(table: pd.DataFrame, by: str) -> list[str]:
    """Config columns to match on when comparing values of `by`: the independent axes.

    Columns other than `by` and `seed` that vary within at least one `by` group; a column
    that is constant within every group is a property of the `by` value and is skipped.
    """
    cols = [c for c in config_columns(table) if c not in (by, "seed")]
    keyed = _key(table, cols).assign(_by=table[by].astype(str).values)
    return [c for c in cols if (keyed.groupby("_by")[c].nunique() > 1).any()]


def paired_tests(
    table: pd.DataFrame, by: str, metric: str, alpha: float = 0.05, confidence: float = 0.95
) -> pd.DataFrame:
    """Paired tests between every pair of values of `by`, per cell of the other axes.

    Rows: the matched config columns, `a`, `b`, n (paired seeds), mean_diff (a - b),
    diff_ci_low/high, t, p_value, significant (p < alpha).
    """
    for col in (by, metric, "seed"):
        if col not in table.columns:
            raise ScalelabError(f"no column {col!r} in the results")
    keys = pairing_columns(table, by)
    values = list(dict.fromkeys(table[by].astype(str)))
    df = _key(table, [*keys, "seed"]).assign(
        _by=table[by].astype(str).values, _y=table[metric].astype(float).values
    )
    rows = []
    cells = df.groupby(keys, sort=False) if keys else [((), df)]
    for cell, g in cells:
        cell = cell if isinstance(cell, tuple) else (cell,)
        for va, vb in itertools.combinations(values, 2):
            a = g[g["_by"] == va].set_index("seed")["_y"]
            b = g[g["_by"] == vb].set_index("seed")["_y"]
            common = [s for s in a.index if s in b.index]
            res = paired_test(a.loc[common].values, b.loc[common].values, confidence)
            sig = bool(res["p_value"] < alpha) if not math.isnan(res["p_value"]) else False
            rows.append(
                {**dict(zip(keys, cell, strict=True)), "a": va, "b": vb, **res, "significant": sig}
            )
    return pd.DataFrame(rows)


def _metric_names(table: pd.DataFrame) -> str:
    skip = set(config_columns(table)) | {
        "run_id",
        "experiment",
        "status",
        "error",
        "started_at",
        "finished_at",
        "git_commit",
        "versions",
        "host",
        "runtime",
    }
    return ", ".join(c for c in table.columns if c not in skip)
