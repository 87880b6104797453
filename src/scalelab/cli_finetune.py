"""`scalelab compare` (multi-seed statistics, paired tests) and `scalelab sweep` (heatmap)."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path

import typer

from scalelab.errors import ScalelabError


class CompareFormat(str, Enum):
    table = "table"
    json = "json"


def _done_runs(spec: Path, output_dir: Path | None, metric: str, needed: list[str]):
    """The finished runs of an experiment; a clear error if a column is missing."""
    from scalelab.grid.api import load_experiment_tables

    table, _ = load_experiment_tables(spec, output_dir)
    if table.empty or "status" not in table.columns:
        raise ScalelabError(f"no results yet for {spec} (run `scalelab run {spec}` first)")
    table = table[table["status"] == "done"].reset_index(drop=True)
    if table.empty:
        raise ScalelabError(f"no finished runs for {spec}")
    for col in [metric, *needed]:
        if col not in table.columns:
            have = ", ".join(
                c
                for c in table.columns
                if c.startswith(("params.", "task.")) or c in ("model", "method")
            )
            raise ScalelabError(
                f"no column {col!r} in the results of {spec} (config columns: {have})"
            )
    return table


def _records(df) -> list[dict]:
    """Rows as dicts with NaN as None, so the JSON output is strict JSON."""
    return df.astype(object).where(df.notna(), None).to_dict(orient="records")


def _fmt(v: float, digits: int = 4) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def compare(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    by: str = typer.Option(
        "method", "--by", help="Column to compare: method, model, params.lr, ..."
    ),
    metric: str = typer.Option("test_accuracy", "--metric", help="Metric to compare."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the spec's output_dir."
    ),
    format: CompareFormat = typer.Option(CompareFormat.table, "--format", help="table or json."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level."),
) -> None:
    """Mean +- std and 95% CI over seeds per configuration, and paired t-tests between the
    values of --by (runs paired when they share a seed and all other independent axes)."""
    from scalelab.analysis.seeds import paired_tests, seed_summary

    table = _done_runs(spec, output_dir, metric, [by])
    summary = seed_summary(table, metric, by=by)
    paired = paired_tests(table, by, metric, alpha=alpha)
    if format is CompareFormat.json:
        out = {
            "metric": metric,
            "by": by,
            "alpha": alpha,
            "summary": _records(summary),
            "paired": _records(paired),
        }
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        return
    typer.echo(f"{metric}: mean +- std over seeds, 95% CI (Student t)")
    shown = summary.copy()
    shown[metric] = [
        f"{_fmt(m)} +- {_fmt(s)}" for m, s in zip(shown["mean"], shown["std"], strict=True)
    ]
    shown["95% CI"] = [
        f"[{_fmt(lo)}, {_fmt(hi)}]"
        for lo, hi in zip(shown["ci_low"], shown["ci_high"], strict=True)
    ]
    cols = [
        c
        for c in shown.columns
        if c not in ("mean", "std", "ci_low", "ci_high", metric, "95% CI", "n", "seeds")
    ]
    typer.echo(shown[[*cols, "n", metric, "95% CI", "seeds"]].to_string(index=False))
    typer.echo("")
    typer.echo(f"paired t-tests by {by} ({metric}, a - b, alpha {alpha}):")
    if paired.empty:
        typer.echo(f"  only one value of {by}: nothing to compare")
        return
    for _, r in paired.iterrows():
        cell = ", ".join(f"{c}={r[c]}" for c in paired.columns if c not in _TEST_COLS)
        verdict = (
            ("significant" if r["significant"] else "not significant")
            if r["n"] > 1
            else "needs >= 2 paired seeds"
        )
        typer.echo(
            f"  {r['a']} - {r['b']}{' [' + cell + ']' if cell else ''}: "
            f"diff {_fmt(r['mean_diff'])} [{_fmt(r['diff_ci_low'])}, {_fmt(r['diff_ci_high'])}], "
            f"n={r['n']}, t={_fmt(r['t'], 3)}, p={_fmt(r['p_value'])} -> {verdict}"
        )


_TEST_COLS = {
    "a",
    "b",
    "n",
    "mean_diff",
    "diff_ci_low",
    "diff_ci_high",
    "t",
    "p_value",
    "significant",
}


def sweep(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    x: str = typer.Option("params.lr", "--x", help="Column on the x axis."),
    y: str = typer.Option("params.weight_decay", "--y", help="Column on the y axis."),
    metric: str = typer.Option("val_accuracy", "--metric", help="Selection metric (validation)."),
    test_metric: str = typer.Option(
        "test_accuracy", "--test-metric", help="Reported for the pick."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the heatmap PNG and the grid CSV."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the spec's output_dir."
    ),
) -> None:
    """Heatmap of a validation metric over an x-by-y grid (mean over seeds); picks the best
    cell on VALIDATION and prints that cell's test metric."""
    from scalelab.analysis.seeds import mean_ci, varying_columns
    from scalelab.report.heatmap import plot_heatmap

    if x == y:
        raise ScalelabError("--x and --y must be different columns")
    table = _done_runs(spec, output_dir, metric, [x, y, test_metric])
    others = [c for c in varying_columns(table) if c not in (x, y)]
    if others:
        raise ScalelabError(
            f"runs also vary in {', '.join(others)}: a sweep needs a spec whose "
            f"grid is only {x} x {y} (x seeds)"
        )
    rows = []
    for (xv, yv), g in table.groupby([x, y], sort=True):
        val, test = mean_ci(g[metric]), mean_ci(g[test_metric])
        rows.append(
            {
                x: xv,
                y: yv,
                "n": val["n"],
                metric: val["mean"],
                f"{metric}_std": val["std"],
                test_metric: test["mean"],
                f"{test_metric}_std": test["std"],
            }
        )
    import pandas as pd

    grid = pd.DataFrame(rows)
    best = grid.loc[grid[metric].idxmax()]  # ties: the first in sorted (x, y) order
    out.mkdir(parents=True, exist_ok=True)
    grid.to_csv(out / "sweep.csv", index=False)
    png = plot_heatmap(
        grid,
        x,
        y,
        metric,
        out / f"sweep_{metric}.png",
        title=f"{metric} (mean over seeds)",
        best=(best[x], best[y]),
    )
    typer.echo(grid.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    n = int(best["n"])
    spread = f" +- {_fmt(best[f'{test_metric}_std'])}" if n > 1 else ""
    typer.echo(
        f"best on {metric}: {x}={best[x]:g}, {y}={best[y]:g} -> {metric} {_fmt(best[metric])}; "
        f"{test_metric} {_fmt(best[test_metric])}{spread} (n={n} seed{'s' * (n > 1)})"
    )
    typer.echo(f"wrote {png}")


def register(app: typer.Typer) -> None:
    """Add `compare` and `sweep` to the scalelab CLI."""
    app.command("compare")(compare)
    app.command("sweep")(sweep)
