"""Task accuracy from a results table: chance levels, checks, holdout, "how small".

What `api.fit_table` needs for the laws `loss-to-acc` (accuracy from task loss, step 2 alone)
and `task-accuracy` (the two-step chain, Bhagia et al. 2024): the chance level of the task
(given, or 1 / number of choices), input checks that name the bad column, the `Problem` for
the generic bootstrap, a holdout check that reports absolute accuracy errors with bootstrap
intervals, and the tokens at which a "smallest N" answer is read. The fitters live in
`task_fitting.py`, the laws in `laws.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.fitting import FitResult
from scalelab.analysis.task_fitting import fit_loss_to_acc, fit_task_accuracy
from scalelab.analysis.uncertainty import Problem, bootstrap, holdout_refit, prediction_band
from scalelab.errors import ScalelabError

TASK_LAWS = ("loss-to-acc", "task-accuracy")


def _where(group: str | None) -> str:
    return f" in group {group!r}" if group is not None else ""


def require_accuracies(acc: np.ndarray, col: str) -> None:
    """Accuracies are fractions in [0, 1]; anything else (a percentage, a loss) is an error."""
    bad = (acc < 0) | (acc > 1)
    if bad.any():
        raise ScalelabError(
            f"column {col!r} has {int(bad.sum())} value(s) outside [0, 1] (min {acc.min():.4g}, "
            f"max {acc.max():.4g}): the {col!r} of a task law must be an accuracy, as a fraction"
        )


def chance_level(
    rows: pd.DataFrame,
    chance: float | None,
    choices_col: str | None,
    acc: np.ndarray,
    acc_col: str,
    group: str | None = None,
) -> tuple[float | None, str | None]:
    """The task's chance accuracy and a note saying where it came from (None, None if neither
    `chance` nor `choices_col` is given: the floor is then fitted).

    `choices_col` holds the number of answer choices per row; it must be one whole number
    >= 2 within a fit (one task). Raises ScalelabError for a chance level outside [0, 1) or
    at or above every observed accuracy (the task is then at chance: nothing to fit).
    """
    if chance is not None and choices_col is not None:
        raise ScalelabError("give --chance or --choices-col, not both")
    note = None
    if choices_col is not None:
        k = table.numeric(rows, choices_col).to_numpy()
        values = np.unique(k[np.isfinite(k)])
        if len(values) != 1:
            shown = ", ".join(f"{v:g}" for v in values[:5]) or "none"
            raise ScalelabError(
                f"column {choices_col!r} must hold one number of choices{_where(group)} "
                f"(one task per fit); it has: {shown}"
            )
        if values[0] < 2 or values[0] != round(values[0]):
            raise ScalelabError(
                f"column {choices_col!r}: the number of choices must be a whole number >= 2 "
                f"(got {values[0]:g})"
            )
        chance = 1.0 / values[0]
        note = f"floor fixed at chance 1/{values[0]:g} = {chance:.4g} (from {choices_col!r})"
    elif chance is not None:
        if not 0 <= chance < 1:
            raise ScalelabError(f"--chance must be in [0, 1) (got {chance:g})")
        note = f"floor fixed at chance {chance:.4g} (--chance)"
    else:
        note = ("floor fitted: chance is not known (give --chance P or --choices-col K to fix "
                "the floor there); the fitted floor may lie below chance")  # fmt: skip
    if chance is not None and chance >= acc.max():
        raise ScalelabError(
            f"chance level {chance:.4g} is at or above every accuracy in column {acc_col!r}"
            f"{_where(group)} (max {acc.max():.4g}): there is nothing above chance to fit"
        )
    return chance, note


def problem(
    size_inputs: tuple[np.ndarray, ...],
    loss: np.ndarray,
    acc: np.ndarray,
    *,
    form: str,
    chance: float | None,
    ceiling: float | None,
) -> Problem:
    """The `Problem` for the bootstrap and the holdout check.

    No size inputs: step 2 alone (`loss-to-acc`); inputs (loss,), the lowest-loss points are
    the extrapolation target. With size inputs (x,) or (N, D): the chain (`task-accuracy`);
    inputs (*size, loss), the largest x (or N * D) are the target.
    """
    if not size_inputs:

        def fit_step2(inp, yy, warm):
            init = warm.params if warm is not None else None
            return fit_loss_to_acc(inp[0], yy, form=form, chance=chance, ceiling=ceiling, init=init)

        return Problem((loss,), acc, -loss, fit_step2)

    def fit_chain(inp, yy, warm):
        return fit_task_accuracy(
            inp[:-1], inp[-1], yy, form=form, chance=chance, ceiling=ceiling, warm=warm
        )

    size = size_inputs[0] if len(size_inputs) == 1 else size_inputs[0] * size_inputs[1]
    return Problem((*size_inputs, loss), acc, size, fit_chain)


def min_points(law: str, n_size: int, form: str, chance_fixed: bool, ceiling: float | None) -> int:
    """Fewest rows a fit can use: each step needs more points than it has free parameters."""
    step2 = 2 + (not chance_fixed) + (form == "sigmoid" and ceiling is None)
    if law == "loss-to-acc":
        return step2 + 1
    return max(step2 + 1, table.MIN_POINTS["power" if n_size == 1 else "chinchilla"])


@dataclass(frozen=True)
class TaskHoldout:
    """Refit without the `k` most capable points (largest size; lowest loss for step 2 alone),
    predict their accuracy. `pred`: the prediction (from size alone for the chain);
    `step2_pred`: the chain's step 2 from the observed task loss (None for step 2 alone);
    `lo`/`hi`: bootstrap 95% interval of `pred` (None without a bootstrap); `labels`: the
    held-out rows' names when the table has an id column. All arrays shape (k,)."""

    k: int
    acc: np.ndarray
    pred: np.ndarray
    params: dict[str, float]
    chance: float | None = None
    step2_pred: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    labels: tuple[str, ...] | None = None

    @property
    def abs_errors(self) -> np.ndarray:
        return self.pred - self.acc

    @property
    def mean_abs_error(self) -> float:
        ok = np.isfinite(self.abs_errors)
        return float(np.mean(np.abs(self.abs_errors[ok]))) if ok.any() else float("nan")

    @property
    def n_below_chance(self) -> int:
        """Predictions below the chance level (impossible when chance fixes the floor)."""
        if self.chance is None:
            return 0
        return int(np.sum(self.pred < self.chance - 1e-12))

    def as_dict(self) -> dict[str, Any]:
        def floats(v):
            return None if v is None else [float(x) for x in v]

        out = {
            "k": self.k,
            "acc": floats(self.acc),
            "pred": floats(self.pred),
            "abs_errors": floats(self.abs_errors),
            "mean_abs_error": self.mean_abs_error,
            "max_abs_error": float(np.nanmax(np.abs(self.abs_errors))),
            "n_below_chance": self.n_below_chance,
            "chance": self.chance,
            "params": self.params,
        }
        if self.step2_pred is not None:
            step2_err = self.step2_pred - self.acc
            out["step2_pred"] = floats(self.step2_pred)
            out["step2_mean_abs_error"] = float(np.nanmean(np.abs(step2_err)))
        if self.lo is not None:
            out["lo"], out["hi"] = floats(self.lo), floats(self.hi)
            inside = (self.acc >= self.lo) & (self.acc <= self.hi)
            out["in_interval"] = int(inside.sum())
        if self.labels is not None:
            out["labels"] = list(self.labels)
        return out


