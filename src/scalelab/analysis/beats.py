""" "What is the smallest model that beats a larger one?": per method, the smallest model
whose metric beats a reference cell of the grid, with the test over seeds behind it, and
the crossover size read off each method's fitted power law.

Input: the experiment's results table (one row per run: `method`, `model`, `seed`, a size
column such as `non_embedding_params`, the metric). A cell is one (method, model); its
seeds are its replicates. A cell *beats* the reference when the 95% interval of its mean
difference to the reference, in the better direction, lies above 0: a paired t interval
over the seeds both cells ran (at least 2), else Welch's t interval (each with at least 2
seeds); with fewer seeds nothing can be claimed and the answer says so.

The crossover: the method's points (every seed) fitted with L(N) = E + A N^(-alpha)
(accuracies as 1 - acc), inverted at the reference's mean, with a bootstrap interval
(`analysis.api.fit_table` with a target): the size at which the method is predicted to
match the reference, and the fit's identifiability flags beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from scalelab.analysis.seeds import paired_test
from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class CellVerdict:
    """One candidate (method, model) against the reference. `gain`: mean improvement over
    the reference in the metric's units, positive = better; `lo`/`hi`: its 95% interval
    (NaN when no test applies); `test`: which one; `beats`: lo > 0."""

    method: str
    model: str
    size: float
    n_seeds: int
    mean: float
    gain: float
    lo: float
    hi: float
    test: str

    @property
    def beats(self) -> bool:
        return bool(self.lo > 0)


@dataclass(frozen=True)
class MethodAnswer:
    """The answer for one method: `smallest` (the smallest cell that beats the reference, or
    None), every cell's verdict by size, the fitted crossover (a `SmallestN` or None) with
    its flags, and `statement`, the answer in words."""

    method: str
    smallest: CellVerdict | None
    cells: tuple[CellVerdict, ...]
    crossover: Any = None
    crossover_flags: tuple[str, ...] = ()
    statement: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _gain_interval(cell: pd.Series, ref: pd.Series, sign: float) -> tuple[float, float, float, str]:
    """(mean gain, lo, hi, test name) of `cell` over `ref` (seed-indexed values)."""
    common = cell.index.intersection(ref.index)
    if len(common) >= 2:
        t = paired_test(cell[common].to_numpy(), ref[common].to_numpy())
        lo, hi = sorted((sign * t["diff_ci_low"], sign * t["diff_ci_high"]))
        return sign * t["mean_diff"], lo, hi, f"paired t, {len(common)} seeds"
    gain = sign * (cell.mean() - ref.mean())
    if len(cell) >= 2 and len(ref) >= 2:
        res = stats.ttest_ind(cell.to_numpy(), ref.to_numpy(), equal_var=False)
        ci = res.confidence_interval(0.95)
        lo, hi = sorted((sign * ci.low, sign * ci.high))
        return gain, lo, hi, f"Welch t, {len(cell)} vs {len(ref)} seeds"
    return gain, math.nan, math.nan, f"no test: {min(len(cell), len(ref))} seed(s)"


def verdicts(
    table: pd.DataFrame, ref: tuple[str, str], metric: str, higher_is_better: bool, size: str
) -> dict[str, list[CellVerdict]]:
    """method -> verdicts of its cells against the reference cell `ref` = (model, method),
    by size. Raises ScalelabError for a missing column or reference cell."""
    for col in ("method", "model", "seed", metric, size):
        if col not in table.columns:
            raise ScalelabError(f"the results have no column {col!r}")
    done = table[table[metric].notna()]
    cells = {k: g.set_index("seed")[metric] for k, g in done.groupby(["method", "model"])}
    model, method = ref
    if (method, model) not in cells:
        have = ", ".join(f"{m}/{me}" for me, m in sorted(cells)) or "none"
        raise ScalelabError(f"--beats {model}/{method}: no such cell with {metric}; cells: {have}")
    ref_values, sign = cells[(method, model)], 1.0 if higher_is_better else -1.0
    sizes = done.groupby(["method", "model"])[size].mean()
    out: dict[str, list[CellVerdict]] = {}
    for (me, mo), values in cells.items():
        if (me, mo) == (method, model):
            continue
        gain, lo, hi, test = _gain_interval(values, ref_values, sign)
        out.setdefault(me, []).append(
            CellVerdict(
                me,
                mo,
                float(sizes[(me, mo)]),
                len(values),
                float(values.mean()),
                float(gain),
                float(lo),
                float(hi),
                test,
            )  # fmt: skip
        )
    return {me: sorted(v, key=lambda c: c.size) for me, v in sorted(out.items())}


def _crossover(rows: pd.DataFrame, metric: str, higher: bool, size: str, target: float, boot: int):
    """(SmallestN or None, flag messages, notes) from the method's power law at `target`."""
    from scalelab.analysis.api import FitSpec, fit_table

    spec = FitSpec("power", size, metric, bootstrap=boot, target=target, higher_is_better=higher)
    try:
        g = fit_table(rows, spec).groups[0]
    except ScalelabError as err:
        return None, (), (f"no crossover fit: {err}",)
    return g.smallest, tuple(f.message for f in g.flags), tuple(g.notes)


