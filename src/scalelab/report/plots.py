"""Report figures. Plot functions draw data plus already-fitted laws; they never fit.

Each takes a DataFrame, parameter dicts / bands computed elsewhere, and an output path, and
writes one PNG in the shared style (`style.py`: size, readable log ticks, labels with units,
colours ordered by size). Matplotlib is imported when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.analysis import laws
from scalelab.report import style

Band = tuple[np.ndarray, np.ndarray, np.ndarray]  # (x grid, lower, upper)


def _groups(df: pd.DataFrame, group: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    if group is None or group not in df.columns:
        return [(None, df)]
    return [(str(k), sub) for k, sub in df.groupby(group, sort=True, dropna=True)]


def _save(fig, path: Path) -> Path:
    return style.save(fig, path)


def _size_axes(ax, x: str, y: str, xs: Sequence[float], per: str) -> None:
    """A log size axis (ticks fitted to `xs`), a plain y axis, both labelled with units."""
    style.log_axis(ax, "x", xs)
    style.plain_axis(ax, "y")
    ax.set_xlabel(style.axis_label(x, per))
    ax.set_ylabel(style.axis_label(y, per))


def plot_scaling(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: Path,
    *,
    group: str | None = None,
    params: Mapping[str | None, Mapping[str, float]] | None = None,
    bands: Mapping[str | None, Band] | None = None,
    title: str = "",
    point_labels: str | None = "model",
    per: str = "token",
    emphasis: set[str] | None = None,
) -> Path:
    """y vs x (x on a log axis, y plain), one colour per group, with fitted power laws and
    their bands, each point named by its `point_labels` column (the model) when present.

    `params[group]`: power-law parameters (E, A, alpha); `bands[group]`: (x grid, lo, hi) from
    bootstrap refits (the caller passes only bands of identified fits). Groups without an
    entry are drawn as points only. emphasis: groups drawn bold and labelled (a sweep's
    envelope); the others thin and faded, their points unlabelled.
    """
    params, bands = params or {}, bands or {}
    fig, ax = style.figure()
    xs = pd.to_numeric(df[x], errors="coerce")
    lo_x, hi_x = xs[xs > 0].min(), xs[xs > 0].max()
    grid = np.geomspace(lo_x, hi_x, 200) if np.isfinite(lo_x) else np.array([])
    groups = _groups(df, group)
    colors = style.group_colors([k for k, _ in groups])
    for key, sub in groups:
        color = colors[key]
        bold = emphasis is None or key in emphasis
        faded = {} if bold else {"alpha": 0.45}
        ax.scatter(sub[x], sub[y], s=30 if bold else 14, color=color, label=key or "runs",
                   zorder=3 if bold else 2, **faded)  # fmt: skip
        if point_labels and point_labels in sub and bold:
            for _, r in sub.iterrows():
                ax.annotate(str(r[point_labels]), (r[x], r[y]), textcoords="offset points",
                            xytext=(5, 5), fontsize=8, color="#333")  # fmt: skip
        if key in bands:
            bx, blo, bhi = bands[key]
            ax.fill_between(bx, blo, bhi, color=color, alpha=0.15, lw=0,
                            label="95% bootstrap band")  # fmt: skip
        if key in params and len(grid) and all(np.isfinite(list(params[key].values()))):
            p = params[key]  # (a fit with an infinite parameter is not drawn: see its flags)
            label = f"fit: {style.power_law_text(p)}"
            width = 1.5 if emphasis is None else (2.5 if bold else 1.0)
            ax.plot(grid, laws.power_law(grid, p), color=color, lw=width, label=label,
                    ls="-" if bold else "--", **faded)  # fmt: skip
    _size_axes(ax, x, y, list(xs.dropna()), per)
    ax.set_title(title or f"{style.axis_label(y, per).split(' (')[0]} vs model size")
    ax.legend(loc="best")
    return _save(fig, path)


def plot_learning_curves(
    curves: pd.DataFrame,
    path: Path,
    *,
    x: str = "tokens",
    y: str = "val_loss",
    labels: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    final: Mapping[str, tuple[float, float]] | None = None,
    final_label: str = "final evaluation (the table's value)",
    train: bool = True,
    title: str = "learning curves",
    per: str = "token",
    x_label: str | None = None,
    colors: Mapping[str, object] | None = None,
    max_runs: int = 20,
) -> Path:
    """Validation `y` (circles) and, with `train`, the training loss (thin line) per run vs
    `x` (tokens, else step), from the first logged point (step 0 where the run logged it).

    labels: run id -> legend name (model, method, seed), never a hash when given.
    order: run ids, smallest model first: the colour order (viridis); default sorted ids.
    final: run id -> (x, value) drawn as a star with `final_label`: the number the results
    table holds, where it is another evaluation than the curve's points.
    colors: run id -> colour (e.g. one per configuration); default: by `order` (size).
    """
    labels, final = labels or {}, final or {}
    fig, ax = style.figure()
    x = x if x in curves.columns and curves[x].notna().any() else "step"
    runs = [r for r in (order or sorted(curves["run_id"].unique())) if r in set(curves["run_id"])]
    runs = runs[:max_runs]
    colors = {**style.size_colors(runs), **(colors or {})}
    by_run = dict(tuple(curves.groupby("run_id", sort=False)))
    for run in runs:
        sub = by_run[run].sort_values(x)
        color, label = colors[run], labels.get(str(run), str(run))
        if train and "train_loss" in sub and sub["train_loss"].notna().any():
            t = sub[sub["train_loss"].notna()]
            ax.plot(t[x], t["train_loss"], color=color, lw=1, alpha=0.45, ls="--")
        if y in sub and sub[y].notna().any():
            val = sub[sub[y].notna()]
            ax.plot(val[x], val[y], "o-", color=color, ms=4, lw=1.4, label=label)
        if run in final:
            fx, fy = final[run]
            ax.plot([fx], [fy], "*", color=color, ms=13, mec="black", mew=0.6, zorder=4)
    if final:  # legend entries for the line kinds, after the runs
        ax.plot([], [], "*", color="white", ms=13, mec="black", mew=0.8, label=final_label)
    if train:
        ax.plot([], [], color="grey", lw=1, ls="--", alpha=0.6, label="training loss")
    style.plain_axis(ax, "x")
    style.plain_axis(ax, "y")
    if x in ("tokens", "examples"):
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: style.human(v)))
    ax.set_xlabel(x_label or style.axis_label(x, per))
    ax.set_ylabel(style.axis_label(y, per))
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


def plot_loss_to_loss(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: Path,
    *,
    group: str | None = None,
    params: Mapping[str | None, Mapping[str, float]] | None = None,
) -> Path:
    """L_y vs L_x coloured by group, with each group's fitted K (L_x - E_x)^kappa + E_y."""
    params = params or {}
    fig, ax = style.figure()
    for i, (key, sub) in enumerate(_groups(df, group)):
        color = f"C{i % 10}"
        ax.scatter(sub[x], sub[y], s=24, color=color, label=key or f"{y} vs {x}", zorder=3)
        if key in params:
            lx = pd.to_numeric(sub[x], errors="coerce").dropna()
            p = params[key]
            grid = np.linspace(max(lx.min(), p["E_x"] * (1 + 1e-6)), lx.max(), 200)
            ax.plot(grid, laws.loss_to_loss(grid, p), color=color, lw=1.5)
    style.plain_axis(ax, "x")
    style.plain_axis(ax, "y")
    ax.set_xlabel(style.axis_label(x))
    ax.set_ylabel(style.axis_label(y))
    ax.set_title(f"loss-to-loss: {y} vs {x}")
    ax.legend()
    return _save(fig, path)


