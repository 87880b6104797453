"""Multi-seed statistics: mean, std and 95% CI per configuration, and paired comparisons.

Pure functions on pandas tables of runs (one row per run, as `load_experiment_tables`
returns: config columns `model`, `method`, `seed`, `task.*`, `params.*`, then metrics).

* `seed_summary`: groups runs that differ only in their seed; per group the mean, the
  sample std (ddof=1) and a two-sided Student-t confidence interval of the mean. For a
  metric with bounds (an accuracy or F1 in [0, 1]) the interval is cut to them: the mean
  lies inside the bounds, so the cut interval covers it whenever the t interval does (the
  same coverage), and it never claims an accuracy above 1.
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
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from scalelab.errors import ScalelabError


def mean_ci(
    values, confidence: float = 0.95, bounds: tuple[float, float] | None = None
) -> dict[str, float | int | str]:
    """n, mean, std (ddof=1), the Student-t CI of the mean, a flag, and `ci_cut`.

    NaN values (failed or missing metrics) are dropped before counting. With no value every
    statistic is NaN; with one, std and the CI are NaN (a sample std needs two values; a
    zero-width interval would claim certainty). `flag` says so in words ("" when n >= 2).
    bounds: (low, high) of the metric (e.g. (0, 1) for an accuracy): an interval end past
    them is cut to them and `ci_cut` says which end was where ("" when nothing was cut).
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
    lo, hi, cut = mean - half, mean + half, []
    if bounds is not None and n > 1:
        if lo < bounds[0]:
            cut.append(f"lower end {lo:.4g} cut to {bounds[0]:g}")
        if hi > bounds[1]:
            cut.append(f"upper end {hi:.4g} cut to {bounds[1]:g}")
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci_low": lo,
        "ci_high": hi,
        "flag": too_few_flag(n),
        "ci_cut": "; ".join(cut),
    }


def too_few_flag(n: int) -> str:
    """Why a spread statistic over `n` values is NaN, in words; "" when n >= 2."""
    if n == 0:
        return "no values: mean, std and CI undefined"
    if n == 1:
        return "1 value: std and CI undefined"
    return ""


def config_columns(table: pd.DataFrame) -> list[str]:
    """The columns that define a run: model, method (and its entry's label, `variant`),
    seed, task.*, params.*."""
    return [
        c
        for c in table.columns
        if c in ("model", "method", "variant", "seed") or c.startswith(("task.", "params."))
    ]