def task_holdout(
    prob: Problem,
    k: int,
    *,
    n_boot: int = 0,
    seed: int = 0,
    chance: float | None = None,
    labels: np.ndarray | None = None,
) -> TaskHoldout:
    """Refit on all but the `k` points of largest `prob.size`, predict those k accuracies.

    With `n_boot` > 0 the refit is bootstrapped on its own rows (resampled once per refit,
    both steps refitted) for a 95% interval of each prediction.
    """
    fit, test_inputs, y_test, train, test = holdout_refit(prob, k)
    chain = fit.law == "task-accuracy"
    size_test = test_inputs[:-1] if chain else test_inputs
    pred = fit.predict(*size_test)
    step2 = fit.extras["step2"].predict(test_inputs[-1]) if chain else None
    lo = hi = None
    if n_boot > 0:
        sub = Problem(*prob.take(train), prob.size[train], prob.fit)
        boot = bootstrap(sub, fit, n_boot, seed)
        if boot.n_ok:
            lo, hi = prediction_band(lambda p: _predict(fit, p, size_test), boot)
    names = tuple(str(v) for v in labels[test]) if labels is not None else None
    return TaskHoldout(k, y_test, pred, dict(fit.params), chance, step2, lo, hi, names)


def _predict(fit: FitResult, params: dict[str, float], inputs: tuple[np.ndarray, ...]):
    from scalelab.analysis.fitting import predict

    return predict(fit.law, params, *inputs)


def target_tokens(
    n: np.ndarray, d: np.ndarray, tokens: float | None, ratio: float | None
) -> tuple[dict[str, float], str]:
    """Where a "smallest N" of an L(N, D) chain is read: fixed tokens or tokens per parameter.

    Given `tokens` or `ratio`, that; else the grid's own D when it is one value, or its
    tokens per parameter when that is one value (to 1%). Returns the keyword for
    `smallest_for_accuracy` and a phrase for the output; raises ScalelabError otherwise.
    """
    if tokens is not None and ratio is not None:
        raise ScalelabError("give --target-tokens or --tokens-per-param, not both")
    if tokens is not None:
        if not tokens > 0:
            raise ScalelabError(f"--target-tokens must be > 0 (got {tokens:g})")
        return {"d": tokens}, f"at D = {tokens:.4g} tokens"
    if ratio is not None:
        if not ratio > 0:
            raise ScalelabError(f"--tokens-per-param must be > 0 (got {ratio:g})")
        return {"ratio": ratio}, f"at {ratio:.4g} tokens per parameter"
    if np.ptp(d) <= 1e-9 * d.max():
        return {"d": float(d[0])}, f"at the grid's D = {d[0]:.4g} tokens"
    r = d / n
    if np.ptp(r) <= 0.01 * r.mean():
        return {"ratio": float(r.mean())}, f"at the grid's {r.mean():.4g} tokens per parameter"
    raise ScalelabError(
        "the grid's D varies and is not a fixed multiple of N: give --tokens-per-param R or "
        "--target-tokens D for the smallest-N answer"
    )
