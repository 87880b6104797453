""" "What is the smallest model that beats a larger one?": per method, the smallest model
whose metric beats a reference cell of the grid, with the test over seeds behind it, and
the crossover size read off each method's fitted power law.

Input: the experiment's results table (one row per run: `method`, `model`, `seed`, a size
column such as `non_embedding_params`, the metric). A cell is one configuration of one
method (or labelled method entry): its model and every other field that varies within the
method; its seeds are its replicates. A cell *beats* the reference when the 95% interval of its mean
difference to the reference, in the better direction, lies above 0: a paired t interval
over the seeds both cells ran (at least 2), else Welch's t interval (each with at least 2
seeds), else, against a reference of one run (an evaluation with no training seed, such
as a teacher's few-shot accuracy), a one-sample t interval of the cell's seeds around the
reference's value; with fewer seeds nothing can be claimed and the answer says so.

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
from scalelab.analysis.table import shown_models
from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class CellVerdict:
    """One candidate (method, model) against the reference. `gain`: mean improvement over
    the reference in the metric's units, positive = better; `lo`/`hi`: its 95% interval
    (NaN when no test applies); `test`: which one; `margin`: how far below the reference a
    cell may be and still count (0: strictly better); `beats`: lo > -margin."""

    method: str
    model: str
    size: float
    n_seeds: int
    mean: float
    gain: float
    lo: float
    hi: float
    test: str
    margin: float = 0.0

    @property
    def beats(self) -> bool:
        return bool(self.lo > -self.margin)


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
    if len(cell) >= 2 and len(ref) == 1:
        # A reference that is one run (typically an evaluation, which has no training seed:
        # a teacher's few-shot accuracy) is taken as a fixed value: a one-sample t interval
        # of the cell's seeds around it. Its own seed-to-seed spread, if any, is not counted.
        test = f"one-sample t, {len(cell)} seeds vs 1 reference run"
        if cell.nunique() == 1:  # no spread: the interval is the point (t is undefined)
            return gain, gain, gain, f"{test}, all seeds equal"
        res = stats.ttest_1samp(cell.to_numpy() - float(ref.iloc[0]), 0.0)
        ci = res.confidence_interval(0.95)
        lo, hi = sorted((sign * ci.low, sign * ci.high))
        return gain, lo, hi, test
    n = min(len(cell), len(ref))
    return gain, math.nan, math.nan, f"no test: {n} seed{'s' * (n != 1)}"


def arm_column(table: pd.DataFrame) -> str:
    """The column whose values are the methods compared: `variant` where the table has one
    (method entries with a `label`), else `method`."""
    return "variant" if "variant" in table.columns else "method"


def _cell_fields(rows: pd.DataFrame) -> list[str]:
    """The config fields that vary among one method's runs besides the model (and seed):
    they name its cells apart (`gpt-d2 tokens=250000 teachers=gpt-d6 (stage teachers)`).
    The kept blocks of a cut model are named with the model (`shown_models`)."""
    from scalelab.analysis.seeds import label_columns

    return [c for c in label_columns(rows) if c != "params.keep_layers"]


def _cell_names(done: pd.DataFrame, arm: str, everything: pd.DataFrame) -> pd.Series:
    """Per row of `done`, its cell's name: the model as shown (`shown_models`, products
    named from the rows of `everything`, the whole table) plus the fields that vary within
    its method (`_cell_fields`)."""
    from scalelab.analysis.table import field_text, model_names

    models = model_names(everything)
    shown = shown_models(done, models)
    out = shown.copy()
    for _, rows in done.groupby(arm, sort=False):
        fields = _cell_fields(rows)
        for i, r in rows.iterrows():
            texts = [t for c in fields if (t := field_text(c, r.get(c), models)) is not None]
            out[i] = " ".join([shown[i], *texts])
    return out


def _cells(table: pd.DataFrame, metric: str, size: str) -> dict[tuple[str, str], pd.DataFrame]:
    """(method or label, cell name) -> the cell's runs with a value of `metric`. A cell is
    one configuration of one method: the model, and every other field that varies within
    that method (a cut model's kept blocks, a token budget, a teacher); its runs are its
    seeds. Raises ScalelabError for a missing column."""
    arm = arm_column(table)
    for col in (arm, "model", "seed", metric, size):
        if col not in table.columns:
            raise ScalelabError(f"the results have no column {col!r}")
    done = table[table[metric].notna()]
    done = done.assign(_cell=_cell_names(done, arm, table))
    return {k: g for k, g in done.groupby([arm, "_cell"], sort=False)}


def _reference(groups: dict[tuple[str, str], pd.DataFrame], ref: tuple[str, str], metric: str):
    """The key of the one cell `ref` = (model, method or label) names: the model written as
    the table has it, as the cell is named (`smallest` prints the names), or as the start
    of one cell's name (`gpt-d3` for `gpt-d3 tokens=750000` when it is the only one).
    Raises ScalelabError naming the candidates when none or several match."""
    from scalelab.analysis.table import as_text, name_list

    model, method = ref
    mine = {k: g for k, g in groups.items() if k[0] == method}
    keys = [k for k, g in mine.items() if k[1] == model or (as_text(g["model"]) == model).all()]
    if not keys:
        keys = [k for k in mine if k[1].startswith((f"{model} ", f"{model}("))]
    if len(keys) == 1:
        return keys[0]
    if keys:
        which = name_list([f"{c}/{me}" for me, c in keys])
        raise ScalelabError(
            f"reference {model}/{method}: {len(keys)} cells match; name one: {which}"
        )
    pool = mine or groups
    have = name_list(sorted({f"{c}/{me}" for me, c in pool})) or "none"
    raise ScalelabError(
        f"reference {model}/{method}: no finished runs of such a cell with {metric}; "
        f"{'its' if mine else 'the'} cells: {have}"
    )


def verdicts(
    table: pd.DataFrame,
    ref: tuple[str, str],
    metric: str,
    higher_is_better: bool,
    size: str,
    margin: float = 0.0,
) -> dict[str, list[CellVerdict]]:
    """method (or label: `arm_column`) -> verdicts of its cells (`_cells`) against the
    reference cell `ref` = (model, method or label), by size; with `margin` > 0 a cell
    counts when it is no worse than the reference by more than `margin` (a non-inferiority
    test: the gain's interval lies above -margin). Raises ScalelabError for a missing
    column or a missing or ambiguous reference."""
    groups = _cells(table, metric, size)
    return _verdicts(groups, _reference(groups, ref, metric), metric, higher_is_better, size,
                     margin)  # fmt: skip


def _verdicts(groups, key, metric: str, higher_is_better: bool, size: str, margin: float):
    """`verdicts` on cells already grouped (`_cells`) against the reference cell `key`."""
    ref_values, sign = groups[key].set_index("seed")[metric], 1.0 if higher_is_better else -1.0
    out: dict[str, list[CellVerdict]] = {}
    for (me, cell), g in groups.items():
        if (me, cell) == key:
            continue
        values = g.set_index("seed")[metric]
        gain, lo, hi, test = _gain_interval(values, ref_values, sign)
        out.setdefault(me, []).append(
            CellVerdict(
                me,
                cell,
                float(g[size].mean()),
                len(values),
                float(values.mean()),
                float(gain),
                float(lo),
                float(hi),
                test,
                margin,
            )  # fmt: skip
        )
    return {me: sorted(v, key=lambda c: c.size) for me, v in sorted(out.items())}


def _crossover(rows: pd.DataFrame, metric: str, higher: bool, size: str, target: float, boot: int):
    """(SmallestN or None, flag messages, notes) from the method's power law at `target`."""
    from scalelab.analysis.api import FitSpec, fit_table

    values = rows[metric].dropna()
    if len(values) and values.nunique() == 1:  # e.g. every student at 0% exact match
        return None, (), (f"no crossover fit: every {metric} is {values.iloc[0]:.4g} (a flat "
                          "metric has no power law)",)  # fmt: skip
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
    margin: float = 0.0,
) -> list[MethodAnswer]:
    """Per method: the smallest model that beats `ref` = (model, method) on `metric` (or,
    with `margin` > 0, comes within `margin` of it: `verdicts`), the crossover from its
    fitted law at the reference's mean (less the margin), and the answer in words (see the
    module docstring)."""
    groups = _cells(table, metric, size)
    key = _reference(groups, ref, metric)
    return _answers(groups, key, ref, metric, higher_is_better, size, bootstrap, margin)


def _answers(groups, key, ref, metric, higher_is_better, size, bootstrap, margin):
    """`smallest_that_beats` on cells already grouped (`_cells`), reference cell `key`."""
    sign = 1.0 if higher_is_better else -1.0
    target = float(groups[key][metric].mean()) - sign * margin
    found = _verdicts(groups, key, metric, higher_is_better, size, margin)
    answers = []
    for method, cells in found.items():
        best = next((c for c in cells if c.beats), None)
        rows = pd.concat([g for (me, _), g in groups.items() if me == method]).sort_index()
        others = _cell_fields(rows)
        if others:  # a power law in N alone would mix budgets, teachers, ...
            cross, flags = None, ()
            notes = (f"no crossover fit: the {method} cells differ in "
                     f"{', '.join(others)} besides size (no one power law in N)",)  # fmt: skip
        else:
            cross, flags, notes = _crossover(rows, metric, higher_is_better, size, target,
                                             bootstrap)  # fmt: skip
        answers.append(MethodAnswer(method, best, tuple(cells), cross, flags,
                                    _statement(method, best, cells, ref, metric, size, margin),
                                    notes))  # fmt: skip
    return answers


@dataclass(frozen=True)
class Answer:
    """`answer_for`'s result: the metric compared and its direction, the reference cell
    (MODEL/METHOD), its mean, seed count and size, one `MethodAnswer` per other method, and
    the margin asked for."""

    metric: str
    higher_is_better: bool
    reference: str
    reference_mean: float
    reference_seeds: int
    reference_size: float
    methods: list[MethodAnswer]
    margin: float = 0.0


def compared_metric(done: pd.DataFrame, metric: str | None) -> tuple[str, bool]:
    """(metric, higher is better) that `answer_for` compares: `metric`, else the methods'
    first validation quality metric with a column. Raises ScalelabError for a metric the
    methods do not declare as a quality metric, or a table without a `method` column."""
    from scalelab.metrics import default_metric, metric_def

    if "method" not in done:
        raise ScalelabError("the runs table has no 'method' column: there are no methods' "
                            "cells to compare (a runs table from `scalelab results` has one)")  # fmt: skip
    methods = sorted(done["method"].dropna().unique())
    metric = metric or default_metric(methods, "val", available=set(done.columns))
    defn = metric_def(metric or "", methods) if metric else None
    if defn is None or defn.higher_is_better is None:
        raise ScalelabError(f"--metric {metric!r}: not a quality metric the methods declare")
    return metric, bool(defn.higher_is_better)


def answer_for(
    table: pd.DataFrame,
    beats: str,
    metric: str | None,
    size: str,
    bootstrap: int,
    margin: float = 0.0,
) -> Answer:
    """The answer for `beats` = "MODEL/METHOD" (or MODEL/LABEL) over a runs table's
    finished runs; `metric` None: the methods' first validation quality metric; `margin`:
    see `verdicts`. Raises ScalelabError for a malformed or missing reference, an
    undeclared metric or a negative margin."""
    model, slash, method = beats.rpartition("/")
    if not slash or not model or not method:
        raise ScalelabError(f"--beats {beats!r}: write MODEL/METHOD, e.g. gpt-d6/pretrain")
    done = table[table["status"] == "done"] if "status" in table else table
    metric, higher = compared_metric(done, metric)
    if not (margin >= 0 and math.isfinite(margin)):
        raise ScalelabError(f"--margin {margin!r}: a finite number >= 0 in {metric}'s units")
    groups = _cells(done, metric, size)
    key = _reference(groups, (model, method), metric)
    ref = groups[key]
    answers = _answers(groups, key, (model, method), metric, higher, size, bootstrap, margin)
    return Answer(metric, higher, beats, float(ref[metric].mean()), len(ref),
                  float(ref[size].mean()), answers, margin)  # fmt: skip


def _statement(method, best, cells, ref, metric, size, margin: float = 0.0) -> str:
    name = f"{ref[0]}/{ref[1]}"
    verb = f"comes within {margin:g} of" if margin else "beats"
    if best is not None:
        return (
            f"{best.model} ({size} {best.size:,.0f}) is the smallest {method} model that {verb} "
            f"{name} on {metric}: gain {best.gain:+.4g} [{best.lo:+.4g}, {best.hi:+.4g}] "
            f"({best.test})"
        )
    tested = [c for c in cells if not math.isnan(c.lo)]
    if not tested:
        return f"no answer for {method}: no cell has the seeds a test needs (>= 2)"
    closest = max(tested, key=lambda c: c.gain)
    return (
        f"no {method} model {verb} {name} on {metric} with support; closest: {closest.model} "
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
    """The fitted crossover in words, with what limits it: how far past the data it lies and
    an interval end the data do not bound (`SmallestN.validity`, as `reaches` words it)."""
    s = answer.crossover
    if s is None:
        return "; ".join(answer.notes) or "no crossover fit"
    hi = "inf" if not np.isfinite(s.hi) else f"{s.hi:,.4g}"
    ci = f" [{s.lo:,.4g}, {hi}]" if np.isfinite(s.lo) else " (no interval: too few refits)"
    past = "; ".join(s.validity())
    return f"fitted crossover at {s.n:,.4g}{ci}" + (f" ({past})" if past else "")
