"""Analysis commands over any method's results: `fit`, `report`, `compare`, `sweep`."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from scalelab.errors import ScalelabError, shown

LAW_CHOICES = ("power", "chinchilla", "loss-to-loss", "loss-to-acc", "task-accuracy")
PARAM_ORDER = (
    "E", "A", "alpha", "B", "beta", "K", "kappa", "E_x", "E_y",
    "floor", "ceiling", "k", "L0", "epsilon", "gamma",
)  # fmt: skip


def _jsonable(obj: Any) -> Any:
    """JSON has no NaN/inf: NaN -> null, inf -> "inf"/"-inf"; numpy scalars -> floats."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _g(v: Any, spec: str = ".4g") -> str:
    """Format a number that `_jsonable` may have turned into None (NaN) or "inf"."""
    return format(v, spec) if isinstance(v, (int, float)) else ("n/a" if v is None else str(v))


def _input_file(path: Path, what: str) -> Path:
    """`path`, if it names a regular file. Raises ScalelabError naming `what` and the path
    for anything else: a FIFO would block the read forever, and a NUL byte or an over-long
    name would raise from the OS."""
    import stat

    from scalelab.config import check_path_text, stat_or_none

    try:
        info = stat_or_none(check_path_text(str(path)))
    except ValueError as err:
        raise ScalelabError(f"{what} {shown(str(path))}: {err}") from None
    if info is None:
        raise ScalelabError(f"{what} {shown(str(path))} not found")
    if not stat.S_ISREG(info.st_mode):
        raise ScalelabError(f"{what} {shown(str(path))} is not a regular file")
    return path


def _output_folder(path: Path, what: str = "--out") -> Path:
    """`path`, if files can be written there (the checks of a spec's output_dir: no NUL,
    no over-long name, not in a system folder, not a file, writable). Raises ScalelabError
    naming `what`."""
    from scalelab.grid.spec import check_output_dir

    try:
        check_output_dir(str(path))
    except ValueError as err:
        raise ScalelabError(f"{what}: {err} (got {shown(str(path))})") from None
    return path


