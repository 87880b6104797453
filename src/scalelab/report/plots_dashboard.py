"""Figures of the data-centric dashboard: box plots over seeds, a radar of methods over
metrics, augmentation ratio vs accuracy, accuracy vs labelled examples with zero-shot
lines, and the one-page grid of them. They draw what they are given: the statistics come
from `analysis.seeds`, the fits from `analysis.data_scaling`, the radar's scores from
`analysis.method_profile`; nothing here fits.

Each `draw_*` fills one matplotlib axes (so the dashboard and the stand-alone figures
share them); each `plot_*` takes a table (or result) and a path and returns the PNG path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalelab.report import style

# Spoke names a reader knows at a glance (the table beside the radar gives the metrics).
SPOKES = {"test_accuracy": "accuracy", "test_macro_f1": "macro-F1",
          "trainable_params": "fewer trainable\nparameters",
          "examples_per_s": "training\nexamples/s", "wall_s": "fewer seconds\n(wall clock)"}  # fmt: skip


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: `draw(ax, data)` fills it; `wide` panels take a whole row,
    `polar` ones get polar axes; `caption` explains it below the figure."""

    key: str
    title: str
    data: Any
    draw: Callable[[Any, Any], None]
    caption: str
    polar: bool = False
    wide: bool = False
    height: float = 3.9  # inches of its row


def draw_boxes(ax, values: pd.DataFrame, metric: str, fontsize: float = 9) -> None:
    """Horizontal box plots of `values.value` per `values.cell` (cells top to bottom in
    the order given), a box only where a cell has 2 or more values, every value a dot.

    values: rows with `cell` and `value` (one per run: a seed or a draw)."""
    cells = list(dict.fromkeys(values["cell"]))
    ypos = np.arange(len(cells))[::-1]
    rng = np.random.default_rng(0)  # the dots' vertical jitter only
    for y0, cell in zip(ypos, cells, strict=True):
        v = values.loc[values["cell"] == cell, "value"].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) >= 2:
            ax.boxplot([v], positions=[y0], **_horizontal(ax), widths=0.55, showfliers=False,
                       patch_artist=True, manage_ticks=False,
                       boxprops={"facecolor": "#cfe0f3", "edgecolor": "#335"},
                       medianprops={"color": "#c33", "lw": 1.6})  # fmt: skip
        jitter = rng.uniform(-0.13, 0.13, len(v)) if len(v) > 1 else np.zeros(len(v))
        ax.scatter(v, y0 + jitter, s=16, color="black", alpha=0.75, zorder=3)
    ax.set_yticks(ypos, cells, fontsize=fontsize)
    ax.set_ylim(-0.7, len(cells) - 0.3)
    ax.set_xlabel(style.axis_label(metric, "example"))
    style.plain_axis(ax, "x")


def _horizontal(ax) -> dict[str, Any]:
    """boxplot's keyword for horizontal boxes: `orientation` from matplotlib 3.10 on
    (`vert` is deprecated there), `vert=False` before."""
    import inspect

    has = "orientation" in inspect.signature(ax.boxplot).parameters
    return {"orientation": "horizontal"} if has else {"vert": False}


def plot_seed_boxes(values: pd.DataFrame, path: Path, *, title: str = "") -> Path:
    """One panel per metric (`values.metric`), shared cells: see `draw_boxes`.

    values: rows with `metric`, `cell`, `value`; cells in the order to show (smallest
    model first). Returns `path`."""
    metrics = list(dict.fromkeys(values["metric"]))
    cells = values["cell"].nunique()
    fig, axes = style.figure(style.FIGSIZE[0], 1.6 + 0.34 * cells, ncols=len(metrics),
                             squeeze=False, sharey=True)  # fmt: skip
    for ax, metric in zip(axes[0], metrics, strict=True):
        draw_boxes(ax, values[values["metric"] == metric], metric)
    fig.suptitle(title or "over seeds and draws: box (quartiles, median in red), every run a dot")
    return style.save(fig, path)