def plot_task_accuracy(
    df: pd.DataFrame,
    loss: str,
    acc: str,
    path: Path,
    *,
    group: str | None = None,
    params: Mapping[str | None, Mapping[str, float]] | None = None,
    chance: float | None = None,
) -> Path:
    """Accuracy vs task loss per group, with each group's fitted accuracy law (sigmoid of
    Bhagia et al. 2024 or exponential of Gadre et al. 2024) and the chance level dashed."""
    params = params or {}
    fig, ax = style.figure()
    xs = pd.to_numeric(df[loss], errors="coerce").dropna()
    grid = np.linspace(xs.min(), xs.max(), 200) if len(xs) else np.array([])
    for i, (key, sub) in enumerate(_groups(df, group)):
        color = f"C{i % 10}"
        ax.scatter(sub[loss], sub[acc], s=16, color=color, label=key or acc, zorder=3)
        if key in params and len(grid):
            ax.plot(grid, laws.acc_from_loss(grid, params[key]), color=color, lw=1.5)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance {chance:.3g}")
    ax.set_xlabel(style.axis_label(loss))
    ax.set_ylabel(style.axis_label(acc))
    ax.set_title(f"task accuracy: {acc} vs {loss}")
    ax.legend()
    return _save(fig, path)


def plot_beats(
    cells: pd.DataFrame,
    reference: tuple[str, float, float],
    path: Path,
    *,
    metric: str,
    higher_is_better: bool,
    size: str = "non_embedding_params",
    per: str = "token",
    margin: float = 0.0,
    lines: set[str] | None = None,
    predicted: dict[str, tuple[float, float, float]] | None = None,
) -> Path:
    """The answer at a glance: each method's cell means vs size (log x), one line per
    method; bars: the reference mean plus the 95% interval of the cell's gain over it (in
    the metric's units); filled markers: cells that beat the reference (or come within
    `margin`); the reference as a star at its size and a dashed line at its mean, the
    margin as a dotted line.

    cells: one row per cell with method, size, mean, gain, lo, hi, beats (`beats.as_rows`);
    reference: (name, size, mean); a size of None draws no star: the reference is a
    target value (`analysis/reaches.py`); lines: the methods whose cells a line joins
    (default all; a method whose cells differ in more than size gets markers only);
    predicted: method -> (size, lo, hi) a fitted law predicts to reach the reference, drawn
    as a diamond on the reference line with its interval (an infinite end is cut at the
    axis).
    """
    name, ref_size, ref_mean = reference
    fig, ax = style.figure()
    methods = list(dict.fromkeys(cells["method"]))
    colors = style.group_colors(methods)
    sign = 1.0 if higher_is_better else -1.0
    for i, m in enumerate(methods):
        sub = cells[cells["method"] == m].sort_values("size")
        color = colors[m]
        # Methods share sizes (the same ladder): nudge each sideways so bars stay apart.
        xs = sub["size"] * 10 ** (0.015 * (i - (len(methods) - 1) / 2))
        joined = lines is None or m in lines
        ax.plot(xs, sub["mean"], color=color, lw=1.2 if joined else 0, label=m, zorder=2,
                marker=None if joined else "o", markersize=0 if joined else 6)  # fmt: skip
        for x, (_, r) in zip(xs, sub.iterrows(), strict=True):
            if np.isfinite(r["lo"]):  # gain = sign * (cell - reference), in metric units
                ends = sorted((ref_mean + sign * r["lo"], ref_mean + sign * r["hi"]))
                ax.plot([x] * 2, ends, color=color, lw=1, alpha=0.7, zorder=2)
            ax.scatter(x, r["mean"], s=36, zorder=3, color=color,
                       facecolor=color if r["beats"] else "white", linewidths=1.4)  # fmt: skip
    if ref_size is None:
        ax.axhline(ref_mean, color="#444", ls="--", lw=1, label=name)
    else:
        ax.axhline(ref_mean, color="#444", ls="--", lw=1)
        ax.scatter([ref_size], [ref_mean], marker="*", s=140, color="#222", zorder=4,
                   label=f"{name} (reference)")  # fmt: skip
    shown = [*cells["size"]] + ([ref_size] if ref_size is not None else [])
    for m, (n, lo, hi) in (predicted or {}).items():
        if np.isfinite(n) and n > 0:
            color = colors.get(m, "#222")
            ends = [v for v in (lo, hi) if np.isfinite(v) and v > 0]
            if len(ends) == 2:
                ax.plot(ends, [ref_mean] * 2, color=color, lw=3, alpha=0.35, zorder=1)
            ax.scatter([n], [ref_mean], marker="D", s=40, color=color, zorder=4,
                       label=f"{m}: predicted size")  # fmt: skip
            shown.append(n)
    if margin:
        ax.axhline(ref_mean - sign * margin, color="#444", ls=":", lw=1,
                   label=f"reference {'-' if higher_is_better else '+'} {margin:g}")  # fmt: skip
    _size_axes(ax, size, metric, shown, per)
    verb = f"come within {margin:g} of" if margin else "beat"
    what = "reach the target" if ref_size is None else f"{verb} the reference"
    ax.set_title(f"Which models {what}? (filled: yes, with 95% support)")
    ax.legend(loc="best")
    return _save(fig, path)