def _format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text rendering of fit objects: one block per group."""
    lines = []
    for r in rows:
        head = f"[{r['group']}] " if r["group"] is not None else ""
        lines.append(f"{head}{r['law']}: n={r['n_points']}  R²={_g(r['r2'], '.4f')}")
        for k in PARAM_ORDER:
            if k in r:
                ci = r["ci"].get(k)
                ci_s = f"   95% CI [{ci[0]:.5g}, {ci[1]:.5g}]" if ci else ""
                lines.append(f"  {k:<7} = {r[k]:<12.6g}{ci_s}")
        if "compute_optimal" in r:
            co = r["compute_optimal"]
            lines.append(
                f"  N_opt ∝ C^{co['N_opt_exponent']:.4f}, D_opt ∝ C^{co['D_opt_exponent']:.4f}"
            )
        if r.get("steps"):
            s1, s2 = r["steps"]["step1"], r["steps"]["step2"]
            lines.append(
                f"  steps: {s1['law']} task loss from size R²={_g(s1['r2'], '.4f')}; "
                f"{s2['law']} R²={_g(s2['r2'], '.4f')}"
            )
        if r.get("holdout"):
            lines.extend(_holdout_lines(r["holdout"]))
        if r.get("smallest"):
            s = r["smallest"]
            ci = ""
            if s["lo"] is not None:
                ci = f" (95% CI [{_g(s['lo'])}, {_g(s['hi'])}])"
            what = s.get("at") or "smallest x"
            lines.append(f"  {what} reaching {s['target']:.4g}: {s['n']:.4g}{ci}")
        lines.extend(f"  flag: {f['message']}" for f in r.get("flags", []))
        lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(line.rstrip() for line in lines)


def _holdout_lines(h: dict[str, Any]) -> list[str]:
    """Holdout summary: relative errors for losses; absolute accuracy errors for task laws."""
    if "pred" not in h:
        line = (
            f"  holdout (largest {h['k']}): mean |rel err| {_g(h['mean_abs_rel_error'])}, "
            f"max {_g(h['max_abs_rel_error'])}"
        )
        if h.get("mean_abs_error") is not None:
            line += f", mean |err| {_g(h['mean_abs_error'])}"
        return [line]
    lines = [
        f"  holdout ({h['k']} most capable): mean |acc err| {_g(h['mean_abs_error'], '.4f')}, "
        f"max {_g(h['max_abs_error'], '.4f')}, "
        + (
            f"{h['n_below_chance']} below chance {h['chance']:.4g}"
            if h.get("chance") is not None
            else "chance not given (floor fitted)"
        )  # fmt: skip
        + (
            f"; step 2 alone (observed task loss) {_g(h['step2_mean_abs_error'], '.4f')}"
            if "step2_mean_abs_error" in h
            else ""
        )
    ]
    labels = h.get("labels") or [f"#{i + 1}" for i in range(h["k"])]
    for i, name in enumerate(labels):
        ci = f"  95% CI [{_g(h['lo'][i], '.4f')}, {_g(h['hi'][i], '.4f')}]" if "lo" in h else ""
        lines.append(
            f"    {name}: acc {_g(h['acc'][i], '.4f')}, predicted {_g(h['pred'][i], '.4f')}{ci}"
        )
    return lines


def fit_command(
    csv: Path = typer.Argument(..., help="Results table (CSV, one row per run)."),
    law: str = typer.Option(
        ..., "--law", help="power | chinchilla | loss-to-loss | loss-to-acc | task-accuracy"
    ),
    x: str = typer.Option(
        ..., "--x", help="x column (N, D, 'compute' = 6ND, L_x, or the task loss for loss-to-acc)."
    ),
    y: str = typer.Option(
        ..., "--y", help="y column (a loss, L_y for loss-to-loss, an accuracy for task laws)."
    ),
    x2: str | None = typer.Option(
        None, "--x2", help="Chinchilla, task-accuracy: the D (tokens) column."
    ),
    group: str | None = typer.Option(None, "--group", help="Fit separately per value of COL."),
    n_boot: int = typer.Option(0, "--bootstrap", help="Bootstrap refits for 95% CIs."),
    holdout: int = typer.Option(0, "--holdout", help="Refit without the K largest; report error."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    no_offset: bool = typer.Option(False, "--no-offset", help="Power law without E."),
    x2_is_compute: bool = typer.Option(False, "--x2-is-compute", help="--x2 is C; D = C/(6N)."),
    n_col: str | None = typer.Option(None, "--n-col", help="Loss-to-loss: N column for E fits."),
    d_col: str | None = typer.Option(None, "--d-col", help="Loss-to-loss: D column for E fits."),
    e_x: float | None = typer.Option(None, "--e-x", help="Loss-to-loss: E_x given explicitly."),
    e_y: float | None = typer.Option(None, "--e-y", help="Loss-to-loss: E_y given explicitly."),
    drop_top_loss: int = typer.Option(0, "--drop-top-loss", help="Drop the K highest-y rows."),
    target: float | None = typer.Option(None, "--target", help="Smallest x reaching this y."),
    target_row: str | None = typer.Option(None, "--target-row", help="Target = y of this run."),
    higher_is_better: bool = typer.Option(False, "--higher-is-better", help="y is an accuracy."),
    loss_col: str | None = typer.Option(
        None, "--loss-col", help="task-accuracy: the task loss column (step 1's y, step 2's x)."
    ),
    acc_form: str = typer.Option(
        "sigmoid", "--acc-form", help="Task laws: accuracy from loss, sigmoid | exponential."
    ),
    chance: float | None = typer.Option(None, "--chance", help="Task laws: chance accuracy."),
    choices_col: str | None = typer.Option(
        None, "--choices-col", help="Task laws: column of answer choices K (chance = 1/K)."
    ),
    ceiling: float | None = typer.Option(
        None, "--ceiling", help="Task laws (sigmoid): fix the ceiling, e.g. 1 [default: fitted]."
    ),
    tokens_per_param: float | None = typer.Option(
        None, "--tokens-per-param", help="task-accuracy --target: read N at D = R*N."
    ),
    target_tokens: float | None = typer.Option(
        None, "--target-tokens", help="task-accuracy --target: read N at these D tokens."
    ),
    max_ci_factor: float = typer.Option(
        10.0, "--max-ci-factor", help="Flag a parameter whose 95% CI spans more than this factor."
    ),
    max_holdout_error: float | None = typer.Option(
        None,
        "--max-holdout-error",
        help="Flag a holdout error above this [default: 0.05 relative for losses, 0.03 absolute "
        "for accuracies].",
    ),
) -> None:
    """Fit a scaling law to a results CSV and print parameters with bootstrap intervals and
    identifiability flags."""
    if law not in LAW_CHOICES:
        raise ScalelabError(f"--law must be one of {', '.join(LAW_CHOICES)} (got {shown(law)})")
    if fmt not in ("table", "json"):
        raise ScalelabError(f"--format must be table or json (got {shown(fmt)})")
    if min(n_boot, holdout, drop_top_loss) < 0:
        raise ScalelabError("--bootstrap, --holdout and --drop-top-loss must be >= 0")
    if not (max_ci_factor > 1 and (max_holdout_error is None or max_holdout_error > 0)):
        raise ScalelabError("--max-ci-factor must be > 1 and --max-holdout-error > 0")
    _input_file(csv, "CSV file")
    from scalelab.analysis.api import FitSpec, fit_table  # heavy: after the checks
    from scalelab.analysis.identify import Thresholds
    from scalelab.analysis.table import read_csv

    limits = {}
    if max_holdout_error is not None:
        limits = {"holdout_rel": max_holdout_error, "holdout_abs": max_holdout_error}

    spec = FitSpec(
        law=law,
        x=x,
        y=y,
        x2=x2,
        group=group,
        bootstrap=n_boot,
        holdout=holdout,
        seed=seed,
        offset=not no_offset,
        x2_is_compute=x2_is_compute,
        n_col=n_col,
        d_col=d_col,
        e_x=e_x,
        e_y=e_y,
        drop_top_loss=drop_top_loss,
        target=target,
        target_row=target_row,
        higher_is_better=higher_is_better,
        loss_col=loss_col,
        acc_form=acc_form,
        chance=chance,
        choices_col=choices_col,
        ceiling=ceiling,
        tokens_per_param=tokens_per_param,
        target_tokens=target_tokens,
        thresholds=Thresholds(ci_factor=max_ci_factor, **limits),
    )
    report = fit_table(read_csv(csv), spec)
    rows = [_jsonable(g.as_dict()) for g in report.groups]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(_format_table(rows))
    for s in report.skipped:
        typer.echo(f"skipped: {s}", err=True)


def _load_csvs(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Split CSVs into runs tables (concatenated, with `source`) and curves tables."""
    from scalelab.analysis.table import read_csv

    runs, curves = [], []
    for p in paths:
        df = read_csv(_input_file(p, "CSV file"))
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
) -> None:
    """Write DIR with PNG plots and one self-contained report.html."""
    if (experiment is None) == (not csv):
        raise ScalelabError("give either an experiment file or --csv FILE (not both, not neither)")
    if out is not None:
        _output_folder(out)
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
        _input_file(experiment, "experiment file")
        from scalelab.grid.api import open_experiment

        exp = open_experiment(experiment, output_dir)
        runs, curves = exp.tables()
        out = out or Path(exp.spec.output_dir) / f"{exp.spec.name}-report"
        title = f"scalelab report: {experiment.stem}"
    else:
        runs, curves = _load_csvs(csv)
        out = out or Path("report")
        title = f"scalelab report: {', '.join(p.name for p in csv)}"
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
    )
    path = build_report(runs, curves, out, spec)
    typer.echo(f"wrote {path}")


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
                f"no column {shown(col)} in the results of {spec} (config columns: {have})"
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
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Metric to compare [default: the first test metric the runs' methods declare].",
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Override the spec's output_dir."
    ),
    format: CompareFormat = typer.Option(CompareFormat.table, "--format", help="table or json."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level."),
) -> None:
    """Mean +- std and 95% CI over seeds per configuration, and paired t-tests between the
    values of --by (runs paired when they share a seed and all other independent axes)."""
    table = _done_runs(spec, output_dir, metric or by, [by])  # bad input fails before imports
    from scalelab.analysis.seeds import paired_tests, seed_summary
    from scalelab.metrics import default_metric, metric_def

    methods = table["method"] if "method" in table else []
    if metric is None:
        filled = [c for c in table.columns if table[c].notna().any()]
        metric = default_metric(methods, "test", available=filled)
        if metric is None:
            raise ScalelabError(f"the methods of {spec} declare no metric it has: give --metric")
    defn = metric_def(metric, methods)
    better = defn.higher_is_better if defn is not None else None
    summary = seed_summary(table, metric, by=by)
    paired = paired_tests(table, by, metric, alpha=alpha)
    if format is CompareFormat.json:
        out = {
            "metric": metric,
            "higher_is_better": better,
            "by": by,
            "alpha": alpha,
            "summary": _records(summary),
            "paired": _records(paired),
        }
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        return
    direction = f" ({defn.direction})" if defn is not None and defn.direction else ""
    typer.echo(f"{metric}{direction}: mean +- std over seeds, 95% CI (Student t)")
    display = summary.copy()
    display[metric] = [
        f"{_fmt(m)} +- {_fmt(s)}" for m, s in zip(display["mean"], display["std"], strict=True)
    ]
    display["95% CI"] = [
        f"[{_fmt(lo)}, {_fmt(hi)}]"
        for lo, hi in zip(display["ci_low"], display["ci_high"], strict=True)
    ]
    cols = [
        c
        for c in display.columns
        if c not in ("mean", "std", "ci_low", "ci_high", metric, "95% CI", "n", "seeds", "flag")
    ]
    shown = [*cols, "n", metric, "95% CI", "seeds"]
    if "flag" in display and display["flag"].astype(bool).any():  # e.g. "1 value: std ..."
        shown.append("flag")
    typer.echo(display[shown].to_string(index=False))
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
    _output_folder(out)
    table = _done_runs(
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
    """Add `fit`, `report`, `compare` and `sweep` to the main app."""
    app.command("fit")(fit_command)
    app.command("report")(report_command)
    app.command("compare")(compare)
    app.command("sweep")(sweep)