def draw_radar(ax, axes: Sequence[Any], scores: pd.DataFrame, fontsize: float = 9) -> None:
    """One closed polygon per method (`scores.method`) over the spokes `axes` (objects
    with `.metric`), radius its 0..1 score (1, the rim: the best of the methods). A score
    the method lacks leaves a gap in its line. `ax` must be polar."""
    n = len(axes)
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    colors = style.group_colors(list(scores["method"]))
    for _, r in scores.iterrows():
        vals = np.array([float(r[a.metric]) for a in axes] + [float(r[axes[0].metric])])
        th = np.append(theta, theta[0])
        ax.plot(th, vals, "-o", color=colors[r["method"]], lw=1.8, ms=4, label=r["method"])
        if np.isfinite(vals).all():
            ax.fill(th, vals, color=colors[r["method"]], alpha=0.12)
    ax.set_xticks(theta, [SPOKES.get(a.metric, a.metric) for a in axes], fontsize=fontsize)
    ax.xaxis.set_tick_params(pad=fontsize + 2)  # spoke names clear of the rim
    ax.set_ylim(0, 1.0)
    ax.set_rorigin(-0.25)  # the worst score (0) is a ring, not a point
    ax.set_yticks([0.5, 1.0], ["", ""])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(len(scores), 4),
              fontsize=fontsize - 1, frameon=False)  # fmt: skip


def plot_radar(axes: Sequence[Any], scores: pd.DataFrame, raw: pd.DataFrame, path: Path,
               fmt: Callable[[str, Any], str] | None = None) -> Path:  # fmt: skip
    """The radar (left) and the raw values (right, one column per method).

    axes: spokes with `.metric` and `.label`; scores / raw: one row per method with
    `method` and each axis's metric (scores in 0..1, raw as measured); fmt(metric, value):
    the text of a raw value (default 4 significant digits)."""
    fmt = fmt or (lambda _m, v: f"{v:.4g}" if _finite(v) else "n/a")
    fig, _ = style.figure(style.FIGSIZE[0], 4.6)
    fig.clear()
    ax = fig.add_subplot(1, 2, 1, projection="polar")
    draw_radar(ax, axes, scores)
    tab = fig.add_subplot(1, 2, 2)
    tab.axis("off")
    cells = [[fmt(a.metric, r[a.metric]) for _, r in raw.iterrows()] for a in axes]
    t = tab.table(cellText=cells, rowLabels=[a.label for a in axes], colLabels=list(raw["method"]),
                  loc="center", cellLoc="right")  # fmt: skip
    t.auto_set_font_size(False)
    t.set_fontsize(9)
    t.scale(0.8, 1.5)
    fig.tight_layout(w_pad=4.0)
    return style.save(fig, path, layout=False)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def draw_ratio(ax, points: pd.DataFrame, metric: str) -> None:
    """`metric` against the augmentation ratio, one line per `points.curve`: the mean
    (circles) with its 95% interval over seeds (bars; none for one seed).

    points: rows with curve, ratio, mean, ci_low, ci_high."""
    curves = list(dict.fromkeys(points["curve"]))
    colors = style.group_colors(curves)
    for i, curve in enumerate(curves):
        p = points[points["curve"] == curve].sort_values("ratio")
        dx = (i - (len(curves) - 1) / 2) * 0.008  # side by side, bars never on top
        err = np.nan_to_num(np.vstack([p["mean"] - p["ci_low"], p["ci_high"] - p["mean"]]))
        ax.errorbar(p["ratio"] + dx, p["mean"], yerr=err, fmt="-o", color=colors[curve],
                    capsize=3, ms=5, lw=1.3, label=curve)  # fmt: skip
    ax.set_xlabel("augmented share of the training examples (ratio)")
    ax.set_ylabel(style.axis_label(metric, "example"))
    style.plain_axis(ax, "y")
    ax.legend(fontsize=7, frameon=False)