def plot_distillation(
    df: pd.DataFrame,
    path: Path,
    *,
    n_s: str = "non_embedding_params",
    d_s: str = "tokens",
    l_t: str = "teacher_loss",
    l_s: str = "val_loss",
    params: Mapping[str, float] | None = None,
    per: str = "token",
    title: str = "Student loss vs teacher loss",
) -> Path:
    """Distilled runs: the student's loss `l_s` against its teacher's loss `l_t`, one colour
    per student size `n_s` (line style per distillation tokens `d_s` where several), the
    measured points over the fitted law of Busbridge et al. (2025, Eq. 8;
    `laws.distillation`, all 15 parameters in `params`), and the diagonal where the student
    equals its teacher. df: one row per distilled run (N_S, D_S, L_T, L_S > 0)."""
    fig, ax = style.figure()
    sub = df[[n_s, d_s, l_t, l_s]].apply(pd.to_numeric, errors="coerce").dropna()
    sizes = sorted(sub[n_s].unique())
    colors = style.size_colors(sizes)
    # Line style per D_S, or per D_S / N_S where the grid scales tokens with size (fewer).
    ratio = (sub[d_s] / sub[n_s]).round(6)
    by_ratio = ratio.nunique() < sub[d_s].nunique()
    key = ratio if by_ratio else sub[d_s]
    styles = {k: ["-", "--", ":", "-."][i % 4] for i, k in enumerate(sorted(key.unique()))}
    lo, hi = float(sub[l_t].min()), float(sub[l_t].max())
    grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 200)
    for size in sizes:
        rows = sub[sub[n_s] == size]
        color = colors[size]
        ax.scatter(rows[l_t], rows[l_s], s=26, color=color, zorder=3,
                   label=f"N_S {style.human(size)}")  # fmt: skip
        for d in sorted(rows[d_s].unique()) if params else []:
            ls = styles[round(d / size, 6) if by_ratio else d]
            ax.plot(grid, laws.distillation(size, d, grid, params), color=color, lw=1.3, ls=ls)
    if params and len(styles) > 1:  # one legend entry per line style
        for k, ls in styles.items():
            what = f"D_S = {k:g} N_S" if by_ratio else f"D_S {style.human(k)}"
            ax.plot([], [], color="grey", ls=ls, label=f"fit, {what}")
    elif params:
        ax.plot([], [], color="grey", lw=1.3, label="fit (Eq. 8)")
    ax.plot(grid, grid, color="#444", ls=(0, (2, 2)), lw=1, label="student = teacher")
    y_lo, y_hi = min(float(sub[l_s].min()), lo), float(sub[l_s].max())
    pad = 0.08 * (y_hi - y_lo or 1.0)
    ax.set_ylim(y_lo - pad, y_hi + pad)  # the data's range: fitted curves may run far above
    style.plain_axis(ax, "x")
    style.plain_axis(ax, "y")
    ax.set_xlabel(f"teacher loss L_T (nats per {per})")
    ax.set_ylabel(f"student loss L_S (nats per {per})")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


