"""`scalelab smallest EXP.yaml --beats MODEL/METHOD`: the smallest model, per method, that
beats a reference cell of the grid (analysis/beats.py); `--reaches VALUE`: the smallest
model that reaches a named value of the metric, an accuracy say (analysis/reaches.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from scalelab.cli.common import input_file, stored_tables
from scalelab.errors import ScalelabError


def smallest(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    beats: str | None = typer.Option(None, "--beats", help="The reference cell, MODEL/METHOD or MODEL/LABEL (e.g. gpt-d6/pretrain). Default: the spec's report.beats."),
    reaches: float | None = typer.Option(None, "--reaches", help="Instead of a reference cell, a value of the metric to reach, e.g. --metric acc@piqa --reaches 0.6. Default: the spec's report.reaches."),
    loss_col: str | None = typer.Option(None, "--loss-col", help="--reaches: the task-loss column of the two-step prediction (default: task_loss@T for acc@T where the results have it)."),
    chance: float | None = typer.Option(None, "--chance", min=0.0, max=1.0, help="--reaches: the accuracy floor of the two-step prediction (default: the spec's report.chance, else fitted)."),
    metric: str | None = typer.Option(None, "--metric", help="Default: the spec's report.metric, else the methods' first validation quality metric."),
    size: str = typer.Option("non_embedding_params", "--size", help="Size column: non_embedding_params, total_params or trainable_params."),
    margin: float | None = typer.Option(None, "--margin", min=0.0, help="Count models no worse than the reference by more than this, in the metric's units (0.01 = 1 point of accuracy): a non-inferiority test. Default: the spec's report.margin, else 0."),
    bootstrap: int = typer.Option(200, "--bootstrap", min=0, max=100_000, help="Refits for the crossover's interval."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="Where the runs are (default: the spec's)."),
    best_over: list[str] = typer.Option([], "--best-over", help="Per model, only the best setting over this swept axis counts, e.g. params.lr (repeatable), chosen on the validation twin of the metric. Default: the spec's report.best_over."),
) -> None:  # fmt: skip
    """For each method (or labelled method entry): the smallest model whose metric beats
    MODEL/METHOD (--beats) or reaches a named value (--reaches) with support from its seeds,
    and the size its fitted law predicts, with its interval and identifiability flags. Both
    flags (or both report.beats and report.reaches in the spec) answer both questions."""
    from scalelab.grid.api import open_experiment

    input_file(spec, "experiment file")
    exp = open_experiment(spec, output_dir)
    if reaches is None and beats is None:
        beats, reaches = exp.spec.report.beats, exp.spec.report.reaches
    if beats is None and reaches is None:
        raise ScalelabError(
            "name the bar: --beats MODEL/METHOD or --reaches VALUE (or report.beats / "
            "report.reaches in the spec)"
        )
    for flag, value, needs, have in (("--margin", margin, "--beats", beats),
                                     ("--chance", chance, "--reaches", reaches),
                                     ("--loss-col", loss_col, "--reaches", reaches)):  # fmt: skip
        if value is not None and have is None:
            raise ScalelabError(f"{flag} applies to {needs} (the question asked has none)")
    table, _ = stored_tables(exp, spec)
    metric = metric or exp.spec.report.metric
    env = None
    if axes := best_over or exp.spec.report.best_over:
        from scalelab.analysis.envelope import answer_envelope

        table, env = answer_envelope(table, axes, metric)
    docs = {}
    if env is not None and not as_json:
        from scalelab.analysis.envelope import winners_text

        typer.echo("\n".join([*winners_text(env), ""]))
    if reaches is not None:
        chance = exp.spec.report.chance if chance is None else chance
        docs["reaches"] = _reaching(table, reaches, metric, size, bootstrap, loss_col, chance,
                                    as_json)  # fmt: skip
    if beats is not None:
        if reaches is not None and not as_json:
            typer.echo("")
        margin = exp.spec.report.margin if margin is None else margin
        docs["beats"] = _beating(table, beats, metric, size, bootstrap, margin, as_json)
    if as_json:
        from scalelab.cli.common import jsonable

        doc = docs["beats"] if list(docs) == ["beats"] else docs
        doc = docs["reaches"] if list(docs) == ["reaches"] else doc
        if env is not None:
            from scalelab.analysis.envelope import envelope_json

            doc = {**doc, "best_over": envelope_json(env)}
        typer.echo(json.dumps(jsonable(doc), indent=2))


def _beating(table, beats, metric, size, bootstrap, margin, as_json) -> dict | None:
    """`analysis.beats.answer_for`'s answer: printed, or as a JSON document."""
    from scalelab.analysis.beats import answer_for, as_rows, crossover_text

    found = answer_for(table, beats, metric, size, bootstrap, margin)
    metric, higher, answers = found.metric, found.higher_is_better, found.methods
    law = None
    if "distill" in set(table["method"]) and not higher:  # a loss: the law applies
        from scalelab.analysis.distill_grid import law_answer

        law = law_answer(table, metric, found.reference_mean, bootstrap)
    if as_json:
        out = [{"method": a.method, "statement": a.statement, "crossover": crossover_text(a),
                "crossover_flags": list(a.crossover_flags)} for a in answers]  # fmt: skip
        doc = {"reference": beats, "reference_mean": found.reference_mean, "margin": margin,
               "metric": metric, "answers": out, "cells": as_rows(answers)}  # fmt: skip
        if law is not None:
            doc["distillation_law"] = _law_json(law)
        return doc
    better = "higher" if higher else "lower"
    within = f", margin {margin:g}" if margin else ""
    typer.echo(f"{metric} ({better} is better) against {beats} (mean {found.reference_mean:.4f}, "
               f"{found.reference_seeds} seed{'s' if found.reference_seeds != 1 else ''}{within}): "
               "gain = improvement, 95% CI")  # fmt: skip
    width = max([len(c.model) for a in answers for c in a.cells] or [0])
    for a in answers:
        typer.echo(f"\n{a.method}:")
        for c in a.cells:
            ci = "" if math.isnan(c.lo) else f" [{c.lo:+.4g}, {c.hi:+.4g}]"
            mark = ("  within" if margin else "  beats") if c.beats else ""
            typer.echo(f"  {c.model:<{width}}  {size} {c.size:>12,.0f}  {metric} {c.mean:.4f}  "
                       f"gain {c.gain:+.4g}{ci}  ({c.test}){mark}")  # fmt: skip
        typer.echo(f"  answer: {a.statement}")
        typer.echo(f"  {crossover_text(a)}")
        for flag in a.crossover_flags:
            typer.echo(f"  flag: {flag}")
    if law is not None:
        _law_text(law)
    return None


