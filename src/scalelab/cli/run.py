"""`scalelab run`, `results`, `models` and `methods`: running an experiment and reading it back."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from scalelab.grid.spec import MAX_PARALLEL

# Metric columns of `results` come from the methods' declarations (scalelab.metrics): these
# kinds, in this order; "info" metrics (step counts, ...) only in --format csv/json.
SUMMARY_KINDS = ("size", "quality", "cost")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


OutputDir = typer.Option(None, "--output-dir", help="Override the spec's output_dir.")


def run(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the runs in execution order and their state; train nothing."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rerun every run from scratch, done and failed ones too."
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Run the failed runs again (from their last good checkpoint), then the runs "
        "they blocked. Without it a failed run stays failed. --force includes these.",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=MAX_PARALLEL,
        help="Parallel local processes [default: the spec's runtime.workers].",
    ),
    executor: str | None = typer.Option(
        None,
        "--executor",
        help="serial, processes or ray [default: the spec's runtime.executor, else serial "
        "for one worker and processes for more].",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
    output_dir: Path | None = OutputDir,
) -> None:
    """Run every run of an experiment that is not done or failed yet, dependencies first.

    Exits 1 when a run failed (now, or before and not retried) or was skipped because a
    dependency failed."""
    from scalelab.grid.api import open_experiment, run_experiment
    from scalelab.grid.schedule import Rerun

    exp = open_experiment(spec, output_dir, executor=executor)
    rerun = Rerun.of(force, retry_failed)
    if dry_run:
        _print_dry_run(exp, rerun)
        return
    kept = _kept_failed(exp, rerun)
    workers = workers or exp.spec.runtime.workers
    counts = run_experiment(
        exp, workers=workers, force=force, retry_failed=retry_failed, show_progress=not quiet
    )
    skipped = f", {counts['skipped']} skipped (failed dependency)" if counts["skipped"] else ""
    before = f", {len(kept)} failed before (kept; --retry-failed reruns)" if kept else ""
    typer.echo(
        f"{counts['done']} done, {counts['failed']} failed, {counts['already_done']} already "
        f"done{skipped}{before} -> {exp.spec.store_path}"
    )
    if counts["failed"] or counts["skipped"] or kept:
        raise typer.Exit(1)


def _print_dry_run(exp, rerun) -> None:
    """One line per run in execution order with its state, then a summary of what a `run`
    with the same flags would execute."""
    from scalelab.grid.api import labels
    from scalelab.grid.runner import ERROR_FILE
    from scalelab.grid.schedule import Rerun

    nodes = exp.nodes()
    names = labels(exp.runs, stage=False)  # a column of its own here
    for i, n in enumerate(nodes, 1):
        task = getattr(n.run.task, "dataset", n.run.task.kind)
        reason = n.reason
        if n.status == "failed" and not reason:
            reason = f"see {exp.runs_dir / n.run.run_id / ERROR_FILE}"
        why = f"  ({reason})" if reason else ""
        typer.echo(
            f"{i:>4}  {n.status:>9}  {n.run.stage:<10}  {names[n.run.run_id]}  task={task}"
            f"  deps={','.join(n.deps) or '-'}{why}"
        )
    by = {s: sum(n.status == s for n in nodes) for s in ("done", "failed", "blocked")}
    stuck = by["failed"] + by["blocked"]  # what stays as it is without --retry-failed
    to_run = len(nodes) - (0 if rerun is Rerun.ALL else by["done"])
    to_run -= stuck if rerun is Rerun.NONE else 0
    extra = ", ".join(
        f"{by[s]} {s}" + (" by a failed dependency" if s == "blocked" else "")
        for s in ("failed", "blocked")
        if by[s]
    )
    if stuck and rerun is Rerun.NONE:
        extra += "; --retry-failed reruns them"
    typer.echo(
        f"{len(nodes)} run{'s' * (len(nodes) != 1)}: {by['done']} done, {to_run} to run"
        + (f" ({extra})" if extra else "")
    )


def _kept_failed(exp, rerun) -> list[str]:
    """Print the stored failed runs this session leaves failed (with their errors, which
    name error.txt); their ids."""
    from scalelab.grid.api import labels
    from scalelab.grid.schedule import Rerun

    if rerun is not Rerun.NONE:
        return []
    stored = exp.store.statuses([r.run_id for r in exp.runs])
    failed = [r for r in exp.dag.order if stored.get(r.run_id) == "failed"]
    if not failed:
        return []
    errors = exp.store.table([r.run_id for r in failed]).set_index("run_id")["error"]
    names = labels(exp.runs)
    for run in failed:
        typer.echo(f"{'failed':>7}  {names[run.run_id]}  before: {errors[run.run_id]}")
    return [r.run_id for r in failed]


def results(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
    curves: bool = typer.Option(
        False,
        "--curves",
        help="The learning curves instead: one row per (run, step), the run's model, method "
        "and varying settings first; CSV and JSON carry every recorded column (validation "
        "metrics, the engine's lr, grad/weight norms, memory, throughput), the table the "
        "losses and validation metrics.",
    ),
    output_dir: Path | None = OutputDir,
) -> None:
    """Print one row per run: config fields and metrics as columns."""
    from scalelab.grid.api import load_experiment_tables

    table, curve_table = load_experiment_tables(spec, output_dir)
    if table.empty:
        typer.echo("no results yet (run `scalelab run` first)", err=True)
        return
    if curves:
        _print_curves(_named_curves(curve_table, table), format)
        return
    if format is not Format.table:  # the files other tools read: the law's columns too
        from scalelab.analysis.distill_grid import with_teacher_columns

        table = with_teacher_columns(table)
    if format is Format.csv:
        sys.stdout.write(table.to_csv(index=False))
    elif format is Format.json:
        sys.stdout.write(table.to_json(orient="records", indent=2) + "\n")
    else:
        from scalelab.analysis.table import shown_models

        # a run product by its run's model and stage, not by its id
        table = table.assign(model=shown_models(table))
        typer.echo(summary_table(table).to_string(index=False))


def _named_curves(curves, table):
    """The curves with each run's identity after run_id: stage, model, method, seed and the
    task/params fields that vary between runs (`identity_columns`), so an
    exported curve says which run it is without a join."""
    if curves.empty:
        return curves
    config = identity_columns(table, always=IDENTITY)
    ids = table[["run_id", *config]]
    named = curves.merge(ids, on="run_id", how="left")
    first = ["run_id", *config]
    return named[first + [c for c in named.columns if c not in first]]


def _print_curves(curves, format: Format) -> None:
    """The curves table (run_id, the run's identity, step, then its columns in order of
    first appearance) as CSV, JSON records (NaN -> null) with `--format json`, or with
    `--format table` the learning-curve columns as text (CSV and JSON carry every column)."""
    if format is Format.json:
        sys.stdout.write(curves.to_json(orient="records", indent=2) + "\n")
    elif format is Format.csv:
        sys.stdout.write(curves.to_csv(index=False))
    else:
        keep = [c for c in curves.columns
                if c in ("run_id", "stage", "model", "method", "variant", "seed", "step",
                         "tokens", "train_loss")
                or c.startswith(("task.", "params.", "val_"))]  # fmt: skip
        shown = curves[keep].copy()
        shown["run_id"] = shown["run_id"].str[:8]
        typer.echo(shown.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4g}"))


IDENTITY = ("stage", "model", "method", "variant", "seed")


def identity_columns(table, always=IDENTITY[1:]) -> list[str]:
    """The config columns that tell runs apart: those of `always` the table has, and every
    other identity, task and params column whose value differs between runs."""
    from scalelab.analysis.table import as_text

    config = [c for c in table.columns if c in IDENTITY or c.startswith(("task.", "params."))]
    return [c for c in config if c in always or as_text(table[c]).nunique() > 1]


def summary_table(table):
    """The columns worth reading at a glance: what varies across runs, then the metrics the
    runs' methods declare (SUMMARY_KINDS), as strings in their declared formats ("n/a" where
    a run lacks one). Metrics of methods no longer registered are left out."""
    from scalelab.metrics import format_value, metric_def, metrics_for

    varying = identity_columns(table)
    declared = metrics_for(table["method"] if "method" in table else [], skip_unknown=True)
    defs = [
        d
        for kind in SUMMARY_KINDS
        for d in declared
        if d.kind == kind and d.name in table.columns and table[d.name].notna().any()
    ]
    evaluated = [metric_def(c) for c in table.columns if "@" in c and table[c].notna().any()]
    defs += [d for d in evaluated if d is not None and d.is_quality]  # `acc@piqa`, ...
    out = table[["run_id", "status", *varying, *(d.name for d in defs)]].copy()
    out["run_id"] = out["run_id"].str[:8]
    for c in varying:  # settings another stage lacks are NaN, which made integers floats
        out[c] = [_setting(v) for v in out[c]]
    for d in defs:
        out[d.name] = [format_value(d, v) for v in out[d.name]]
    return out


def _setting(value):
    """A config value for display: "n/a" where a run has no such setting, whole floats as
    integers (`params.tokens 100000`, not `100000.0`); anything else as it is."""
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def models_cmd(
    path: str | None = typer.Option(
        None, "--path", metavar="NAME",
        help="Fetch registered model NAME (once) and print its local file (a GGUF) or folder.",
    ),
) -> None:  # fmt: skip
    """List the model ladder (with exact non-embedding parameter counts) and named models."""
    from scalelab.models.ladder import NAMED_SIZES, WIDTH_NAMES, depth_rung
    from scalelab.models.registry import PRETRAINED

    if path is not None:
        # What a GGUF server (llama.cpp) is started on: `--model $(scalelab models --path X)`.
        entry = PRETRAINED.get(path)
        folder = entry.locate()
        typer.echo(str(folder / entry.gguf_file) if entry.gguf_file else str(folder))
        return

    typer.echo(f"{'name':<14}{'layers':>7}{'width':>7}{'heads':>7}{'non-emb params':>16}")
    rungs = [(f"gpt-d{d}", depth_rung(d)) for d in range(1, 13)] + list(NAMED_SIZES.items())
    for name, r in rungs:
        typer.echo(
            f"{name:<14}{r.n_layer:>7}{r.n_embd:>7}{r.n_head:>7}{r.non_embedding_params:>16,}"
        )
    typer.echo(f"{'':<14} any depth at another width: {WIDTH_NAMES}, e.g. gpt-d2w128")
    for name, e in PRETRAINED.items():
        typer.echo(f"{name:<14} {e.arch}, {e.params_m:.1f}M params: {e.description}")


def methods_cmd(
    name: str | None = typer.Argument(None, help="One method: its params, types and defaults."),
) -> None:
    """List the training methods, the task kinds they apply to, their quality metrics
    (+ higher is better, - lower is better) and the products later runs can use; with a
    NAME, that method's params (the keys of its `params:` / method entry) and defaults."""
    from scalelab.methods.base import METHODS

    if name is not None:
        typer.echo(method_params_text(name, METHODS.get(name)))  # unknown: one line, exit 2
        return
    for name, m in METHODS.items():
        typer.echo(f"{name:<12} [{', '.join(m.task_kinds)}] {m.description}")
        kinds = [k for k in m.task_kinds if k not in m.variants]
        for label, d in [(", ".join(kinds), m), *m.variants.items()]:
            quality = [f"{x.name}{'+' if x.higher_is_better else '-'}" for x in d.metrics
                       if x.higher_is_better is not None]  # fmt: skip
            where = f"{label}: " if m.variants else ""
            typer.echo(f"{'':<12} {where}metrics: {' '.join(quality)}; products: "
                       f"{', '.join(d.products) or 'none'}")  # fmt: skip


