""" "What is the smallest model that reaches this accuracy?": per method, the smallest model
whose metric reaches a fixed target with support, and the smallest size its fitted law
predicts to reach it, with an interval and identifiability flags.

`beats.py` asks the same question against a reference cell of the grid; here the bar is a
number the user names (an accuracy a product needs, a published model's score). Cells are
`beats`' cells (one configuration of one method; its runs are its seeds). A cell *reaches*
the target when the 95% interval of its mean, in the better direction, lies at or past it:
a one-sample t interval over its seeds (at least 2), else, for a cell of one run that
carries its metric's standard error over test items (`acc_stderr` beside `acc`, as
`evaluate` reports it), the normal interval mean ± 1.96 stderr; with neither, nothing can
be claimed and the answer says so.

The prediction per method, where its cells differ only in size:
- with a task-loss column beside the accuracy (`task_loss@piqa` for `acc@piqa`, as
  evaluations of a ladder add them): the two-step chain of Bhagia et al. (2024, Eq. 1 then
  Eq. 2), N -> task loss -> accuracy with a chance floor, inverted at the target
  (`analysis.api.fit_table`, law `task-accuracy`);
- otherwise the power law E + A N^-alpha on the metric (accuracies as 1 - acc), inverted
  at the target (the `fit --law power --target` answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from scalelab.analysis.beats import (
    CellVerdict,
    MethodAnswer,
    _cell_fields,
    _cells,
    _crossover,
    compared_metric,
)
from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class ReachAnswer:
    """`answer_reaching`'s result: the metric, its direction, the target, the task-loss
    column the chain used (None: power law), the chance floor it was given, and one
    `MethodAnswer` per method (its cells' `gain` (printed as "diff") is mean - target in the better
    direction; `beats` means "reaches with support")."""

    metric: str
    higher_is_better: bool
    target: float
    methods: list[MethodAnswer]
    loss_col: str | None = None
    chance: float | None = None


def task_loss_column(table: pd.DataFrame, metric: str) -> str | None:
    """The task-loss column paired with an evaluation accuracy: `task_loss@T` for
    `acc@T`, `acc_norm@T` or `acc_bytes@T`, when the table has values in it; else None."""
    name, at, where = metric.partition("@")
    if not at or name not in ("acc", "acc_norm", "acc_bytes"):
        return None
    col = f"task_loss@{where}"
    return col if col in table and table[col].notna().any() else None


def _reach_interval(cell: pd.DataFrame, metric: str, target: float, sign: float):
    """(gain, lo, hi, test) of the cell's mean over `target`, positive = better."""
    values = cell[metric].dropna()
    gain = sign * (float(values.mean()) - target)
    if len(values) >= 2:
        test = f"one-sample t, {len(values)} seeds"
        if values.nunique() == 1:
            return gain, gain, gain, f"{test}, all seeds equal"
        ci = stats.ttest_1samp(values.to_numpy() - target, 0.0).confidence_interval(0.95)
        lo, hi = sorted((sign * ci.low, sign * ci.high))
        return gain, lo, hi, test
    base, at, where = metric.partition("@")
    err = next((c for c in (f"{base}_stderr{at}{where}", f"{base}_stderr") if c in cell), None)
    se = cell[err].dropna() if err else pd.Series(dtype=float)
    if len(values) == 1 and len(se) == 1 and np.isfinite(se.iloc[0]):
        half = 1.96 * float(se.iloc[0])
        return gain, gain - half, gain + half, "normal, stderr over test items"
    n = len(values)
    return gain, math.nan, math.nan, f"no test: {n} seed{'s' * (n != 1)}"


def _prediction(rows: pd.DataFrame, metric: str, higher: bool, size: str, target: float,
                boot: int, loss_col: str | None, chance: float | None):  # fmt: skip
    """(SmallestN or None, flag messages, notes) from the chain or the power law."""
    if loss_col is None or not higher:
        return _crossover(rows, metric, higher, size, target, boot)
    from scalelab.analysis.api import FitSpec, fit_table

    spec = FitSpec("task-accuracy", size, metric, loss_col=loss_col, chance=chance,
                   target=target, bootstrap=boot)  # fmt: skip
    try:
        g = fit_table(rows, spec).groups[0]
    except ScalelabError as err:
        return None, (), (f"no prediction: {err}",)
    note = (f"predicted by the two-step chain (size -> {loss_col} -> {metric}, Bhagia et al. "
            "2024)",)  # fmt: skip
    return g.smallest, tuple(f.message for f in g.flags), note + tuple(g.notes)