def smallest_that_beats(
    table: pd.DataFrame,
    ref: tuple[str, str],
    metric: str,
    higher_is_better: bool,
    size: str = "non_embedding_params",
    bootstrap: int = 200,
) -> list[MethodAnswer]:
    """Per method: the smallest model that beats `ref` = (model, method) on `metric`, the
    crossover from its fitted law, and the answer in words (see the module docstring)."""
    done = table[table[metric].notna()]
    ref_mean = float(done[(done["model"] == ref[0]) & (done["method"] == ref[1])][metric].mean())
    answers = []
    for method, cells in verdicts(table, ref, metric, higher_is_better, size).items():
        best = next((c for c in cells if c.beats), None)
        rows = done[done["method"] == method]
        cross, flags, notes = _crossover(rows, metric, higher_is_better, size, ref_mean, bootstrap)
        answers.append(MethodAnswer(method, best, tuple(cells), cross, flags,
                                    _statement(method, best, cells, ref, metric, size), notes))  # fmt: skip
    return answers


def _statement(method, best, cells, ref, metric, size) -> str:
    name = f"{ref[0]}/{ref[1]}"
    if best is not None:
        return (
            f"{best.model} ({size} {best.size:,.0f}) is the smallest {method} model that beats "
            f"{name} on {metric}: gain {best.gain:+.4g} [{best.lo:+.4g}, {best.hi:+.4g}] "
            f"({best.test})"
        )
    tested = [c for c in cells if not math.isnan(c.lo)]
    if not tested:
        return f"no answer for {method}: no cell has the seeds a test needs (>= 2)"
    closest = max(tested, key=lambda c: c.gain)
    return (
        f"no {method} model beats {name} on {metric} with support; closest: {closest.model} "
        f"(gain {closest.gain:+.4g} [{closest.lo:+.4g}, {closest.hi:+.4g}], {closest.test})"
    )


def as_rows(answers: list[MethodAnswer]) -> list[dict[str, Any]]:
    """Flat rows (one per cell) for tables and JSON."""
    return [
        {
            "method": a.method,
            "model": c.model,
            "size": c.size,
            "seeds": c.n_seeds,
            "mean": c.mean,
            "gain": c.gain,
            "lo": c.lo,
            "hi": c.hi,
            "test": c.test,
            "beats": c.beats,
        }  # fmt: skip
        for a in answers
        for c in a.cells
    ]


def crossover_text(answer: MethodAnswer) -> str:
    """The fitted crossover in words, with what limits it."""
    s = answer.crossover
    if s is None:
        return "; ".join(answer.notes) or "no crossover fit"
    hi = "inf (the data do not bound it)" if not np.isfinite(s.hi) else f"{s.hi:,.4g}"
    ci = f" [{s.lo:,.4g}, {hi}]" if np.isfinite(s.lo) else " (no interval: too few refits)"
    return f"fitted crossover at {s.n:,.4g}{ci}"