def _key(table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Config values as strings, so missing values (params a method lacks) group together
    as "nan" (pandas 3's `astype(str)` keeps them missing, and `groupby` drops those)."""
    from scalelab.analysis.table import as_text

    return as_text(table[cols])


def varying_columns(table: pd.DataFrame, exclude: tuple[str, ...] = ("seed",)) -> list[str]:
    """Config columns (other than `exclude`) that take more than one value in `table`."""
    cols = [c for c in config_columns(table) if c not in exclude]
    keyed = _key(table, cols)
    return [c for c in cols if keyed[c].nunique() > 1]


def label_columns(table: pd.DataFrame, exclude: tuple[str, ...] = ("seed",)) -> list[str]:
    """The varying config columns (`varying_columns`) that name runs apart beyond model,
    method and label: a column that is constant within every labelled method entry only
    restates the label (the `teachers` of `kd-d8` vs `kd-both`) and is left out."""
    cols = [c for c in varying_columns(table, exclude) if c not in ("model", "method", "variant")]
    if "variant" not in table:
        return cols
    keyed = _key(table, cols)
    return [c for c in cols if (keyed.groupby(table["variant"])[c].nunique() > 1).any()]


def seed_summary(
    table: pd.DataFrame,
    metric: str,
    confidence: float = 0.95,
    by: str | None = None,
    *,
    bounds: tuple[float, float] | None = None,
    planned: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per configuration (runs differing only in seed): its config columns, then n,
    mean, std, ci_low, ci_high, flag, ci_cut (see `mean_ci`; `bounds` cut the interval) of
    `metric`, the seeds used, and `seed_note`.

    Configurations are told apart by every varying config column; with `by`, only `by` and
    the independent axes are shown (columns fixed by the `by` value add nothing).
    planned: every run the experiment plans (config columns and `seed`, one row a run, done
    or not); then `n_planned` counts the planned seeds of each configuration and
    `seed_note` says "2 of 3 seeds" where some have no value ("" where none is missing).
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
    counts = _planned_counts(planned, cols)
    for key, g in groups:
        first = g.iloc[0]
        stats_ = mean_ci(g[metric], confidence, bounds)
        have = g.loc[pd.to_numeric(g[metric], errors="coerce").notna(), "seed"]
        n_planned = counts.get(key, len(g)) if counts is not None else len(g)
        rows.append(
            {
                **{c: first[c] for c in cols},
                **stats_,
                "seeds": ",".join(str(s) for s in sorted(have)),
                "n_planned": n_planned,
                "seed_note": seed_note(int(stats_["n"]), n_planned),
            }
        )
    return pd.DataFrame(rows)


def seed_note(n: int, planned: int) -> str:
    """ "2 of 3 seeds" when fewer than the planned seeds have a value; else ""."""
    return f"{n} of {planned} seed{'s' * (planned != 1)}" if n < planned else ""


def _planned_counts(planned: pd.DataFrame | None, cols: list[str]) -> dict | None:
    """Planned runs per configuration key (as `seed_summary` groups them), or None."""
    if planned is None or any(c not in planned.columns for c in cols):
        return None
    if not cols:
        return {(): len(planned)}
    keys = _key(planned, cols).apply(tuple, axis=1)
    return keys.value_counts().to_dict()


def paired_test(a, b, confidence: float = 0.95) -> dict[str, float]:
    """Paired t-test of a vs b (same-length sequences, matched by position).

    Returns n, mean_diff (a - b), diff_ci_low/high (Student t), t, p_value (two-sided).
    Pairs with a NaN on either side are left out. With n < 2, or all differences equal, t
    and p are nan (the test is undefined).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    both = ~(np.isnan(a) | np.isnan(b))  # a pair with a missing value is no pair
    a, b = a[both], b[both]
    d = mean_ci(a - b, confidence)
    t = p = math.nan
    if d["n"] > 1 and d["std"] > 0:
        with warnings.catch_warnings():  # near-equal differences: scipy's precision note
            warnings.simplefilter("ignore", RuntimeWarning)
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
    keyed = _key(table, cols).assign(_by=_key(table, [by])[by].values)
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
    if by == "method" and "variant" in table and (table["variant"] != table["method"]).any():
        raise ScalelabError(
            "the grid's method entries have labels (the `variant` column): compare them "
            "with --by variant"
        )
    keys = pairing_columns(table, by)
    by_text = _key(table, [by])[by]
    values = list(dict.fromkeys(by_text))
    df = _key(table, [*keys, "seed"]).assign(
        _by=by_text.values, _y=table[metric].astype(float).values
    )
    rows = []
    for va, vb in itertools.combinations(values, 2):
        pair = df[df["_by"].isin((va, vb))]
        # A field only one side has (a distill run's teachers) does not pair the two.
        shared = [k for k in keys if all((pair.loc[pair["_by"] == v, k] != "nan").any()
                                         for v in (va, vb))]  # fmt: skip
        cells = pair.groupby(shared, sort=False) if shared else [((), pair)]
        for cell, g in cells:
            a = g[g["_by"] == va].set_index("seed")["_y"]
            b = g[g["_by"] == vb].set_index("seed")["_y"]
            if a.empty or b.empty:  # nothing of one side in this cell: no comparison
                continue
            if not (a.index.is_unique and b.index.is_unique):
                # Settings only one side has (an active run's strategy beside fine-tuning's
                # train sizes) leave several runs per seed in the cell: nothing to pair.
                continue
            common = [s for s in a.index if s in b.index]
            res = paired_test(a.loc[common].values, b.loc[common].values, confidence)
            sig = bool(res["p_value"] < alpha) if not math.isnan(res["p_value"]) else False
            cell = cell if isinstance(cell, tuple) else (cell,)
            rows.append({**dict(zip(shared, cell, strict=True)), "a": va, "b": vb, **res,
                         "significant": sig})  # fmt: skip
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
