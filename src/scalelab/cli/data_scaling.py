"""`scalelab data-scaling EXP.yaml [--metric M] [--min-gain G]`: a metric against the
number of labelled training examples per model (runs varying `train_size` or
`k_per_class`): the means over seeds and draws side by side across model sizes, each
curve's power law with its interval and flags, and its point of diminishing returns
(analysis/data_scaling.py)."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path

import typer

from scalelab.cli.common import input_file, jsonable, stored_tables


class Format(str, Enum):
    table = "table"
    json = "json"


def _num(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _human(v: float) -> str:
    from scalelab.report.style import human

    return "n/a" if not math.isfinite(v) else human(v)


def _grid_lines(result) -> list[str]:
    """The labels-vs-parameters table: one row per curve, one column per n."""
    grid = result.grid()
    ns = [c for c in grid.columns if isinstance(c, int)]
    names = [" ".join(p for p in (r.model, r.method, r.setting) if p) for r in grid.itertuples()]
    width = max([len(n) for n in names] + [5])
    lines = [f"{'curve':<{width}} {'N':>6} " + " ".join(f"{n:>7,d}" for n in ns)]
    for name, (_, r) in zip(names, grid.iterrows(), strict=True):
        cells = " ".join(f"{'' if r[n] != r[n] else format(r[n], '.4f'):>7}" for n in ns)
        lines.append(f"{name:<{width}} {_human(r['size']):>6} {cells}")
    return lines


def _curve_lines(curve, result) -> list[str]:
    """One curve: its points with intervals, its law, holdout, flags and n*."""
    lines = [f"\n{curve.name} (N {_human(curve.size)}):"]
    for p in curve.points.itertuples():
        ci = "" if not math.isfinite(p.ci_low) else f" [{p.ci_low:.4f}, {p.ci_high:.4f}]"
        draws = f" x {p.draws} draws" if p.draws > 1 else ""
        how = f"{p.seeds} seed{'s' * (p.seeds != 1)}{draws}"
        kind = ", k per class" if p.few_shot else ""
        runs = f"{p.runs} run{'s' * (p.runs != 1)}"
        lines.append(f"  n {p.n:>7,.0f}: {p.mean:.4f}{ci} ({runs}: {how}{kind})")
    if curve.fit is None:
        return [*lines, f"  no fit: {curve.why_not}"]
    d = curve.fit.as_dict()
    ci = d.get("ci", {})
    err = f"1 - {result.metric}" if result.higher_is_better else result.metric
    parts = [f"{k} {d[k]:.4g}" + (f" [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else "")
             for k in ("alpha", "E", "A")]  # fmt: skip
    lines.append(f"  law: {err} = A n^-alpha + E: {', '.join(parts)}; R² {d['r2']:.3f}, "
                 f"{d['n_points']} runs")  # fmt: skip
    if d["holdout"]:
        lines.append(f"  holdout: refitted without the largest n, mean |error| "
                     f"{d['holdout']['mean_abs_error']:.4f} on it")  # fmt: skip
    if curve.returns is not None:
        lines.append(f"  diminishing returns: {curve.returns.text()}; {result.metric} there "
                     f"{_num(curve.returns.metric_at)}")  # fmt: skip
    lines += [f"  flag: {f['message']}" for f in d["flags"]]
    lines += [f"  note: {n}" for n in d["notes"]]
    return lines


def data_scaling_command(
    spec: Path = typer.Argument(..., help="Experiment YAML file."),
    metric: str | None = typer.Option(None, "--metric", help="A quality metric column. Default: test_accuracy, else the methods' first test metric."),
    min_gain: float = typer.Option(0.01, "--min-gain", help="Diminishing returns: the smallest n where doubling the labelled examples gains less than this, in the metric's units (0.01 = 1 point of accuracy)."),
    n_boot: int = typer.Option(200, "--bootstrap", min=0, max=100_000, help="Bootstrap refits per curve (over seeds and draws)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Bootstrap seed."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="Where the runs are (default: the spec's)."),
) -> None:  # fmt: skip
    """Accuracy (or any quality metric) vs labelled training examples, per model: means
    with 95% intervals over seeds and draws, a power law of the error per curve with its
    bootstrap interval and identifiability flags, and the point of diminishing returns."""
    from scalelab.analysis.data_scaling import data_scaling, resolve_metric
    from scalelab.grid.api import open_experiment

    input_file(spec, "experiment file")
    exp = open_experiment(spec, output_dir)
    runs, _ = stored_tables(exp, spec)
    metric, higher, bounds = resolve_metric(runs, metric)
    result = data_scaling(runs, metric, higher_is_better=higher, bounds=bounds,
                          min_gain=min_gain, n_boot=n_boot, seed=seed)  # fmt: skip
    if fmt == Format.json:
        typer.echo(json.dumps(jsonable(result.as_dict()), indent=2, default=str))
        return
    better = "higher" if higher else "lower"
    typer.echo(f"{metric} ({better} is better) vs labelled training examples n: mean over "
               "seeds and draws, 95% t interval")  # fmt: skip
    lines = _grid_lines(result)
    for curve in result.curves:
        lines += _curve_lines(curve, result)
    lines += [f"\nnote: {n}" for n in result.notes]
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    """Add `data-scaling` to the main app."""
    app.command("data-scaling")(data_scaling_command)
