"""Build a report folder: fit -> plots -> report.html.

Fitting happens here (via `analysis.api`); `plots.py` only draws what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.api import FitSpec, GroupFit, fit_table
from scalelab.analysis.fitting import predict
from scalelab.analysis.uncertainty import prediction_band
from scalelab.errors import ScalelabError
from scalelab.metrics import default_metric, metric_def, split_of
from scalelab.report import plots
from scalelab.report.html import write_html

Y_DEFAULTS = ("val_loss", "test_loss")
GROUP_CANDIDATES = ("method", "task.dataset")


@dataclass(frozen=True)
class ReportSpec:
    """Columns to use (None = defaults for a scalelab runs table) and bootstrap settings."""

    x: str | None = None
    y: str | None = None
    group: str | None = None
    bootstrap: int = 200
    seed: int = 0
    loss_to_loss: list[tuple[str, str]] = field(default_factory=list)
    title: str = "scalelab report"
    # (task loss, accuracy) column pairs: accuracy from task loss with a chance floor.
    task_accuracy: list[tuple[str, str]] = field(default_factory=list)
    chance: float | None = None


def default_y(runs: pd.DataFrame) -> str:
    """The metric to plot against size: the first loss (lower-is-better quality metric) the
    runs' methods declare, validation before test, that has values; else val_loss, else
    test_loss (a table without a method column, or with undeclared methods)."""
    filled = [c for c in runs.columns if runs[c].notna().any()]
    methods = runs["method"] if "method" in runs else []
    declared = default_metric(methods, available=filled, lower_is_better=True)
    return declared or next((c for c in Y_DEFAULTS if c in filled), Y_DEFAULTS[0])


def _as_error_rate(runs: pd.DataFrame, y: str, notes: list[str]) -> tuple[pd.DataFrame, str]:
    """A declared higher-is-better y in [0, 1] (an accuracy) becomes the column `1 - y`: power
    laws describe quantities that fall with scale. Other columns are returned unchanged."""
    defn = metric_def(y, runs["method"] if "method" in runs else None)
    values = pd.to_numeric(runs[y], errors="coerce")
    if defn is None or not defn.higher_is_better or not values.dropna().between(0, 1).all():
        return runs, y
    col = f"1 - {y}"
    notes.append(f"{y} is higher-is-better: plotted and fitted as the error rate {col}")
    return runs.assign(**{col: 1 - values}), col


def default_columns(
    runs: pd.DataFrame, spec: ReportSpec
) -> tuple[str, str, str | None, pd.DataFrame]:
    """(x, y, group, runs): N, the declared loss (`default_y`), grouped by method/dataset if
    they vary."""
    x = spec.x or "non_embedding_params"
    y = spec.y or default_y(runs)
    table.require_columns(runs, [x, y], "the report's scaling plot")
    group = spec.group
    if group is None:
        varying = [c for c in GROUP_CANDIDATES if c in runs and runs[c].nunique(dropna=True) > 1]
        if len(varying) == 1:
            group = varying[0]
        elif len(varying) > 1:
            runs = runs.copy()
            group = " / ".join(varying)
            runs[group] = runs[varying].astype(str).agg(" / ".join, axis=1)
    elif group not in runs:
        table.require_columns(runs, [group], "--group")
    return x, y, group, runs


def _fits(runs: pd.DataFrame, spec: FitSpec, notes: list[str]) -> list[GroupFit]:
    """Fit, turning user-level problems (too few points, ...) into report notes."""
    try:
        report = fit_table(runs, spec)
    except ScalelabError as e:
        notes.append(f"{spec.law} fit of {spec.y} vs {spec.x}: {e}")
        return []
    notes.extend(report.skipped)
    for g in report.groups:
        notes.extend(f"{spec.y} vs {spec.x} [{g.group}]: {n}" for n in g.notes + g.fit.notes)
    return report.groups


def build_report(
    runs: pd.DataFrame, curves: pd.DataFrame | None, out_dir: Path, spec: ReportSpec | None = None
) -> Path:
    """Write PNGs and a self-contained report.html into `out_dir`; returns the html path."""
    spec = spec or ReportSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y, group, runs = default_columns(runs, spec)
    notes: list[str] = []
    runs, y = _as_error_rate(runs, y, notes)
    images: list[tuple[str, Path]] = []
    rows = []

    fits = _fits(
        runs, FitSpec("power", x, y, group=group, bootstrap=spec.bootstrap, seed=spec.seed), notes
    )
    params, bands = {}, {}
    for g in fits:
        params[g.group] = g.fit.params
        if g.boot is not None and g.boot.param_dicts():
            xs = table.numeric(g.data, x)
            grid = np.geomspace(xs.min(), xs.max(), 200)
            bands[g.group] = (
                grid,
                *prediction_band(lambda p, grid=grid: predict("power", p, grid), g.boot),
            )
        rows.append({"title": f"{y} vs {x}", **g.as_dict()})
    images.append(
        (
            f"{y} vs {x} (power-law fit, 95% bootstrap band)",
            plots.plot_scaling(
                runs, x, y, out_dir / "scaling.png", group=group, params=params, bands=bands
            ),
        )
    )

    if curves is not None and len(curves):
        table.require_columns(curves, ["run_id", "step"], "learning curves")
        images.append(
            ("learning curves", plots.plot_learning_curves(curves, out_dir / "curves.png"))
        )

    # Default: the plotted validation loss against its test twin (val_loss -> test_loss).
    twin = (y, f"test_{y[4:]}") if split_of(y) == "val" else ("val_loss", "test_loss")
    usable = all(c in runs and runs[c].notna().sum() >= 3 for c in twin)
    pairs = spec.loss_to_loss or ([twin] if usable else [])
    for i, (lx, ly) in enumerate(pairs):
        l2l = _fits(runs, FitSpec("loss-to-loss", lx, ly, group=group), notes)
        rows.extend({"title": f"{ly} vs {lx}", **g.as_dict()} for g in l2l)
        png = plots.plot_loss_to_loss(
            runs,
            lx,
            ly,
            out_dir / f"loss_to_loss_{i}.png",
            group=group,
            params={g.group: g.fit.params for g in l2l},
        )
        images.append((f"loss-to-loss: {ly} vs {lx}", png))

    for i, (loss, acc) in enumerate(spec.task_accuracy):
        images.append(_task_accuracy(runs, loss, acc, group, spec, out_dir, i, rows, notes))

    return write_html(out_dir / "report.html", spec.title, images, rows, notes)


def _task_accuracy(
    runs: pd.DataFrame,
    loss: str,
    acc: str,
    group: str | None,
    spec: ReportSpec,
    out_dir: Path,
    i: int,
    rows: list,
    notes: list[str],
) -> tuple[str, Path]:
    """Fit accuracy from task loss (chance floor `spec.chance`), add its rows, plot it."""
    table.require_columns(runs, [loss, acc], "the report's task-accuracy plot")
    fit_spec = FitSpec(
        "loss-to-acc", loss, acc, group=group, chance=spec.chance,
        bootstrap=spec.bootstrap, seed=spec.seed,
    )  # fmt: skip
    fits = _fits(runs, fit_spec, notes)
    rows.extend({"title": f"{acc} vs {loss}", **g.as_dict()} for g in fits)
    png = plots.plot_task_accuracy(
        runs,
        loss,
        acc,
        out_dir / f"task_accuracy_{i}.png",
        group=group,
        params={g.group: g.fit.params for g in fits},
        chance=spec.chance,
    )
    return f"task accuracy: {acc} vs {loss} (chance-aware fit)", png