def _reaching(table, target, metric, size, bootstrap, loss_col, chance, as_json) -> dict | None:
    """`analysis.reaches.answer_reaching`'s answer: printed, or as a JSON document."""
    from scalelab.analysis.beats import as_rows
    from scalelab.analysis.reaches import answer_reaching, prediction_text

    found = answer_reaching(table, target, metric, size, bootstrap, loss_col=loss_col,
                            chance=chance)  # fmt: skip
    if as_json:
        out = [{"method": a.method, "statement": a.statement, "prediction": prediction_text(a),
                "smallest_predicted": a.crossover.as_dict() if a.crossover else None,
                "flags": list(a.crossover_flags), "notes": list(a.notes)}
               for a in found.methods]  # fmt: skip
        rows = [{**r, "reaches": r.pop("beats"), "diff": r.pop("gain")}
                for r in as_rows(found.methods)]  # fmt: skip
        return {"metric": found.metric, "target": found.target, "loss_col": found.loss_col,
                "chance": found.chance, "answers": out, "cells": rows}  # fmt: skip
    better = "higher" if found.higher_is_better else "lower"
    typer.echo(f"{found.metric} ({better} is better) reaching {target:g}: diff = mean - target "
               "in the better direction, 95% CI")  # fmt: skip
    width = max([len(c.model) for a in found.methods for c in a.cells] or [0])
    for a in found.methods:
        typer.echo(f"\n{a.method}:")
        for c in a.cells:
            ci = "" if math.isnan(c.lo) else f" [{c.lo:+.4g}, {c.hi:+.4g}]"
            typer.echo(f"  {c.model:<{width}}  {size} {c.size:>12,.0f}  {found.metric} "
                       f"{c.mean:.4f}  diff {c.gain:+.4g}{ci}  ({c.test})"
                       f"{'  reaches' if c.beats else ''}")  # fmt: skip
        typer.echo(f"  answer: {a.statement}")
        typer.echo(f"  {prediction_text(a)}")
        for flag in a.crossover_flags:
            typer.echo(f"  flag: {flag}")
        for note in a.notes:
            if not note.startswith("no "):
                typer.echo(f"  note: {note}")
    return None


def _law_json(law) -> dict:
    from scalelab.cli.distill import jsonable

    fit = jsonable(law.report.as_dict()) if law.report is not None else None
    return {"fit": fit, "not_fitted": law.why or None, "notes": list(law.notes)}


def _law_text(law) -> None:
    """The distillation law's answers (Busbridge et al. 2025) when the grid allows a fit."""
    from scalelab.cli.distill import format_report, jsonable

    typer.echo("\nthe distillation law, fitted to this grid's runs:")
    if law.report is None:
        typer.echo(f"  not fitted: {law.why}")
    else:
        typer.echo("  " + format_report(jsonable(law.report.as_dict())).replace("\n", "\n  "))
    for note in law.notes:
        typer.echo(f"  note: {note}")


def register(app: typer.Typer) -> None:
    """Add `smallest` to the main app."""
    app.command("smallest")(smallest)
