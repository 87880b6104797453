"""`scalelab smallest EXP.yaml --beats MODEL/METHOD`: the smallest model, per method, that
beats a reference cell of the grid (analysis/beats.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from scalelab.errors import ScalelabError


def smallest(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    beats: str = typer.Option(..., "--beats", help="The reference cell, MODEL/METHOD (e.g. gpt-d6/pretrain)."),
    metric: str | None = typer.Option(None, "--metric", help="Default: the methods' first validation quality metric."),
    size: str = typer.Option("non_embedding_params", "--size", help="Size column: non_embedding_params, total_params or trainable_params."),
    bootstrap: int = typer.Option(200, "--bootstrap", min=0, max=100_000, help="Refits for the crossover's interval."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="Where the runs are (default: the spec's)."),
) -> None:  # fmt: skip
    """For each method: the smallest model whose metric beats MODEL/METHOD with support from
    its seeds (a paired or Welch t interval above 0), and the size at which the method's
    fitted power law crosses the reference, with its interval and identifiability flags."""
    from scalelab.analysis.beats import as_rows, crossover_text, smallest_that_beats
    from scalelab.grid.api import load_experiment_tables
    from scalelab.metrics import default_metric, metric_def

    model, slash, method = beats.rpartition("/")
    if not slash or not model or not method:
        raise ScalelabError(f"--beats {beats!r}: write MODEL/METHOD, e.g. gpt-d6/pretrain")
    table, _ = load_experiment_tables(spec, output_dir)
    if table.empty:
        raise ScalelabError("no results yet (run `scalelab run` first)")
    done = table[table["status"] == "done"]
    methods = sorted(done["method"].unique())
    metric = metric or default_metric(methods, "val", available=set(done.columns))
    defn = metric_def(metric or "", methods) if metric else None
    if defn is None or defn.higher_is_better is None:
        raise ScalelabError(f"--metric {metric!r}: not a quality metric the methods declare")
    answers = smallest_that_beats(done, (model, method), metric, defn.higher_is_better, size,
                                  bootstrap)  # fmt: skip
    if as_json:
        out = [{"method": a.method, "statement": a.statement, "crossover": crossover_text(a),
                "crossover_flags": list(a.crossover_flags)} for a in answers]  # fmt: skip
        typer.echo(json.dumps({"reference": beats, "metric": metric, "answers": out,
                               "cells": as_rows(answers)}, indent=2, default=float))  # fmt: skip
        return
    better = "higher" if defn.higher_is_better else "lower"
    typer.echo(f"{metric} ({better} is better) against {beats}: gain = improvement, 95% CI")
    for a in answers:
        typer.echo(f"\n{a.method}:")
        for c in a.cells:
            ci = "" if math.isnan(c.lo) else f" [{c.lo:+.4g}, {c.hi:+.4g}]"
            mark = "  beats" if c.beats else ""
            typer.echo(f"  {c.model:<24} {size} {c.size:>12,.0f}  {metric} {c.mean:.4f}  "
                       f"gain {c.gain:+.4g}{ci}  ({c.test}){mark}")  # fmt: skip
        typer.echo(f"  answer: {a.statement}")
        typer.echo(f"  {crossover_text(a)}")
        for flag in a.crossover_flags:
            typer.echo(f"  flag: {flag}")


def register(app: typer.Typer) -> None:
    """Add `smallest` to the main app."""
    app.command("smallest")(smallest)