def _type_text(annotation) -> str:
    """A param's type as a user writes its values: `'xent' | 'logconf'` for a Literal,
    `list[int] | None` for the rest."""
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(v) for v in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None)
    if text and not typing.get_args(annotation):
        return text
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def method_params_text(name: str, method) -> str:
    """`name: description`, then one line a param: `key  type  default` (required where it
    has none), then the params model's docstring (what each one means)."""
    import inspect

    from pydantic_core import PydanticUndefined

    fields = method.params.model_fields
    width = max([len(k) for k in fields] + [5])
    lines = [f"{name}: {method.description}", f"params ({len(fields)}; unknown keys are errors):"]
    for key, f in fields.items():
        kind = _type_text(f.annotation)
        default = (
            "required"
            if f.default is PydanticUndefined and f.default_factory is None
            else (f"default {f.default!r}" if f.default_factory is None else "default: computed")
        )
        lines.append(f"  {key:<{width}}  {kind:<30} {default}")
    doc = inspect.getdoc(method.params)
    return "\n".join(lines + (["", doc] if doc else []))


def register(app: typer.Typer) -> None:
    """Add `run`, `results`, `models` and `methods` to the main app."""
    app.command("run")(run)
    app.command("results")(results)
    app.command("models")(models_cmd)
    app.command("methods")(methods_cmd)