def answer_reaching(
    table: pd.DataFrame,
    target: float,
    metric: str | None,
    size: str = "non_embedding_params",
    bootstrap: int = 200,
    *,
    loss_col: str | None = None,
    chance: float | None = None,
) -> ReachAnswer:
    """Per method: the smallest cell whose `metric` reaches `target` with support, every
    cell's interval, and the predicted smallest size (see the module docstring).

    metric None: the methods' first validation quality metric; loss_col None: the paired
    task-loss column where the table has one (`task_loss_column`); chance: the chain's
    accuracy floor (None: fitted). Raises ScalelabError for an undeclared metric, a
    missing column, or a target that is not finite (or, for a metric bounded by [0, 1],
    outside (0, 1))."""
    from scalelab.metrics import metric_def

    done = table[table["status"] == "done"] if "status" in table else table
    metric, higher = compared_metric(done, metric)
    defn = metric_def(metric, sorted(done["method"].dropna().unique()))
    if not math.isfinite(target):
        raise ScalelabError(
            f"reaches {target!r} (--reaches / report.reaches): a finite value of {metric}"
        )
    if defn is not None and defn.bounds == (0.0, 1.0) and not 0 < target < 1:
        raise ScalelabError(
            f"reaches {target:g} (--reaches / report.reaches): {metric} lies in [0, 1]; name a "
            "value inside"
        )
    if loss_col is not None and loss_col not in done:
        raise ScalelabError(f"--loss-col {loss_col!r}: the results have no such column")
    loss_col = loss_col or task_loss_column(done, metric)
    sign = 1.0 if higher else -1.0
    groups = _cells(done, metric, size)
    by_method: dict[str, list[CellVerdict]] = {}
    for (me, cell), g in groups.items():
        gain, lo, hi, test = _reach_interval(g, metric, target, sign)
        verdict = CellVerdict(me, cell, float(g[size].mean()), int(g[metric].notna().sum()),
                              float(g[metric].mean()), gain, lo, hi, test)  # fmt: skip
        by_method.setdefault(me, []).append(verdict)
    answers = []
    for method, cells in sorted(by_method.items()):
        cells = sorted(cells, key=lambda c: c.size)
        best = next((c for c in cells if c.beats), None)
        rows = pd.concat([g for (me, _), g in groups.items() if me == method]).sort_index()
        if others := _cell_fields(rows):
            pred, flags = None, ()
            notes = (f"no prediction: the {method} cells differ in {', '.join(others)} "
                     "besides size (no one law in N)",)  # fmt: skip
        else:
            pred, flags, notes = _prediction(rows, metric, higher, size, target, bootstrap,
                                             loss_col, chance)  # fmt: skip
        answers.append(MethodAnswer(method, best, tuple(cells), pred, flags,
                                    _statement(method, best, cells, metric, target, size),
                                    notes))  # fmt: skip
    return ReachAnswer(metric, higher, float(target), answers, loss_col, chance)


def _statement(method, best, cells, metric: str, target: float, size: str) -> str:
    if best is not None:
        return (
            f"{best.model} ({size} {best.size:,.0f}) is the smallest {method} model that "
            f"reaches {metric} {target:g}: mean {best.mean:.4g}, diff {best.gain:+.4g} "
            f"[{best.lo:+.4g}, {best.hi:+.4g}] ({best.test})"
        )
    tested = [c for c in cells if not math.isnan(c.lo)]
    if not tested:
        by_mean = [c for c in cells if c.gain >= 0]
        unsure = f"; {by_mean[0].model} reaches it by its mean only" if by_mean else ""
        return f"no answer for {method}: no cell has the seeds a test needs (>= 2){unsure}"
    closest = max(tested, key=lambda c: c.gain)
    return (
        f"no {method} model reaches {metric} {target:g} with support; closest: "
        f"{closest.model} (mean {closest.mean:.4g}, diff {closest.gain:+.4g} "
        f"[{closest.lo:+.4g}, {closest.hi:+.4g}], {closest.test})"
    )


def prediction_text(answer: MethodAnswer) -> str:
    """The predicted smallest size in words, with how far past the data it lies."""
    s = answer.crossover
    if s is None:
        return "; ".join(n for n in answer.notes if n.startswith("no ")) or "no prediction"
    hi = "inf" if not np.isfinite(s.hi) else f"{s.hi:,.4g}"
    ci = f" [{s.lo:,.4g}, {hi}]" if np.isfinite(s.lo) else " (no interval: too few refits)"
    past = "; ".join(s.validity())
    return f"predicted smallest size reaching it: {s.n:,.4g}{ci}" + (f" ({past})" if past else "")
