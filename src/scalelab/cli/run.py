"""`scalelab run`, `results`, `models` and `methods`: running an experiment and reading it back."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

# Stable metric names shared by every method, in display order.
METRICS = [
    "non_embedding_params",
    "total_params",
    "trainable_params",
    "tokens",
    "train_loss",
    "val_loss",
    "val_ppl",
    "test_loss",
    "test_ppl",
    "bits_per_byte",
    "val_accuracy",
    "test_accuracy",
    "test_macro_f1",
    "tokens_per_s",
    "examples_per_s",
    "peak_mem_mb",
    "wall_s",
]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


OutputDir = typer.Option(None, "--output-dir", help="Override the spec's output_dir.")


def run(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the runs and their state; train nothing."
    ),
    force: bool = typer.Option(False, "--force", help="Rerun runs that are already done."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Parallel local processes [default: the spec's runtime.workers].",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
    output_dir: Path | None = OutputDir,
) -> None:
    """Run every run of an experiment that is not done yet."""
    from scalelab.grid.api import label, open_experiment, run_experiment

    exp = open_experiment(spec, output_dir)
    if dry_run:
        statuses = exp.statuses()
        for r in exp.runs:
            typer.echo(f"{statuses[r.run_id]:>9}  {label(r)}  task={r.task.dataset}")
        n_done = sum(s == "done" for s in statuses.values())
        typer.echo(f"{len(exp.runs)} runs: {n_done} done, {len(exp.runs) - n_done} to run")
        return
    workers = workers or exp.spec.runtime.workers
    counts = run_experiment(exp, workers=workers, force=force, show_progress=not quiet)
    typer.echo(
        f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} already done"
        f" -> {exp.spec.store_path}"
    )
    if counts["failed"]:
        raise typer.Exit(1)


def results(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
    output_dir: Path | None = OutputDir,
) -> None:
    """Print one row per run: config fields and metrics as columns."""
    from scalelab.grid.api import load_experiment_tables

    table, _ = load_experiment_tables(spec, output_dir)
    if table.empty:
        typer.echo("no results yet (run `scalelab run` first)", err=True)
        return
    if format is Format.csv:
        sys.stdout.write(table.to_csv(index=False))
    elif format is Format.json:
        sys.stdout.write(table.to_json(orient="records", indent=2) + "\n")
    else:
        typer.echo(summary_table(table).to_string(index=False))


def summary_table(table):
    """The columns worth reading at a glance: what varies across runs, then the metrics."""
    config = [
        c
        for c in table.columns
        if c in ("model", "method", "seed") or c.startswith(("task.", "params."))
    ]
    varying = [
        c for c in config if c in ("model", "method", "seed") or table[c].astype(str).nunique() > 1
    ]
    metrics = [m for m in METRICS if m in table.columns and table[m].notna().any()]
    out = table[["run_id", "status", *varying, *metrics]].copy()
    out["run_id"] = out["run_id"].str[:8]
    for m in metrics:
        if m.endswith(("params", "tokens")) and out[m].notna().all():
            out[m] = out[m].astype("int64")
        elif m.endswith(("_per_s", "_mb", "wall_s")):
            out[m] = out[m].round(1)  # speeds and sizes: more digits would be noise
    return out.round(4)


def models_cmd() -> None:
    """List the model ladder (with exact non-embedding parameter counts) and named models."""
    from scalelab.builtins import load_builtins
    from scalelab.models.ladder import NAMED_SIZES, depth_rung
    from scalelab.models.registry import PRETRAINED

    typer.echo(f"{'name':<14}{'layers':>7}{'width':>7}{'heads':>7}{'non-emb params':>16}")
    rungs = [(f"gpt-d{d}", depth_rung(d)) for d in range(1, 13)] + list(NAMED_SIZES.items())
    for name, r in rungs:
        typer.echo(
            f"{name:<14}{r.n_layer:>7}{r.n_embd:>7}{r.n_head:>7}{r.non_embedding_params:>16,}"
        )
    load_builtins()
    for name, e in PRETRAINED.items():
        typer.echo(f"{name:<14} {e.arch}, {e.params_m:.1f}M params: {e.description}")


def methods_cmd() -> None:
    """List the training methods and the task kinds they apply to."""
    from scalelab.builtins import load_builtins
    from scalelab.methods.base import METHODS

    load_builtins()
    for name, m in METHODS.items():
        typer.echo(f"{name:<12} [{', '.join(m.task_kinds)}] {m.description}")


def register(app: typer.Typer) -> None:
    """Add `run`, `results`, `models` and `methods` to the main app."""
    app.command("run")(run)
    app.command("results")(results)
    app.command("models")(models_cmd)
    app.command("methods")(methods_cmd)
