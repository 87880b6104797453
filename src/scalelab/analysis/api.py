"""Fit a law to a results table: validation, grouping, fit, bootstrap, holdout, "how small".

This is what `scalelab fit` and the report call; the maths lives in `fitting.py`,
`uncertainty.py` and `smallest.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import fitting, identify, laws, table
from scalelab.analysis import task_accuracy as task
from scalelab.analysis.identify import Flag, Thresholds
from scalelab.analysis.smallest import (
    ID_COLUMNS,
    SmallestN,
    smallest_for_accuracy,
    smallest_n,
    target_from_row,
    to_lower_is_better,
)
from scalelab.analysis.task_accuracy import TASK_LAWS, TaskHoldout
from scalelab.analysis.task_fitting import ACC_FORMS
from scalelab.analysis.uncertainty import Bootstrap, Holdout, Problem, bootstrap, holdout_check
from scalelab.errors import ScalelabError

LAWS = ("power", "chinchilla", "loss-to-loss", *TASK_LAWS)
# Errors that skip one group of a grouped fit instead of stopping it.
SKIP_GROUP = ("too few", "nothing above chance")


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
    # Task accuracy (laws loss-to-acc and task-accuracy): see `task_accuracy.py`.
    loss_col: str | None = None
    acc_form: str = "sigmoid"
    chance: float | None = None
    choices_col: str | None = None
    ceiling: float | None = None
    tokens_per_param: float | None = None
    target_tokens: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class GroupFit:
    """One group's fit with its uncertainty. `data`: the rows used (for plots)."""

    group: str | None
    fit: fitting.FitResult
    data: pd.DataFrame
    boot: Bootstrap | None = None
    holdout: Holdout | TaskHoldout | None = None
    smallest: SmallestN | None = None
    dropped_nan: int = 0
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    chance: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of `scalelab fit --format json`."""
        out: dict[str, Any] = {"group": self.group, "law": self.fit.law, **self.fit.params}
        out.update(r2=self.fit.r2, n_points=self.fit.n_points, n_dropped_nan=self.dropped_nan)
        # Undefined (NaN) intervals are left out of `ci`, as when no bootstrap ran, and
        # flagged by `bootstrap.too_few` and a note: a NaN pair would print as [nan, nan].
        ci = self.boot.ci() if self.boot else {}
        # Fixed parameters (a chance floor, a given E_x) have no interval to report.
        free = identify.free_params(self.fit)
        out["ci"] = {k: list(v) for k, v in ci.items() if all(np.isfinite(v)) and k in free}
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
        if self.fit.law in TASK_LAWS:
            out["chance"] = self.chance
            out.update(_steps(self.fit))
        out["flags"] = [f.as_dict() for f in self.flags]
        out["notes"] = list(self.notes + self.fit.notes)
        return out


def _steps(fit: fitting.FitResult) -> dict[str, Any]:
    """The accuracy form and, for the chain, each step's law and R²."""
    form = "sigmoid" if "L0" in fit.params else "exponential"
    if fit.law != "task-accuracy":
        return {"form": form}
    s1, s2 = fit.extras["step1"], fit.extras["step2"]
    return {
        "form": form,
        "steps": {
            "step1": {"law": s1.law, "r2": s1.r2},
            "step2": {"law": f"loss-to-acc ({form})", "r2": s2.r2},
        },
    }


@dataclass(frozen=True)
class FitReport:
    groups: list[GroupFit]
    skipped: list[str] = field(default_factory=list)


