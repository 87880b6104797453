"""`scalelab compare` (methods over seeds) and `scalelab sweep` (a two-parameter grid)."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path

import pandas as pd
import typer

from scalelab.cli.common import output_folder, stored_tables
from scalelab.errors import ScalelabError, shown


class CompareFormat(str, Enum):
    table = "table"
    json = "json"


def _done_runs(spec: Path, output_dir: Path | None, metric: str, needed: list[str]):
    """(finished runs, every planned run) of an experiment; a clear error if a column is
    missing."""
    from scalelab.analysis.table import name_list
    from scalelab.grid.api import open_experiment

    exp = open_experiment(spec, output_dir)
    table, _ = stored_tables(exp, spec)
    if "status" not in table.columns:
        raise ScalelabError(f"no results yet for {spec} (run `scalelab run {spec}` first)")
    table = table[table["status"] == "done"].reset_index(drop=True)
    if table.empty:
        raise ScalelabError(f"no finished runs for {spec}")
    for col in [metric, *needed]:
        if col not in table.columns:
            have = name_list(
                [
                    c
                    for c in table.columns
                    if c.startswith(("params.", "task.")) or c in ("model", "method")
                ]
            )
            raise ScalelabError(
                f"no column {shown(col)} in the results of {spec} (config columns: {have})"
            )
    return table, exp.planned()


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
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Metric to compare [default: the first test metric the runs' methods declare, "
        "with the other bounded test metrics of the same direction: accuracy and macro-F1].",
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the spec's output_dir."
    ),
    format: CompareFormat = typer.Option(CompareFormat.table, "--format", help="table or json."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level."),
) -> None:
    """Mean +- std and 95% CI over seeds per configuration, and paired t-tests between the
    values of --by (runs paired when they share a seed and all other independent axes)."""
    table, planned = _done_runs(spec, output_dir, metric or by, [by])  # before heavy imports

    methods = table["method"] if "method" in table else []
    names = [metric] if metric is not None else default_metrics(table, spec)

    def blocks(runs: pd.DataFrame, plan: pd.DataFrame, present_only: bool) -> list[tuple]:
        """(metric, its definition, seed summary, paired tests) per metric (`present_only`:
        those with a value in `runs`; a stage need not report every stage's metrics)."""
        from scalelab.analysis.seeds import paired_tests, seed_summary
        from scalelab.metrics import metric_def

        out = []
        for name in names:
            if present_only and not pd.to_numeric(runs[name], errors="coerce").notna().any():
                continue
            defn = metric_def(name, methods)
            bounds = defn.bounds if defn is not None else None
            out.append((name, defn, seed_summary(runs, name, by=by, bounds=bounds, planned=plan),
                        paired_tests(runs, by, name, alpha=alpha)))  # fmt: skip
        return out

    stages = _stages(table, by)
    if format is CompareFormat.table and stages:
        for i, (stage, runs) in enumerate(stages):
            typer.echo(f"{'' if i == 0 else chr(10)}== stage {stage} ({_count(len(runs))}) ==")
            plan = planned[planned["stage"] == stage] if "stage" in planned else planned
            for name, defn, summary, paired in blocks(runs, plan, present_only=True):
                typer.echo("")
                _print_summary(name, defn, summary)
                _print_paired(name, defn, paired, by, alpha, runs)
        return
    whole = blocks(table, planned, present_only=False)
    if format is CompareFormat.json:
        out = [_json_block(name, defn, summary, paired) for name, defn, summary, paired in whole]
        # The first metric's block at the top level, as before; every block under "metrics".
        doc = {**out[0], "by": by, "alpha": alpha, "metrics": out}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    for i, (name, defn, summary, paired) in enumerate(whole):
        if i:
            typer.echo("")
        _print_summary(name, defn, summary)
        _print_paired(name, defn, paired, by, alpha, table)


def _stages(table: pd.DataFrame, by: str) -> list[tuple[str, pd.DataFrame]]:
    """A staged experiment's finished runs stage by stage (spec order), each without the
    config columns no run of that stage sets: a table per stage reads as the stage does
    (train sizes; k and draws; augmentation ratios) instead of one wide table of NaN.
    Empty when the runs span one stage or `--by stage` compares the stages themselves."""
    if by == "stage" or "stage" not in table or table["stage"].nunique() < 2:
        return []
    out = []
    for stage, runs in table.groupby("stage", sort=False):
        empty = [c for c in runs.columns
                 if c.startswith(("task.", "params.")) and runs[c].isna().all()]  # fmt: skip
        out.append((str(stage), runs.drop(columns=empty).reset_index(drop=True)))
    return out


def _count(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def default_metrics(table: pd.DataFrame, spec: Path) -> list[str]:
    """The first declared test metric with values, then every other bounded test metric of
    the same direction (classification: accuracy, then macro-F1, whose average weighs every
    class alike)."""
    from scalelab.metrics import default_metric, metric_def, metrics_for, split_of

    methods = table["method"] if "method" in table else []
    filled = [c for c in table.columns if table[c].notna().any()]
    first = default_metric(methods, "test", available=filled)
    if first is None:
        raise ScalelabError(f"the methods of {spec} declare no metric it has: give --metric")
    head = metric_def(first, methods)
    if head is None or head.bounds is None:
        return [first]
    more = [
        d.name
        for d in metrics_for(methods, skip_unknown=True)
        if d.name != first
        and d.name in filled
        and split_of(d.name) == "test"
        and d.bounds is not None
        and d.higher_is_better == head.higher_is_better
    ]
    return [first, *more]


def _json_block(name: str, defn, summary: pd.DataFrame, paired: pd.DataFrame) -> dict:
    return {
        "metric": name,
        "higher_is_better": defn.higher_is_better if defn is not None else None,
        "bounds": list(defn.bounds) if defn is not None and defn.bounds else None,
        "summary": _records(summary),
        "paired": _records(paired),
    }


def _print_summary(name: str, defn, summary: pd.DataFrame) -> None:
    """The per-configuration table; a line per cell that misses seeds or whose interval was
    cut to the metric's bounds."""
    direction = f" ({defn.direction})" if defn is not None and defn.direction else ""
    method = "Student t"
    if defn is not None and defn.bounds is not None:
        lo, hi = defn.bounds
        method += f", cut to [{lo:g}, {hi:g}], the metric's range"
    typer.echo(f"{name}{direction}: mean +- std over seeds, 95% CI ({method})")
    display = summary.copy()
    display[name] = [
        f"{_fmt(m)} +- {_fmt(s)}" for m, s in zip(display["mean"], display["std"], strict=True)
    ]
    display["95% CI"] = [
        f"[{_fmt(lo)}, {_fmt(hi)}]"
        for lo, hi in zip(display["ci_low"], display["ci_high"], strict=True)
    ]
    stats_cols = {"mean", "std", "ci_low", "ci_high", name, "95% CI", "n", "seeds", "flag"}
    stats_cols |= {"ci_cut", "n_planned", "seed_note"}
    cols = [c for c in display.columns if c not in stats_cols]
    display["n"] = [
        f"{n} of {p}" if n < p else str(n)
        for n, p in zip(display["n"], display["n_planned"], strict=True)
    ]
    shown_cols = [*cols, "n", name, "95% CI", "seeds"]
    if "flag" in display and display["flag"].astype(bool).any():  # e.g. "1 value: std ..."
        shown_cols.append("flag")
    typer.echo(display[shown_cols].to_string(index=False))
    for _, r in display.iterrows():
        where = " ".join(str(r[c]) for c in cols) or "all runs"
        if r["seed_note"]:
            typer.echo(
                f"  {where}: {r['seed_note']} have a value (the others failed, did not run or do not report it)"
            )
        if r["ci_cut"]:
            typer.echo(f"  {where}: the t interval's {r['ci_cut']}")


def _print_paired(
    name: str, defn, paired: pd.DataFrame, by: str, alpha: float, runs: pd.DataFrame
) -> None:
    better = defn.higher_is_better if defn is not None else None
    typer.echo("")
    typer.echo(f"paired t-tests by {by} ({name}, a - b, alpha {alpha}):")
    if paired.empty:
        if runs[by].nunique() < 2:
            typer.echo(f"  only one value of {by}: nothing to compare")
        else:
            typer.echo(f"  no two values of {by} share a seed and every other setting: "
                       "nothing to pair (compare one stage or setting at a time)")  # fmt: skip
        return
    for _, r in paired.iterrows():
        cell = ", ".join(f"{c}={r[c]}" for c in paired.columns if c not in _TEST_COLS)
        verdict = (
            ("significant" if r["significant"] else "not significant")
            if r["n"] > 1
            else "needs >= 2 paired seeds"
        )
        if r["n"] > 1 and r["significant"] and better is not None:
            verdict += f": {r['a'] if (r['mean_diff'] > 0) == better else r['b']} is better"
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


def _sweep_metrics(
    table: pd.DataFrame,
    spec: Path,
    metric: str | None,
    test_metric: str | None,
    higher_is_better: bool | None,
) -> tuple[str, str, bool]:
    """Fill sweep's defaults from the declarations of the table's methods: the first val_
    metric, its test_ twin (else the first test metric), the declared direction."""
    from scalelab.metrics import default_metric, metric_def, split_of

    methods = table["method"] if "method" in table else []
    filled = [c for c in table.columns if table[c].notna().any()]
    metric = metric or default_metric(methods, "val", available=filled)
    if metric is None:
        raise ScalelabError(f"the methods of {spec} declare no metric it has: give --metric")
    if test_metric is None:
        twin = f"test_{metric.split('_', 1)[1]}" if split_of(metric) == "val" else None
        test_metric = twin if twin in filled else default_metric(methods, "test", available=filled)
        if test_metric is None:
            raise ScalelabError(f"no test metric for {metric} in {spec}: give --test-metric")
    if higher_is_better is None:
        defn = metric_def(metric, methods)
        higher_is_better = defn.higher_is_better if defn is not None else None
        if higher_is_better is None:
            raise ScalelabError(
                f"no direction declared for {metric}: add --higher-is-better or --lower-is-better"
            )
    return metric, test_metric, higher_is_better


def sweep(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    x: str = typer.Option("params.lr", "--x", help="Column on the x axis."),
    y: str = typer.Option("params.weight_decay", "--y", help="Column on the y axis."),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Selection metric, on validation [default: the first declared val_ metric].",
    ),
    test_metric: str | None = typer.Option(
        None,
        "--test-metric",
        help="Reported for the pick [default: the test_ twin of --metric, else the first "
        "declared test metric].",
    ),
    higher_is_better: bool | None = typer.Option(
        None,
        "--higher-is-better/--lower-is-better",
        help="Direction of --metric [default: as its method declares].",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the heatmap PNG and the grid CSV."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the spec's output_dir."
    ),
) -> None:
    """Heatmap of a validation metric over an x-by-y grid (mean over seeds); picks the best
    cell on VALIDATION, by the metric's declared direction, and prints that cell's test
    metric."""
    if x == y:
        raise ScalelabError("--x and --y must be different columns")
    output_folder(out)
    table, _ = _done_runs(
        spec, output_dir, metric or x, [x, y, *([test_metric] if test_metric else [])]
    )
    from scalelab.analysis.seeds import mean_ci, varying_columns  # heavy: after the checks
    from scalelab.report.heatmap import plot_heatmap

    metric, test_metric, higher_is_better = _sweep_metrics(
        table, spec, metric, test_metric, higher_is_better
    )
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
    # ties: the first in sorted (x, y) order
    best = grid.loc[grid[metric].idxmax() if higher_is_better else grid[metric].idxmin()]
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
    typer.echo(
        f"{metric} ({'higher' if higher_is_better else 'lower'} is better), mean over seeds:"
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
    """Add `compare` and `sweep` to the main app."""
    app.command("compare")(compare)
    app.command("sweep")(sweep)
