"""`scalelab active EXP.yaml`: an active-learning experiment's learning curves (mean test
accuracy per strategy and label count, 95% interval over seeds) and each strategy's label
saving against random sampling with its bootstrap interval (`analysis/active.py`)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from scalelab.cli.common import input_file, jsonable, stored_tables


class ActiveFormat(str, Enum):
    table = "table"
    json = "json"


def _ci(lo: float, hi: float, spec: str) -> str:
    return "n/a" if lo != lo else f"[{lo:{spec}}, {hi:{spec}}]"


def _text(curves, savings, metric: str, n_boot: int) -> str:
    """The console tables: curves (one row per setting, strategy, labels), then savings."""
    lines = [f"{metric} per strategy and label count: mean over seeds, 95% interval "
             "(Student t over seeds)"]  # fmt: skip
    # The setting column only where settings tell active runs apart (else every row "-").
    wide = bool(curves["setting"].astype(bool).any())

    def setting(r) -> str:
        return f"{r.setting or '-':<16} " if wide else ""

    lines.append(f"{'setting':<16} " * wide + f"{'strategy':<17} {'labels':>7} {'seeds':>5} "
                 f"{'mean':>7}  95% interval")  # fmt: skip
    for r in curves.itertuples():
        lines.append(f"{setting(r)}{r.strategy:<17} {r.labels:>7,d} {r.n:>5d} "
                     f"{r.mean:>7.4f}  {_ci(r.ci_low, r.ci_high, '.4f')}")  # fmt: skip
    lines += ["", f"label saving vs random at equal {metric}: labels random needs / labels "
              f"used (95% bootstrap over seeds, {n_boot} draws; > 1 saves labels)"]  # fmt: skip
    if savings is None:
        lines.append("  n/a: no random runs to compare with")
        return "\n".join(lines)
    lines.append(f"{'setting':<16} " * wide + f"{'strategy':<17} {'labels':>7} {'accuracy':>8} "
                 f"{'random needs':>12} {'saving':>8}  95% interval")  # fmt: skip
    for r in savings.itertuples():
        mark = {"more than": ">=", "at most": "<="}.get(r.censored, "")
        lines.append(f"{setting(r)}{r.strategy:<17} {r.labels:>7,d} {r.accuracy:>8.4f} "
                     f"{r.random_labels:>12,.0f} {mark + format(r.ratio, '.2f'):>8}  "
                     f"{_ci(r.ci_low, r.ci_high, '.2f')}")  # fmt: skip
    if (savings["censored"] != "").any():
        lines.append(
            ">= / <=: the accuracy lies outside random's curve (not extrapolated): a bound"
        )
    return "\n".join(lines)


def active_command(
    experiment: Path = typer.Argument(..., help="Experiment spec (EXP.yaml)."),
    metric: str = typer.Option("test_accuracy", "--metric", help="A curve metric."),
    format: ActiveFormat = typer.Option(ActiveFormat.table, "--format", help="table or json."),
    n_boot: int = typer.Option(1000, "--bootstrap", min=1, max=100_000, help="Bootstrap draws."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Bootstrap seed."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the experiment's output_dir."
    ),
) -> None:
    """Active learning: the learning curve (accuracy vs labels) of each strategy with
    intervals over seeds, and its label saving against random sampling."""
    input_file(experiment, "experiment file")
    from scalelab.analysis.active import active_points, label_savings, learning_curves
    from scalelab.errors import ScalelabError
    from scalelab.grid.api import open_experiment

    exp = open_experiment(experiment, output_dir)
    runs, curve_table = stored_tables(exp, experiment)
    points = active_points(runs, curve_table)
    curves = learning_curves(points, metric)
    try:
        savings = label_savings(points, metric, n_boot=n_boot, seed=seed)
    except ScalelabError:  # no random runs: the curves alone
        savings = None
    if format is ActiveFormat.json:
        data = {"metric": metric, "curves": curves.to_dict("records"),
                "savings": [] if savings is None else savings.to_dict("records")}  # fmt: skip
        typer.echo(json.dumps(jsonable(data), indent=2))
    else:
        typer.echo(_text(curves, savings, metric, n_boot))


def register(app: typer.Typer) -> None:
    """Add `active` to the main app."""
    app.command("active")(active_command)
