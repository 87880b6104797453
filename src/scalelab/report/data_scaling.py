"""The report's data-scaling section: a metric against labelled training examples, one
line per model coloured by size, with bands over seeds and draws, each curve's fitted
power law and its point of diminishing returns (analysis/data_scaling.py computes them;
this file only draws and lays out)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis.data_scaling import LABELS, DataScaling, data_scaling, resolve_metric
from scalelab.errors import ScalelabError
from scalelab.report import html, style


def plot_data_scaling(result: DataScaling, path: Path) -> Path:
    """`result.metric` vs labelled examples n (log x), one panel per method: per curve the
    means (filled circles; open squares where the runs drew k examples per class), a band
    of their 95% intervals over seeds and draws, the fitted law (dashed, over the measured
    n and one doubling past it) and n* (a star on the law) where it lies in that range."""
    methods = list(dict.fromkeys(c.method for c in result.curves))
    fig, axes = style.figure(max(style.FIGSIZE[0], 4.6 * len(methods)), 4.6, ncols=len(methods),
                             squeeze=False, sharey=True)  # fmt: skip
    colors = curve_colors(result.curves)
    every_n = [n for c in result.curves for n in c.points["n"]]
    for ax, method in zip(axes[0], methods, strict=True):
        for c in (c for c in result.curves if c.method == method):
            draw_curve(ax, c, colors[c.name], result.higher_is_better)
        style.log_axis(ax, "x", every_n)
        ax.set_xlabel("labelled training examples n")
        ax.set_title(method, fontsize=10)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(style.axis_label(result.metric, per="example"))
    return style.save(fig, path)


def curve_colors(curves) -> dict[str, Any]:
    """Colour per curve name: by model size (viridis, `style.size_colors`) when the curves
    span several models, so colour reads as size; distinct colours per curve when they are
    one model's (a staged spec's sizes / fewshot / augment would otherwise share one)."""
    models = list(dict.fromkeys(c.model for c in curves))  # size order
    if len(models) > 1:
        by_model = style.size_colors(models)
        return {c.name: by_model[c.model] for c in curves}
    return style.group_colors([c.name for c in curves])


def draw_curve(ax, curve, color, higher: bool) -> None:
    """One `Curve` on `ax`: its means (circles; open squares for k-per-class draws), their
    band, the fitted law (dashed, to one doubling past the data) and n* (a star) where it
    lies there; labelled by model, setting and size (the dashboard shares it)."""
    p = curve.points.sort_values("n")
    size = f"(N {style.human(curve.size)})" if math.isfinite(curve.size) else ""
    label = " ".join(s for s in (curve.model, curve.setting, size) if s)
    ax.plot(p["n"], p["mean"], "-", color=color, lw=1, alpha=0.6)
    few, rest = p[p["few_shot"]], p[~p["few_shot"]]
    # One legend entry a curve: the circles' where it has any, else the squares'.
    ax.plot(rest["n"], rest["mean"], "o", color=color, label=label if len(rest) else None)
    ax.plot(few["n"], few["mean"], "s", mfc="none", color=color,
            label=None if len(rest) else label)  # fmt: skip
    band = p[np.isfinite(p["ci_low"])]
    if len(band) > 1:
        ax.fill_between(band["n"], band["ci_low"], band["ci_high"], color=color, alpha=0.15, lw=0)
    if curve.fit is None:
        return
    lo, hi = float(p["n"].min()), 2.0 * float(p["n"].max())
    xs = np.geomspace(lo, hi, 100)
    ax.plot(xs, curve.predict(xs, higher), "--", color=color, lw=1.2)
    r = curve.returns
    if r is not None and lo <= r.n <= hi:
        ax.plot([r.n], [r.metric_at], "*", color=color, ms=12, mec="k", mew=0.6)


def _ci(v: float, lo: float, hi: float, fmt: str) -> str:
    if not math.isfinite(v):
        return "n/a"
    inner = f" [{format(lo, fmt)}, {format(hi, fmt)}]" if math.isfinite(lo) else ""
    return f"{format(v, fmt)}{inner}"


def _count(v: float) -> str:
    return f"{v:,.0f}" if math.isfinite(v) and v >= 1 else f"{v:.3g}"


def summary_rows(result: DataScaling) -> list[dict]:
    """Per curve: size, measured n, the metric at the largest n, alpha and the asymptote
    with 95% intervals, n* with its interval and where it lies."""
    rows = []
    for c in result.curves:
        top = c.points.iloc[-1]
        row = {"model": c.model, "method": " ".join(s for s in (c.method, c.setting) if s),
               "N": style.human(c.size) if math.isfinite(c.size) else "",
               "n measured": f"{_count(c.points['n'].min())}..{_count(top['n'])}",
               f"{result.metric} at largest n": f"{top['mean']:.4f}"}  # fmt: skip
        if c.fit is None:
            rows.append({**row, "alpha": "no fit", "n*": c.why_not})
            continue
        p, ci = c.fit.fit.params, (c.fit.boot.ci() if c.fit.boot else {})
        e_lo, e_hi = ci.get("E", (math.nan, math.nan))
        asym = (1 - p["E"], 1 - e_hi, 1 - e_lo) if result.higher_is_better else (p["E"], e_lo, e_hi)
        r = c.returns
        rows.append({**row, "alpha": _ci(p["alpha"], *ci.get("alpha", (math.nan,) * 2), ".3g"),
                     "asymptote": _ci(*asym, ".4f"),
                     "n*": _ci(r.n, r.lo, r.hi, ",.0f"),
                     "n* lies": f"{r.where}" + ("" if r.bounded else " (not bounded)"),
                     "flags": str(len(c.fit.flags))})  # fmt: skip
    return rows


def grid_rows(result: DataScaling) -> tuple[list[dict], list[str]]:
    """The labels-vs-parameters table (rows: curves by size; columns: n) as text rows."""
    grid = result.grid()
    ns = [c for c in grid.columns if isinstance(c, int)]
    rows = []
    for _, g in grid.iterrows():
        name = " ".join(s for s in (g["model"], g["method"], g["setting"]) if s)
        rows.append({"model": name, "N": style.human(g["size"]) if pd.notna(g["size"]) else "",
                     **{f"{n:,}": "" if pd.isna(g[n]) else f"{g[n]:.4f}" for n in ns}})  # fmt: skip
    return rows, ["model", "N", *(f"{n:,}" for n in ns)]


def data_scaling_section(
    runs: pd.DataFrame, out: Path, metric: str | None = None, bootstrap: int = 200,
    min_gain: float = 0.01,
) -> str:  # fmt: skip
    """The section's HTML: a lead, the figure, the summary and labels-vs-parameters tables,
    and each curve's flags and n* in words."""
    metric, higher, bounds = resolve_metric(runs, metric)
    result = data_scaling(runs, metric, higher_is_better=higher, bounds=bounds,
                          min_gain=min_gain, n_boot=bootstrap)  # fmt: skip
    if not result.curves:  # build.py turns this into a note, not a failed report
        raise ScalelabError(f"no finished run has both {metric} and {LABELS}")
    png = plot_data_scaling(result, out / "data_scaling.png")
    err = f"1 - {metric}" if higher else metric
    lead = (f"<p>{html.esc(metric)} against the number of labelled training examples n "
            f"({html.esc(LABELS)}), per model. Law per curve: {html.esc(err)} = A n<sup>-alpha"
            "</sup> + E (Hestness et al. 2017), fitted on every run, 95% intervals from "
            f"{bootstrap} bootstrap refits over seeds and draws. n*: the smallest n at which "
            f"doubling n is predicted to gain less than {min_gain:g} {html.esc(metric)}.</p>")  # fmt: skip
    caption = (f"{metric} vs labelled examples (log x), one colour per model (size order): "
               "means over seeds and draws (open squares: k examples per class), bands: 95% "
               "t intervals, dashed: the fitted law, star: n* (diminishing returns).")  # fmt: skip
    body = lead + html.figure(png, caption)
    cols = ["model", "method", "N", "n measured", f"{metric} at largest n", "alpha", "asymptote",
            "n*", "n* lies", "flags"]  # fmt: skip
    body += html.table(summary_rows(result), cols, left=2)
    rows, grid_cols = grid_rows(result)
    body += "<p>Labels vs parameters: mean " + html.esc(metric) + " per model and n.</p>"
    body += html.table(rows, grid_cols, left=1)
    notes = list(result.notes)
    for c in result.curves:
        if c.returns is not None:
            notes.append(f"{c.name}: {c.returns.text()}")
        notes += [f"{c.name}: {f.message}" for f in (c.fit.flags if c.fit else ())]
        notes += [f"{c.name}: no fit: {c.why_not}"] if c.fit is None else []
    return body + html.notes(notes)