def fit_table(df: pd.DataFrame, spec: FitSpec) -> FitReport:
    """Fit `spec.law` per group of `df` (one row per run). Floating-point overflow in the
    refits of a fit the points do not determine (A = inf) is not printed: the fit's
    identifiability flags say it in words."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _fit_table(df, spec)


def _fit_table(df: pd.DataFrame, spec: FitSpec) -> FitReport:
    if spec.law not in LAWS:
        raise ScalelabError(f"unknown law {spec.law!r} (known: {', '.join(LAWS)})")
    _check_task_options(spec)
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
            # A group the data cannot fit is skipped, said on stderr; other errors stop.
            if not any(why in str(e) for why in SKIP_GROUP):
                raise
            skipped.append(str(e))
    if not fits:
        raise ScalelabError(skipped[0] if skipped else f"no groups in column {spec.group!r}")
    return FitReport(fits, skipped)


def _check_task_options(spec: FitSpec) -> None:
    """Options of the task laws: present where needed, absent elsewhere, in range."""
    given = {
        "--loss-col": spec.loss_col,
        "--chance": spec.chance,
        "--choices-col": spec.choices_col,
        "--ceiling": spec.ceiling,
        "--tokens-per-param": spec.tokens_per_param,
        "--target-tokens": spec.target_tokens,
    }
    if spec.law not in TASK_LAWS:
        used = [k for k, v in given.items() if v is not None]
        if used or spec.acc_form != "sigmoid":
            opt = used[0] if used else "--acc-form"
            raise ScalelabError(f"{opt} applies to --law task-accuracy or loss-to-acc only")
        return
    if spec.acc_form not in ACC_FORMS:
        raise ScalelabError(
            f"--acc-form must be one of {', '.join(ACC_FORMS)} (got {spec.acc_form!r})"
        )
    if spec.law == "task-accuracy" and spec.loss_col is None:
        raise ScalelabError("--law task-accuracy needs --loss-col (the task loss column)")
    if spec.law == "loss-to-acc" and (spec.loss_col or spec.x2):
        opt = "--loss-col" if spec.loss_col else "--x2"
        raise ScalelabError(f"{opt} does not apply to --law loss-to-acc (--x is the task loss)")
    if spec.higher_is_better:
        raise ScalelabError("--higher-is-better is for --law power: task laws fit accuracy")
    loss_only = {
        "--drop-top-loss": spec.drop_top_loss > 0,
        "--no-offset": not spec.offset,
        "--e-x": spec.e_x is not None,
        "--e-y": spec.e_y is not None,
        "--x2-is-compute": spec.x2_is_compute,
    }
    for opt, used in loss_only.items():
        if used:
            raise ScalelabError(f"{opt} applies to the loss laws, not --law {spec.law}")
    if spec.ceiling is not None:
        if spec.acc_form != "sigmoid":
            raise ScalelabError("--ceiling applies to --acc-form sigmoid only")
        if not 0 < spec.ceiling <= 1 or (spec.chance is not None and spec.ceiling <= spec.chance):
            raise ScalelabError(
                f"--ceiling must be in (0, 1] and above the chance level (got {spec.ceiling:g})"
            )


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
    if spec.law in TASK_LAWS:
        return _fit_task_group(df, spec, group)
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
    small = _grouped_target(lambda: _smallest(spec, fit, boot), group, notes)
    small = _with_range(small, cols[inputs_cols[0]])
    # An error rate 1 - acc is judged by its absolute (accuracy) error, a loss by its relative.
    flags = identify.flags(fit, boot, hold, spec.thresholds, absolute_holdout=spec.higher_is_better)
    if spec.law == "chinchilla":
        flags += identify.spread(inputs[1], "D")
    notes = tuple(notes + extra_notes)
    return GroupFit(group, fit, rows, boot, hold, small, clean.dropped, notes, flags)


def _fit_task_group(df: pd.DataFrame, spec: FitSpec, group: str | None) -> GroupFit:
    """One group of a task law: accuracy `spec.y` from task loss (`spec.x` for loss-to-acc,
    `spec.loss_col` for the chain, whose size columns are `spec.x` [and `spec.x2`])."""
    chain = spec.law == "task-accuracy"
    size_cols = [c for c in (spec.x, spec.x2) if c] if chain else []
    loss_col = spec.loss_col if chain else spec.x
    used = [*size_cols, loss_col, spec.y]
    clean = table.clean_columns(df, used, f"the {spec.law} law")
    rows, cols = df.loc[clean.index], dict(clean.columns)
    acc = cols[spec.y]
    task.require_accuracies(acc, spec.y)
    fixed = spec.chance is not None or spec.choices_col is not None
    need = task.min_points(spec.law, len(size_cols), spec.acc_form, fixed, spec.ceiling)
    table.require_points(len(acc), spec.law, group, need)
    chance, chance_note = task.chance_level(rows, spec.chance, spec.choices_col, acc, spec.y, group)
    for c in size_cols + ([loss_col] if chain else []):
        table.require_positive(cols[c], c, spec.law)
    if spec.holdout > 0:
        table.require_holdout_points(len(acc), spec.holdout, spec.law, group, need)
    for c in size_cols:
        table.require_distinct(cols[c], c, spec.law, 3 if len(size_cols) == 1 else 2, group)
    prob = task.problem(
        tuple(cols[c] for c in size_cols),
        cols[loss_col],
        acc,
        form=spec.acc_form,
        chance=chance,
        ceiling=spec.ceiling,
    )
    fit = prob.fit(prob.inputs, acc, None)
    boot = bootstrap(prob, fit, spec.bootstrap, spec.seed) if spec.bootstrap > 0 else None
    notes = [f"dropped {clean.dropped} row(s) with NaN in {', '.join(used)}"] * bool(clean.dropped)
    notes += [chance_note] if chance_note else []
    notes += list(boot.notes()) if boot is not None else []
    hold = None
    if spec.holdout > 0:
        id_col = table.first_present(rows, ID_COLUMNS)
        labels = rows[id_col].astype(str).to_numpy() if id_col else None
        if labels is not None and len(set(labels)) < len(labels):  # checkpoints of one model
            by, values = (
                (size_cols[-1], cols[size_cols[-1]]) if size_cols else (loss_col, cols[loss_col])
            )
            labels = np.array(
                [f"{name} ({by} {v:.4g})" for name, v in zip(labels, values, strict=True)]
            )
        hold = task.task_holdout(
            prob, spec.holdout, n_boot=spec.bootstrap, seed=spec.seed, chance=chance, labels=labels
        )
    small = _grouped_target(lambda: _smallest_task(spec, fit, boot, cols, size_cols), group, notes)
    small = _with_range(small, cols[size_cols[0]]) if size_cols else small
    flags = identify.flags(fit, boot, hold, spec.thresholds, absolute_holdout=True)
    if len(size_cols) == 2:
        flags += identify.spread(prob.inputs[1], size_cols[1])
    return GroupFit(group, fit, rows, boot, hold, small, clean.dropped, tuple(notes), flags, chance)


def _with_range(small: SmallestN | None, xs: np.ndarray) -> SmallestN | None:
    """`small` with the range of sizes the fit saw, so it can say how far past them it is."""
    if small is None or not len(xs):
        return small
    return replace(small, data_min=float(np.min(xs)), data_max=float(np.max(xs)))


def _grouped_target(answer, group: str | None, notes: list[str]) -> SmallestN | None:
    """`answer()`; in a grouped fit, a target one group cannot reach is a note for that group
    (the others still answer), while ungrouped it stays an error."""
    try:
        return answer()
    except ScalelabError as err:
        if group is None or not any(w in str(err) for w in ("unreachable", "every size reaches")):
            raise
        notes.append(str(err))
        return None


def _smallest_task(
    spec: FitSpec,
    fit: fitting.FitResult,
    boot: Bootstrap | None,
    cols: dict[str, np.ndarray],
    size_cols: list[str],
) -> SmallestN | None:
    """Smallest size the chain predicts to reach accuracy `spec.target`."""
    if spec.target is None:
        return None
    if spec.law != "task-accuracy":
        raise ScalelabError("--target needs --law task-accuracy (accuracy from size) or power")
    if not 0 < spec.target < 1:
        raise ScalelabError(f"--target {spec.target:g} must be an accuracy in (0, 1)")
    where, at = {}, f"smallest {size_cols[0]}"
    if len(size_cols) == 2:
        n, d = cols[size_cols[0]], cols[size_cols[1]]
        where, phrase = task.target_tokens(n, d, spec.target_tokens, spec.tokens_per_param)
        at = f"{at} {phrase}"
    samples = boot.param_dicts() if boot else []
    return smallest_for_accuracy(fit.params, float(spec.target), samples, at=at, **where)


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
    if (e_x is None or e_y is None) and len(y) < table.MIN_POINTS["loss-to-loss-free"]:
        # Too few points to fit the offsets too: the pure power law L_y = K * L_x^kappa
        # (E_x = E_y = 0), said in words rather than refused.
        notes.append(
            f"E_x, E_y set to 0: {len(y)} points cannot fit them beside K and kappa "
            f"(need {table.MIN_POINTS['loss-to-loss-free']}); L_y = K * L_x^kappa"
        )
        e_x, e_y = e_x or 0.0, e_y or 0.0

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
        raise ScalelabError(
            "--target/--target-row need --law power (smallest N from L(N)) or task-accuracy"
        )
    target = spec.target
    if spec.higher_is_better:
        target = to_lower_is_better(target, "--target")
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
