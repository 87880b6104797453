"""`scalelab report`: one HTML page for an experiment (or results CSVs), with its figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from scalelab.cli.common import input_file, output_folder, stored_tables
from scalelab.errors import ScalelabError, shown


def _load_csvs(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Split CSVs into runs tables (concatenated, with `source`) and curves tables."""
    from scalelab.analysis.table import read_csv

    runs, curves = [], []
    for p in paths:
        df = read_csv(input_file(p, "CSV file"))
        if {"run_id", "step"} <= set(df.columns):
            curves.append(df)
        else:
            runs.append(df.assign(source=Path(p).stem) if len(paths) > 1 else df)
    if not runs:
        raise ScalelabError("no runs table among the --csv files (all look like learning curves)")
    return pd.concat(runs, ignore_index=True), pd.concat(
        curves, ignore_index=True
    ) if curves else None


def report_command(
    experiment: Path | None = typer.Argument(None, help="Experiment spec (EXP.yaml)."),
    csv: list[Path] = typer.Option([], "--csv", help="Runs (or learning-curve) CSV; repeatable."),
    x: str | None = typer.Option(None, "--x", help="x column (default non_embedding_params)."),
    y: str | None = typer.Option(None, "--y", help="y column (default val_loss, else test_loss)."),
    group: str | None = typer.Option(None, "--group", help="Colour/fit per value of COL."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder [default: OUTPUT_DIR/NAME-report for an experiment]."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the experiment's output_dir."
    ),
    n_boot: int = typer.Option(200, "--bootstrap", help="Bootstrap refits for the bands."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    l2l: list[str] = typer.Option([], "--loss-to-loss", help="'LX:LY' pair to plot; repeatable."),
    task_acc: list[str] = typer.Option(
        [], "--task-accuracy", help="'LOSS:ACC' task loss and accuracy to plot; repeatable."
    ),
    chance: float | None = typer.Option(
        None, "--chance", help="Chance accuracy of the --task-accuracy tasks (their floor)."
    ),
    beats: str | None = typer.Option(
        None,
        "--beats",
        help="Lead with the smallest model that beats MODEL/METHOD (or "
        "MODEL/LABEL); default: the spec's report.beats.",
    ),
    margin: float | None = typer.Option(
        None,
        "--margin",
        min=0.0,
        help="With --beats: count models within this of the "
        "reference, in the metric's units (default: report.margin, else 0).",
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="The metric --beats compares (default: report.metric, else "
        "the methods' first validation quality metric).",
    ),
    reaches: float | None = typer.Option(
        None,
        "--reaches",
        help="Lead with the smallest model that reaches this value of --metric, e.g. "
        "--metric acc@piqa --reaches 0.6 (default: the spec's report.reaches).",
    ),
    best_over: list[str] = typer.Option(
        [],
        "--best-over",
        help="Per model, the best run over this swept axis, e.g. params.lr (repeatable), "
        "chosen on validation: the scaling plot draws that envelope beside each single "
        "value (default: the spec's report.best_over).",
    ),
) -> None:
    """Write one self-contained report.html (and its PNGs) that adapts to what the runs
    hold: a set-up block, then per stage classification results, a sweep heat map, loss
    vs size with fits, learning curves. Bad input writes nothing."""
    if (experiment is None) == (not csv):
        raise ScalelabError("give either an experiment file or --csv FILE (not both, not neither)")
    if out is not None:
        output_folder(out)
    pairs = []
    for item in l2l:
        if item.count(":") != 1:
            raise ScalelabError(f"--loss-to-loss expects 'LX:LY' (got {shown(item)})")
        pairs.append(tuple(item.split(":")))
    acc_pairs = []
    for item in task_acc:
        if item.count(":") != 1:
            raise ScalelabError(f"--task-accuracy expects 'LOSS:ACC' (got {shown(item)})")
        acc_pairs.append(tuple(item.split(":")))
    if chance is not None and not 0 <= chance < 1:
        raise ScalelabError(f"--chance must be in [0, 1) (got {chance:g})")
    if experiment is not None:
        input_file(experiment, "experiment file")
        from scalelab.grid.api import open_experiment

        exp = open_experiment(experiment, output_dir)
        runs, curves = stored_tables(exp, experiment)
        where = {"runs_dir": exp.runs_dir, "planned": exp.planned()}
        required = beats is not None
        reach_required = reaches is not None
        reaches = exp.spec.report.reaches if reaches is None else reaches
        chance = exp.spec.report.chance if chance is None else chance
        axes_required = bool(best_over)
        best_over = best_over or exp.spec.report.best_over
        pairs = pairs or [tuple(p.split(":")) for p in exp.spec.report.loss_to_loss]
        beats = beats or exp.spec.report.beats
        metric = metric or exp.spec.report.metric
        margin = exp.spec.report.margin if margin is None else margin
        out = out or Path(exp.spec.output_dir) / f"{exp.spec.name}-report"
        title = f"scalelab report: {exp.spec.name}"
    else:
        runs, curves = _load_csvs(csv)
        where, required, axes_required, reach_required = {}, True, True, True
        out = out or Path("report")
        title = f"scalelab report: {', '.join(p.name for p in csv)}"
        asked = [f for f, v in (("--beats", beats), ("--reaches", reaches)) if v is not None]
        if asked and "method" not in runs:
            raise ScalelabError(
                f"{' and '.join(asked)}: the CSV has no 'method' column, so it has no methods' "
                "cells to compare (a runs table from `scalelab results` has one)"
            )
    from scalelab.analysis.table import require_columns

    require_columns(runs, [c for pair in pairs for c in pair], "--loss-to-loss")
    from scalelab.report.build import ReportSpec, build_report  # heavy: after the checks

    spec = ReportSpec(
        x=x,
        y=y,
        group=group,
        bootstrap=n_boot,
        seed=seed,
        loss_to_loss=pairs,
        title=title,
        task_accuracy=acc_pairs,
        chance=chance,
        beats=beats,
        metric=metric,
        margin=margin or 0.0,
        beats_required=required,
        reaches=reaches,
        reaches_required=reach_required,
        best_over=tuple(best_over),
        best_over_required=axes_required,
    )
    path = build_report(runs, curves, out, spec, **where)
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add `report` to the main app."""
    app.command("report")(report_command)
