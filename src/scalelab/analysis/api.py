"""Fit a law to a results table: validation, grouping, fit, bootstrap, holdout, "how small".

This is what `scalelab fit` and the report call; the maths lives in `fitting.py`,
`uncertainty.py` and `smallest.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import fitting, laws, table
from scalelab.analysis.smallest import SmallestN, smallest_n, target_from_row, to_lower_is_better
from scalelab.analysis.uncertainty import Bootstrap, Holdout, Problem, bootstrap, holdout_check
from scalelab.errors import ScalelabError

LAWS = ("power", "chinchilla", "loss-to-loss")


@dataclass(frozen=True)
class FitSpec:
    """What to fit. Column names refer to the results table; see `scalelab fit --help`."""

    law: str
    x: str
    y: str
    x2: str | None = None
    group: str | None = None
    bootstrap: int = 0
    holdout: int = 0
    seed: int = 0
    offset: bool = True
    x2_is_compute: bool = False
    n_col: str | None = None
    d_col: str | None = None
    e_x: float | None = None
    e_y: float | None = None
    drop_top_loss: int = 0
    target: float | None = None
    target_row: str | None = None
    higher_is_better: bool = False


@dataclass(frozen=True)
class GroupFit:
    """One group's fit with its uncertainty. `data`: the rows used (for plots)."""

    group: str | None
    fit: fitting.FitResult
    data: pd.DataFrame
    boot: Bootstrap | None = None
    holdout: Holdout | None = None
    smallest: SmallestN | None = None
    dropped_nan: int = 0
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of `scalelab fit --format json`."""
        out: dict[str, Any] = {"group": self.group, "law": self.fit.law, **self.fit.params}
        out.update(r2=self.fit.r2, n_points=self.fit.n_points, n_dropped_nan=self.dropped_nan)
        # Undefined (NaN) intervals are left out of `ci`, as when no bootstrap ran, and
        # flagged by `bootstrap.too_few` and a note: a NaN pair would print as [nan, nan].
        ci = self.boot.ci() if self.boot else {}
        out["ci"] = {k: list(v) for k, v in ci.items() if all(np.isfinite(v))}
        if self.boot:
            out["bootstrap"] = {
                "n": self.boot.n_requested,
                "failed": self.boot.n_failed,
                "ok": self.boot.n_ok,
                "too_few": self.boot.too_few,
                "seed": self.boot.seed,
                "level": 0.95,
            }
        out["holdout"] = self.holdout.as_dict() if self.holdout else None
        if self.fit.law == "chinchilla":
            p = self.fit.params
            a = p["beta"] / (p["alpha"] + p["beta"])
            out["compute_optimal"] = {"N_opt_exponent": a, "D_opt_exponent": 1 - a}
        if self.smallest:
            out["smallest"] = self.smallest.as_dict()
        out["notes"] = list(self.notes + self.fit.notes)
        return out


@dataclass(frozen=True)
class FitReport:
    groups: list[GroupFit]
    skipped: list[str] = field(default_factory=list)


def fit_table(df: pd.DataFrame, spec: FitSpec) -> FitReport:
    """Fit `spec.law` per group of `df` (one row per run)."""
    if spec.law not in LAWS:
        raise ScalelabError(f"unknown law {spec.law!r} (known: {', '.join(LAWS)})")
    df = _prepare(df, spec)
    if spec.target_row is not None:
        # Resolve against the whole table: the reference run may sit in another group.
        target = target_from_row(df, spec.y, spec.target_row)
        spec = replace(spec, target=target, target_row=None)
    if spec.group is None:
        return FitReport([_fit_group(df, spec, None)])
    table.require_columns(df, [spec.group], "--group")
    fits, skipped = [], []
    for key, sub in df.groupby(spec.group, sort=True, dropna=True):
        try:
            fits.append(_fit_group(sub, spec, str(key)))
        except ScalelabError as e:
            if "too few" not in str(e):
                raise
            skipped.append(str(e))
    if not fits:
        raise ScalelabError(skipped[0] if skipped else f"no groups in column {spec.group!r}")
    return FitReport(fits, skipped)


def _prepare(df: pd.DataFrame, spec: FitSpec) -> pd.DataFrame:
    if table.COMPUTE_COL in (spec.x, spec.x2) and table.COMPUTE_COL not in df.columns:
        df = table.with_compute(df, spec.n_col, spec.d_col)
    if spec.law == "chinchilla" and spec.x2 is None:
        raise ScalelabError("the chinchilla law needs --x2 (the tokens column, D)")
    if spec.law == "chinchilla" and spec.x2_is_compute:
        df = df.copy()
        df[f"{spec.x2} / 6N"] = table.numeric(df, spec.x2) / (6.0 * table.numeric(df, spec.x))
    return df


def _columns(spec: FitSpec) -> tuple[list[str], list[str]]:
    """(inputs, all used columns) for the law."""
    if spec.law == "chinchilla":
        x2 = f"{spec.x2} / 6N" if spec.x2_is_compute else spec.x2
        return [spec.x, x2], [spec.x, x2, spec.y]
    return [spec.x], [spec.x, spec.y]


def _fit_group(df: pd.DataFrame, spec: FitSpec, group: str | None) -> GroupFit:
    inputs_cols, used = _columns(spec)
    clean = table.clean_columns(df, used, f"the {spec.law} law")
    rows = df.loc[clean.index]
    cols = dict(clean.columns)
    notes: list[str] = []
    if clean.dropped:
        notes.append(f"dropped {clean.dropped} row(s) with NaN in {', '.join(used)}")
    if spec.drop_top_loss:
        keep = np.argsort(cols[spec.y], kind="stable")[: max(len(rows) - spec.drop_top_loss, 0)]
        keep = np.sort(keep)
        rows, cols = rows.iloc[keep], {k: v[keep] for k, v in cols.items()}
        notes.append(f"dropped the {spec.drop_top_loss} highest-{spec.y} row(s)")
    y = cols[spec.y]
    if spec.higher_is_better:
        y = to_lower_is_better(y, spec.y)
        notes.append(f"fitted the error rate 1 - {spec.y} (higher is better)")
    law_name = spec.law if spec.law != "power" or spec.offset else "pure-power"
    for c in inputs_cols:
        table.require_positive(cols[c], c, law_name)
    table.require_positive(y, spec.y, law_name)
    inputs = tuple(cols[c] for c in inputs_cols)
    problem, extra_notes, points_key = _problem(spec, df, inputs, y)
    table.require_points(len(y), points_key or law_name, group)
    if spec.holdout > 0:
        table.require_holdout_points(len(y), spec.holdout, points_key or law_name, group)
    if spec.law != "loss-to-loss":
        for c in inputs_cols:
            table.require_distinct(cols[c], c, law_name, 3 if law_name == "power" else 2, group)
    fit = problem.fit(inputs, y, None)
    boot = bootstrap(problem, fit, spec.bootstrap, spec.seed) if spec.bootstrap > 0 else None
    if boot is not None:
        notes.extend(boot.notes())
    hold = holdout_check(problem, spec.holdout) if spec.holdout > 0 else None
    small = _smallest(spec, fit, boot)
    return GroupFit(group, fit, rows, boot, hold, small, clean.dropped, tuple(notes + extra_notes))


def _problem(
    spec: FitSpec, df: pd.DataFrame, inputs: tuple[np.ndarray, ...], y: np.ndarray
) -> tuple[Problem, list[str], str | None]:
    """The Problem for the law, notes, and a MIN_POINTS key overriding the law's own."""
    if spec.law == "power":

        def fit_power(inp, yy, warm):
            return fitting.fit_power_law(
                inp[0], yy, offset=spec.offset, init=warm.params if warm is not None else None
            )

        return Problem(inputs, y, inputs[0], fit_power), [], None
    if spec.law == "chinchilla":

        def fit_chin(inp, yy, warm):
            # Bootstrap refits start from the full-data optimum only: on the Chinchilla data,
            # also trying the 2nd/3rd local optima changed no interval and cost 4-10x more.
            init = warm.extras["local_optima"][:1] if warm is not None else None
            return fitting.fit_chinchilla(inp[0], inp[1], yy, init=init)

        return Problem(inputs, y, inputs[0] * inputs[1], fit_chin), [], None
    e_x, e_y, notes = _irreducible(spec, df, inputs[0], y)

    def fit_l2l(inp, yy, warm):
        return fitting.fit_loss_to_loss(inp[0], yy, e_x=e_x, e_y=e_y)

    # The most capable models (lowest L_x) are the extrapolation target.
    free = e_x is None or e_y is None
    return Problem(inputs, y, -inputs[0], fit_l2l), notes, "loss-to-loss-free" if free else None