def draw_scaling(ax, result: Any, zero: pd.DataFrame) -> None:
    """The data-scaling curves of `result` (an `analysis.data_scaling.DataScaling`: means,
    bands, the fitted law and n* as the data-scaling section draws them) on log x, and one
    dotted horizontal line per row of `zero` (label, mean): the runs that saw no labelled
    example (zero-shot), labelled at the right edge."""
    from dataclasses import replace

    from scalelab.report.data_scaling import curve_colors, draw_curve

    methods = len({c.method for c in result.curves}) > 1  # then the legend names them
    colors = curve_colors(result.curves)
    every_n = [n for c in result.curves for n in c.points["n"]]
    for c in result.curves:
        shown = replace(c, setting=f"{c.method} {c.setting}".strip()) if methods else c
        draw_curve(ax, shown, colors[c.name], result.higher_is_better)
    for i, (_, z) in enumerate(zero.iterrows()):
        ax.axhline(z["mean"], ls=":", lw=1.6, color=f"C{(i + 3) % 10}")
        ax.annotate(
            f"{z['label']} ({z['mean']:.3f})",
            (0.99, z["mean"]),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2 + 9 * i),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7,
            color=f"C{(i + 3) % 10}",
        )  # stacked: equal means stay readable
    if every_n:
        style.log_axis(ax, "x", every_n)
    ax.set_xlabel("labelled training examples n")
    ax.set_ylabel(style.axis_label(result.metric, "example"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False, loc="upper left")


def draw_labels_curves(ax, points: pd.DataFrame, metric: str) -> None:
    """`metric` against labelled examples (log x), one line per `points.curve` with a band
    of its 95% interval; dashed for rows whose `style` is "dashed" (a reference).

    points: rows with curve, n, mean, ci_low, ci_high[, style]."""
    curves = list(dict.fromkeys(points["curve"]))
    dashed_of = {c: "style" in points and bool((points.loc[points["curve"] == c, "style"]
                                                 == "dashed").all()) for c in curves}  # fmt: skip
    colors = style.group_colors([c for c in curves if not dashed_of[c]])
    colors |= {c: "black" for c in curves if dashed_of[c]}  # a reference: black dashed
    for curve in curves:
        p = points[points["curve"] == curve].sort_values("n")
        dashed = dashed_of[curve]
        ax.plot(p["n"], p["mean"], "--o" if dashed else "-o", color=colors[curve], ms=4,
                label=curve)  # fmt: skip
        band = p[np.isfinite(p["ci_low"].astype(float))]
        if len(band) > 1:
            ax.fill_between(band["n"], band["ci_low"], band["ci_high"], color=colors[curve],
                            alpha=0.15, lw=0)  # fmt: skip
    style.log_axis(ax, "x", list(points["n"]))
    ax.set_xlabel("labelled training examples n")
    ax.set_ylabel(style.axis_label(metric, "example"))
    ax.legend(fontsize=7, frameon=False)


def layout(panels: Sequence[Panel]) -> list[list[Panel]]:
    """The dashboard's rows: the half-width panels two a row in the order given, then each
    wide one on a row of its own (the order of their letters (a), (b), ...)."""
    half = [p for p in panels if not p.wide]
    rows = [half[i : i + 2] for i in range(0, len(half), 2)]
    return rows + [[p] for p in panels if p.wide]


def plot_dashboard(panels: Sequence[Panel], path: Path, *, title: str = "") -> Path:
    """The panels on one page, 880 pixels wide: two a row (a lone last one and `wide`
    ones take the whole row), each titled (a), (b), ... in order. Returns `path`."""
    rows = layout(panels)
    heights = [max(p.height for p in row) for row in rows]
    fig, _ = style.figure(style.FIGSIZE[0], sum(heights) + 0.5, layout="constrained")
    fig.clear()
    subs = fig.subfigures(len(rows), 1, height_ratios=heights, squeeze=False)[:, 0]
    letter = iter("abcdefghij")
    for sub, row in zip(subs, rows, strict=True):  # each row lays itself out
        for c, panel in enumerate(row):
            ax = sub.add_subplot(1, len(row), c + 1, projection="polar" if panel.polar else None)
            panel.draw(ax, panel.data)
            ax.set_title(f"({next(letter)}) {panel.title}", fontsize=11, loc="left",
                         pad=14 if panel.polar else 6)  # fmt: skip
    fig.suptitle(title or "data-centric dashboard", fontsize=13)
    return style.save(fig, path, layout=False)