def plot_methods_panels(
    cells: pd.DataFrame,
    path: Path,
    *,
    metric: str,
    size: str = "non_embedding_params",
    per: str = "token",
    fits: Mapping[str, Mapping[str, float]] | None = None,
    bands: Mapping[str, Band] | None = None,
    reference: tuple[str, float, float] | None = None,
) -> Path:
    """One panel per method on shared axes: its cells' means vs size (log x), the fitted
    power law where the method has one (`fits[method]`: E, A, alpha, drawn over the data
    range) with its band where identified (`bands[method]`), and the reference (name,
    size, mean) as a dashed line and star in every panel.

    cells: one row per cell with method, size, mean (`beats.as_rows`)."""
    fits, bands = fits or {}, bands or {}
    methods = list(dict.fromkeys(cells["method"]))
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = style.figure(4.4 * cols, 3.2 * rows, nrows=rows, ncols=cols, sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    colors = style.group_colors(methods)
    xs_all = [*cells["size"], *([reference[1]] if reference else [])]
    for ax, m in zip(axes.flat, methods, strict=False):
        sub = cells[cells["method"] == m].sort_values("size")
        ax.scatter(sub["size"], sub["mean"], s=28, color=colors[m], zorder=3)
        if m in bands:
            bx, lo, hi = bands[m]
            ax.fill_between(bx, lo, hi, color=colors[m], alpha=0.15, lw=0)
        if m in fits and all(np.isfinite(list(fits[m].values()))):
            grid = np.geomspace(sub["size"].min(), sub["size"].max(), 100)
            ax.plot(grid, laws.power_law(grid, fits[m]), color=colors[m], lw=1.4)
        if reference:
            ax.axhline(reference[2], color="#444", ls="--", lw=0.9)
            ax.scatter([reference[1]], [reference[2]], marker="*", s=90, color="#222", zorder=4)
        ax.set_title(m, fontsize=10)
        style.log_axis(ax, "x", xs_all)
        style.plain_axis(ax, "y")
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    # axis labels on the panels themselves (a figure-level label floats far below the axes
    # after tight_layout): x under each column's lowest panel, with its tick labels even
    # where the panel below it is hidden; y on the left column
    for i, ax in enumerate(axes.flat[: len(methods)]):
        if i + cols >= len(methods):
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(style.axis_label(size, per), fontsize=10)
        if i % cols == 0:
            ax.set_ylabel(style.axis_label(metric, per), fontsize=10)
    return _save(fig, path)
