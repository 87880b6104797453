"""`scalelab w2s EXP.yaml [--out DIR]`: a weak-to-strong experiment's accuracies (every model
and method), its median PGR per method with intervals, each method against the baseline,
the excluded pairs; with --out, the figures (scaling_behavior.png, error_distribution.png,
pgr_heatmap.png)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from scalelab.cli.common import input_file, jsonable, output_folder, stored_tables


def _pm(value: float, lo: float, hi: float) -> str:
    """ "+0.412 [+0.210, +0.633]", or "n/a (no pair left)" for NaN."""
    if value != value:
        return "n/a (no pair left)"
    ci = "" if lo != lo else f" [{lo:+.3f}, {hi:+.3f}]"
    return f"{value:+.3f}{ci}"


def _text(acc, summary) -> str:
    """The console tables: accuracies by model, medians, differences, exclusions."""
    cols = [c for c in acc.columns if c not in ("model", "size")]
    width = max([len(str(m)) for m in acc["model"]] + [5])
    lines = ["test accuracy (mean over seeds; students: mean over their weak supervisors)",
             f"{'model':<{width}} {'N':>10} " + " ".join(f"{c:>15}" for c in cols)]  # fmt: skip
    for _, r in acc.iterrows():
        vals = " ".join(f"{'' if r[c] != r[c] else format(r[c], '.4f'):>15}" for c in cols)
        lines.append(f"{r['model']:<{width}} {r['size']:>10,.0f} {vals}")
    lines += ["", "PGR per pair (seed means; (acc_w2s - acc_weak) / (acc_strong - acc_weak)):"]
    for r in summary.pairs.itertuples():
        why = "  excluded: the strong ceiling does not beat the weak one" if r.excluded else ""
        pgr = "n/a" if r.pgr != r.pgr else f"{r.pgr:+.3f}"
        lines.append(f"  {r.method:<12} {r.weak} -> {r.strong}: {pgr}  (w2s {r.acc_w2s:.4f}"
                     f", weak {r.acc_weak:.4f}, strong {r.acc_strong:.4f}){why}")  # fmt: skip
    lines += ["", f"median PGR per method (95% bootstrap over {summary.resampled}):"]
    for r in summary.medians.itertuples():
        lines.append(f"  {r.method:<12} {_pm(r.median_pgr, r.ci_low, r.ci_high)}"
                     f"  {r.pairs} pair(s), {r.excluded} excluded")  # fmt: skip
    for r in summary.differences.itertuples():
        lines.append(f"  {r.method} - {r.baseline}: {_pm(r.difference, r.ci_low, r.ci_high)}")
    lines += [f"excluded: {e}" for e in summary.excluded]
    return "\n".join(lines)


def w2s_command(
    experiment: Path = typer.Argument(..., help="Experiment spec (EXP.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Write the figures to this folder."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the experiment's output_dir."
    ),
    n_boot: int = typer.Option(1000, "--bootstrap", min=1, max=100_000, help="Bootstrap draws."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Bootstrap seed."),
    as_json: bool = typer.Option(False, "--json", help="The tables as JSON."),
) -> None:
    """Weak-to-strong: every model's test accuracy per role and method, median PGR per
    method with a bootstrap interval over seeds and test examples, and the figures."""
    input_file(experiment, "experiment file")
    if out is not None:
        output_folder(out)
    from scalelab.analysis.w2s import accuracy_table, summarize_pgr
    from scalelab.grid.api import open_experiment
    from scalelab.report.w2s import load_correct, write_figures

    exp = open_experiment(experiment, output_dir)
    runs, _ = stored_tables(exp, experiment)
    correct = load_correct(runs, exp.runs_dir)
    summary = summarize_pgr(runs, correct, n_boot=n_boot, seed=seed)
    acc = accuracy_table(runs, summary)
    if as_json:
        data = {"accuracy": acc.to_dict("records"), "medians": summary.medians.to_dict("records"),
                "differences": summary.differences.to_dict("records"),
                "pairs": summary.pairs.to_dict("records"), "excluded": summary.excluded,
                "resampled": summary.resampled}  # fmt: skip
        typer.echo(json.dumps(jsonable(data), indent=2))
    else:
        typer.echo(_text(acc, summary))
    if out is not None:
        for path in write_figures(summary, correct, out).values():
            typer.echo(f"wrote {path}", err=as_json)


def register(app: typer.Typer) -> None:
    """Add `w2s` to the main app."""
    app.command("w2s")(w2s_command)