def _irreducible(
    spec: FitSpec, df: pd.DataFrame, lx: np.ndarray, ly: np.ndarray
) -> tuple[float | None, float | None, list[str]]:
    """E_x, E_y: given explicitly, else from each metric's own scaling fit, else free (None)."""
    n_col = spec.n_col or table.first_present(df, ("Size",) + table.N_CANDIDATES)
    d_col = spec.d_col or table.first_present(df, ("Tokens",) + table.D_CANDIDATES)
    out: dict[str, float | None] = {"E_x": spec.e_x, "E_y": spec.e_y}
    notes = []
    for name, col, data in (("E_x", spec.x, lx), ("E_y", spec.y, ly)):
        if out[name] is not None:
            notes.append(f"{name} = {out[name]:.4g} given explicitly")
            continue
        est = None
        if n_col and d_col and n_col in df and d_col in df:
            est = fitting.irreducible_loss(
                table.numeric(df, n_col).to_numpy(),
                table.numeric(df, d_col).to_numpy(),
                table.numeric(df, col).to_numpy(),
            )
        if est is not None and est[0] < data.min():
            out[name] = est[0]
            notes.append(f"{name} = {est[0]:.4g} from {col!r} {est[1]} on {n_col!r}, {d_col!r}")
        else:
            notes.append(f"{name}: no usable scaling fit of {col!r} (N/D missing or degenerate)")
    return out["E_x"], out["E_y"], notes


def _smallest(spec: FitSpec, fit: fitting.FitResult, boot: Bootstrap | None) -> SmallestN | None:
    if spec.target is None:
        return None
    if spec.law != "power":
        raise ScalelabError("--target/--target-row need --law power (smallest N from L(N))")
    target = spec.target
    if spec.higher_is_better:
        target = to_lower_is_better(target, spec.y)
    samples = boot.param_dicts() if boot else []
    return smallest_n(fit.params, float(target), samples)


def compute_optimal_table(params: laws.Params, budgets: np.ndarray) -> pd.DataFrame:
    """N_opt, D_opt and predicted loss for each compute budget (FLOP) under a Chinchilla fit."""
    n_opt, d_opt = laws.compute_optimal(budgets, params)
    return pd.DataFrame(
        {
            "compute": budgets,
            "N_opt": n_opt,
            "D_opt": d_opt,
            "loss": laws.chinchilla(n_opt, d_opt, params),
        }
    )
