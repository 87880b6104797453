"""`scalelab fit` and `scalelab report`: registered onto the main typer app by `cli.py`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from scalelab.errors import ScalelabError

LAW_CHOICES = ("power", "chinchilla", "loss-to-loss")
PARAM_ORDER = ("E", "A", "alpha", "B", "beta", "K", "kappa", "E_x", "E_y")


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
                lines.append(f"  {k:<6} = {r[k]:<12.6g}{ci_s}")
        if "compute_optimal" in r:
            co = r["compute_optimal"]
            lines.append(
                f"  N_opt ∝ C^{co['N_opt_exponent']:.4f}, D_opt ∝ C^{co['D_opt_exponent']:.4f}"
            )
        if r.get("holdout"):
            h = r["holdout"]
            lines.append(
                f"  holdout (largest {h['k']}): mean |rel err| {_g(h['mean_abs_rel_error'])}, "
                f"max {_g(h['max_abs_rel_error'])}"
            )
        if r.get("smallest"):
            s = r["smallest"]
            ci = ""
            if s["lo"] is not None:
                ci = f" (95% CI [{_g(s['lo'])}, {_g(s['hi'])}])"
            lines.append(f"  smallest x reaching {s['target']:.4g}: {s['n']:.4g}{ci}")
        lines.extend(f"  note: {n}" for n in r["notes"])
    return "\n".join(lines)


def fit_command(
    csv: Path = typer.Argument(..., help="Results table (CSV, one row per run)."),
    law: str = typer.Option(..., "--law", help="power | chinchilla | loss-to-loss"),
    x: str = typer.Option(..., "--x", help="x column (N, D, 'compute' = 6ND, or L_x)."),
    y: str = typer.Option(..., "--y", help="y column (a loss, or L_y for loss-to-loss)."),
    x2: str | None = typer.Option(None, "--x2", help="Chinchilla: the D (tokens) column."),
    group: str | None = typer.Option(None, "--group", help="Fit separately per value of COL."),
    n_boot: int = typer.Option(0, "--bootstrap", help="Bootstrap refits for 95% CIs."),
    holdout: int = typer.Option(0, "--holdout", help="Refit without the K largest; report error."),
    seed: int = typer.Option(0, "--seed"),
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
) -> None:
    """Fit a scaling law to a results CSV and print parameters with bootstrap intervals."""
    from scalelab.analysis.api import FitSpec, fit_table
    from scalelab.analysis.table import read_csv

    if law not in LAW_CHOICES:
        raise ScalelabError(f"--law must be one of {', '.join(LAW_CHOICES)} (got {law!r})")
    if fmt not in ("table", "json"):
        raise ScalelabError(f"--format must be table or json (got {fmt!r})")
    if min(n_boot, holdout, drop_top_loss) < 0:
        raise ScalelabError("--bootstrap, --holdout and --drop-top-loss must be >= 0")
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
        df = read_csv(p)
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
    seed: int = typer.Option(0, "--seed"),
    l2l: list[str] = typer.Option([], "--loss-to-loss", help="'LX:LY' pair to plot; repeatable."),
) -> None:
    """Write DIR with PNG plots and one self-contained report.html."""
    from scalelab.report.build import ReportSpec, build_report

    if (experiment is None) == (not csv):
        raise ScalelabError("give either an experiment file or --csv FILE (not both, not neither)")
    pairs = []
    for item in l2l:
        if item.count(":") != 1:
            raise ScalelabError(f"--loss-to-loss expects 'LX:LY' (got {item!r})")
        pairs.append(tuple(item.split(":")))
    if experiment is not None:
        if not experiment.is_file():
            raise ScalelabError(f"experiment file {str(experiment)!r} not found")
        from scalelab.grid.api import open_experiment

        exp = open_experiment(experiment, output_dir)
        runs, curves = exp.tables()
        out = out or Path(exp.spec.output_dir) / f"{exp.spec.name}-report"
        title = f"scalelab report: {experiment.stem}"
    else:
        runs, curves = _load_csvs(csv)
        out = out or Path("report")
        title = f"scalelab report: {', '.join(p.name for p in csv)}"
    spec = ReportSpec(
        x=x, y=y, group=group, bootstrap=n_boot, seed=seed, loss_to_loss=pairs, title=title
    )
    path = build_report(runs, curves, out, spec)
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add `fit` and `report` to the main app."""
    app.command("fit")(fit_command)
    app.command("report")(report_command)
