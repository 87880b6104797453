"""Sweep envelopes: per model (and every other config that is not swept), the best run over
named swept axes, chosen on validation, never on test.

A scaling law is only as good as its ladder: each size should sit at its own best learning
rate. Input: a runs table as `scalelab results` produces (one row per run: `model`,
`method` (maybe `variant`), `seed`, `task.*`, `params.*`, then metrics), or any CSV with
the named columns.

* A *cell* is one value of the cell columns: by default every config column (`seeds.
  config_columns`) but the swept axes and `seed`, plus `stage` where the table has one.
* A *setting* is one cell at one combination of the axes' values; its score is the mean
  over seeds of the selection metric (NaN values left out).
* Per cell the winner is the setting with the best score; every run (every seed) of the
  winner is kept. Ties go to the setting seen first in the table.
* An *edge* winner: for a numeric axis, the winner's value is the smallest or largest value
  of that axis among the cell's settings (with at least two values): the optimum may lie
  outside the swept range. A cell that swept only one value of an axis is warned about too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from scalelab.analysis.seeds import config_columns
from scalelab.analysis.table import as_text, name_list
from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class Envelope:
    """`best_over`'s result.

    rows: the selected runs (a subset of the input's rows, index kept), every seed of each
    cell's winning setting; winners: one row per cell, in table order: the cell columns that
    vary across cells, `cell` (its name), each axis (the winning value), `<select_on>` (the
    winner's mean over seeds), `seeds` (runs with a value behind that mean), `settings`
    (settings compared in the cell) and `edge` (the axes at the edge, comma-separated, ""
    for none); warnings: one line per edge winner, naming the cell, the axis and the value.
    """

    rows: pd.DataFrame
    winners: pd.DataFrame
    warnings: tuple[str, ...]
    axes: tuple[str, ...]
    select_on: str
    higher_is_better: bool


def validation_twin(metric: str) -> str:
    """The selection column for a plotted or fitted `metric`: `test_X` -> `val_X`; any
    other name is its own twin (`val_loss`, a CSV's `loss`)."""
    return f"val_{metric[5:]}" if metric.startswith("test_") else metric


def check_columns(table: pd.DataFrame, axes: Sequence[str], select_on: str) -> None:
    """Raise ScalelabError (one line) for no axis, an axis given twice, absent or taking
    one value, or a selection column that is absent, a test metric, or an axis."""
    if not axes:
        raise ScalelabError("--best-over: name at least one swept column (e.g. params.lr)")
    if len(set(axes)) != len(axes):
        raise ScalelabError(f"--best-over: a column is named twice ({', '.join(axes)})")
    for axis in axes:
        if axis not in table.columns:
            raise ScalelabError(
                f"--best-over {axis}: no such column (table has: {name_list(list(table.columns))})"
            )
        values = as_text(table[axis]).unique()
        if len(values) < 2:
            one = values[0] if len(values) else "no value"
            raise ScalelabError(
                f"--best-over {axis}: it does not vary (every run has {one}): nothing to choose"
            )
    if select_on.startswith("test_"):
        raise ScalelabError(
            f"select on {select_on}: a test metric; choose on validation (e.g. "
            f"{validation_twin(select_on)}), report test"
        )
    if select_on in axes:
        raise ScalelabError(f"select on {select_on}: it is a swept axis, not a metric")
    if select_on not in table.columns:
        raise ScalelabError(
            f"select on {select_on}: no such column (table has: {name_list(list(table.columns))})"
        )


def default_cells(table: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """The columns that name a cell: config columns but the axes and `seed`, plus `stage`."""
    cols = [c for c in config_columns(table) if c not in axes and c != "seed"]
    return cols + (["stage"] if "stage" in table.columns and "stage" not in axes else [])


def best_over(
    table: pd.DataFrame,
    axes: Sequence[str],
    select_on: str,
    higher_is_better: bool = False,
    cells: Sequence[str] | None = None,
) -> Envelope:
    """Per cell, the setting of `axes` with the best mean over seeds of `select_on` (a
    validation metric; higher or lower is better), with all its seeds. `cells`: the columns
    that name a cell (default `default_cells`). Raises ScalelabError (see `check_columns`),
    and when no cell has a value of `select_on`."""
    axes = tuple(axes)
    check_columns(table, axes, select_on)
    cells = list(default_cells(table, axes) if cells is None else cells)
    cells = [c for c in cells if c not in axes]
    score = pd.to_numeric(table[select_on], errors="coerce")
    keys = as_text(table[[*cells, *axes]])
    cell_key = keys[cells].apply(tuple, axis=1) if cells else pd.Series("", index=table.index)
    setting_key = keys[list(axes)].apply(tuple, axis=1)
    varying = [c for c in cells if keys[c].nunique() > 1]
    named = _naming(keys, varying)
    keep, winners, warnings = [], [], []
    for ck in dict.fromkeys(cell_key):
        in_cell = cell_key == ck
        means = score[in_cell].groupby(setting_key[in_cell], sort=False).mean().dropna()
        if means.empty:
            continue
        best = means.idxmax() if higher_is_better else means.idxmin()
        chosen = in_cell & (setting_key == best)
        keep.append(chosen)
        first = table[chosen].iloc[0]
        name = cell_name(first, named)
        edges, lines = _edges(table[in_cell], axes, first, name)
        warnings.extend(lines)
        winners.append(
            {
                **{c: first[c] for c in varying},
                "cell": name,
                **{a: first[a] for a in axes},
                select_on: float(means[best]),
                "seeds": int(score[chosen].notna().sum()),
                "settings": len(means),
                "edge": ", ".join(edges),
            }
        )
    if not keep:
        raise ScalelabError(f"select on {select_on}: no run has a value of it")
    mask = pd.concat(keep, axis=1).any(axis=1)
    return Envelope(table[mask], pd.DataFrame(winners), tuple(warnings), axes, select_on,
                    higher_is_better)  # fmt: skip


def declared_direction(metric: str, table: pd.DataFrame) -> bool | None:
    """Whether higher `metric` is better, as the table's methods (its `method` column)
    declare it; None without a `method` column or a declared direction."""
    from scalelab.metrics import metric_def

    if "method" not in table.columns:
        return None
    defn = metric_def(metric, list(table["method"].dropna().unique()))
    return None if defn is None else defn.higher_is_better


def envelope_for(
    table: pd.DataFrame, axes: Sequence[str], metric: str, higher_is_better: bool = False
) -> Envelope:
    """`best_over` selecting on the validation twin of `metric`, the metric plotted, fitted
    or compared (`validation_twin`: test_loss -> val_loss); its direction as declared,
    else `higher_is_better` (the metric's). Raises ScalelabError as `best_over` does."""
    select_on = validation_twin(metric)
    higher = declared_direction(select_on, table) if select_on in table.columns else None
    return best_over(table, axes, select_on, higher_is_better if higher is None else higher)


def _naming(keys: pd.DataFrame, varying: list[str]) -> list[str]:
    """The varying cell columns that name cells apart: with a `model` column, those that
    vary within some model (a token budget; not a size that the model fixes)."""
    if "model" not in keys.columns:
        return varying
    return [c for c in varying if c != "model" and (keys.groupby("model")[c].nunique() > 1).any()]


def answer_envelope(
    table: pd.DataFrame, axes: Sequence[str], metric: str | None
) -> tuple[pd.DataFrame, Envelope]:
    """For "the smallest model that beats" (`analysis/beats.py`): (the finished runs at each
    cell's best setting over `axes`, without the axis columns (`unswept`), the `Envelope`),
    chosen on the validation twin of the metric compared (`metric`, else the methods' first
    validation quality metric). Raises ScalelabError for a bad axis, a metric the methods
    do not declare, or a validation twin the table lacks."""
    from scalelab.analysis.beats import compared_metric

    done = table[table["status"] == "done"] if "status" in table else table
    metric, higher = compared_metric(done, metric)
    env = envelope_for(done, axes, metric, higher)
    return unswept(env), env


def cell_name(row: pd.Series, fields: Sequence[str]) -> str:
    """A cell as a reader names it: the model (where the table has one), then `name=value`
    of `fields` ("gpt-d2 tokens=1e+06"); "all runs" with nothing to name."""
    from scalelab.analysis.table import field_text

    parts = [str(row["model"])] if "model" in row.index else []
    parts += [t for c in fields if c != "model" and (t := field_text(c, row[c], {}))]
    return " ".join(parts) or "all runs"


def _edges(
    cell: pd.DataFrame, axes: Sequence[str], winner: pd.Series, name: str
) -> tuple[list[str], list[str]]:
    """(axes at the edge, warning lines) for one cell's winner: a numeric axis whose winning
    value is the cell's smallest or largest (or only) value."""
    edges, lines = [], []
    for axis in axes:
        values = pd.to_numeric(cell[axis], errors="coerce")
        won = pd.to_numeric(pd.Series([winner[axis]]), errors="coerce").iloc[0]
        if values.isna().any() or math.isnan(won):
            continue  # a categorical axis has no edge
        swept = sorted(values.unique())
        text = f"{axis}={won:g}"
        if len(swept) == 1:
            edges.append(axis)
            lines.append(f"edge: {name} swept only {text}: its best {axis} is unknown")
        elif won in (swept[0], swept[-1]):
            side = "smallest" if won == swept[0] else "largest"
            beyond = "below" if side == "smallest" else "above"
            edges.append(axis)
            lines.append(
                f"edge: {name} won at {text}, the {side} value swept for it "
                f"({', '.join(f'{v:g}' for v in swept)}): its best may lie {beyond}; extend "
                "the sweep"
            )
    return edges, lines


def envelope_json(env: Envelope) -> dict:
    """The envelope for JSON output: axes, select_on, higher_is_better, winners (one dict
    per cell, as `Envelope.winners`), warnings. NaN stays NaN: pass it through `jsonable`."""
    return {
        "axes": list(env.axes),
        "select_on": env.select_on,
        "higher_is_better": env.higher_is_better,
        "winners": env.winners.to_dict(orient="records"),
        "warnings": list(env.warnings),
    }


def unswept(env: Envelope) -> pd.DataFrame:
    """The selected runs without the axis columns: each cell has one setting left, so
    analyses that name cells by their varying fields name them by model alone."""
    return env.rows.drop(columns=list(env.axes))


def winners_text(env: Envelope, fmt: str = ".4f") -> list[str]:
    """The winners as aligned text lines: a header, one line per cell, then the warnings."""
    w = env.winners
    better = "higher" if env.higher_is_better else "lower"
    head = (
        f"best over {', '.join(env.axes)} per model, chosen on {env.select_on} "
        f"({better} is better, mean over seeds):"
    )
    width = max([len(str(c)) for c in w["cell"]] + [4])
    values = {a: [f"{_short(a)}={_value(v)}" for v in w[a]] for a in env.axes}
    pads = {a: max(len(v) for v in vs) for a, vs in values.items()}
    lines = [head]
    for i, r in enumerate(w.to_dict(orient="records")):
        won = "  ".join(f"{values[a][i]:<{pads[a]}}" for a in env.axes)
        lines.append(
            f"  {r['cell']:<{width}}  {won}  {env.select_on} {format(r[env.select_on], fmt)}"
            f"  ({r['seeds']} seed{'s' * (r['seeds'] != 1)}, {r['settings']} setting{'s' * (r['settings'] != 1)})"
            + ("  [edge]" if r["edge"] else "")
        )
    lines += [f"warning: {line}" for line in env.warnings]
    return lines


def _short(axis: str) -> str:
    return axis.split(".", 1)[-1] if axis.startswith(("params.", "task.")) else axis


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
