"""Inside-training figures of the report, drawn from the monitor points the engine records
into each run's curve (`scalelab/engine/monitor.py`): the learning-rate schedule, the
gradient norm per layer over steps (a heat map per run family), and throughput and memory
over steps. Runs are named by model (and method where several) and coloured by size.

Nothing here fits; a run without monitor columns (monitoring off, or a result file from
before monitoring) is simply not drawn, and `monitor_section` is "" when no run has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.seeds import label_columns
from scalelab.engine.monitor import layer_rank
from scalelab.report import html
from scalelab.report.curves import SIZE_COLUMNS, run_colors, size_order
from scalelab.report.style import axis_label, figure, legend_outside, save

LR = "lr/0"
GRAD = "grad_norm/"
THROUGHPUT = ("tokens_per_s", "examples_per_s")
# Current memory first (GPU allocated, then process RSS), then the peaks, then any mem/*.
MEMORY = ("mem/allocated_mb", "mem/rss_mb", "mem/peak_allocated_mb", "mem/peak_rss_mb")
MAX_HEATMAPS = 4
LR_CAPTION = (
    "Learning rate of parameter group 0 (lr/0) at each monitor point, as the optimizer used "
    "it for that step (warmup, then the schedule's decay); runs with the same schedule draw "
    "on top of each other."
)
SPEED_CAPTION = (
    "Top: training throughput over the steps since the previous monitor point. Bottom: "
    "memory of the training process (allocated on a GPU, resident set size on a CPU). Both "
    "measure the machine: they differ between two runs of one configuration."
)
HEATMAP_CAPTION = (
    "L2 norm of each layer's gradients before clipping at each monitor point (log colour "
    "scale; blank: no value, or a zero norm as of a frozen layer). The largest model of its "
    "method (lowest seed)."
)


def grad_layers(curves: pd.DataFrame) -> list[str]:
    """Layers with a `grad_norm/<layer>` column holding any value, in model order."""
    found = [c[len(GRAD):] for c in curves.columns
             if c.startswith(GRAD) and curves[c].notna().any()]  # fmt: skip
    return sorted(found, key=layer_rank)


def _has(curves: pd.DataFrame, col: str) -> bool:
    return col in curves and pd.to_numeric(curves[col], errors="coerce").notna().any()


def _first(curves: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if _has(curves, c)), None)


def memory_column(curves: pd.DataFrame) -> str | None:
    """The memory column to draw: allocated (GPU) or RSS (CPU), else a peak, else any
    `mem/*` column with values; None when the curves have none."""
    others = sorted(c for c in curves.columns if str(c).startswith("mem/"))
    return _first(curves, [*MEMORY, *others])


def has_monitor(curves: pd.DataFrame | None) -> bool:
    """Whether `curves` hold any monitor point (lr, per-layer gradient norms, throughput
    or memory)."""
    if curves is None or not len(curves):
        return False
    return bool(
        _has(curves, LR) or grad_layers(curves) or _first(curves, THROUGHPUT)
        or memory_column(curves)
    )  # fmt: skip


def _family(runs: pd.DataFrame) -> pd.Series:
    """Each run's family: its method's label (`variant`) where the table has one, else its
    method; one family when the table has neither."""
    for col in ("variant", "method"):
        if col in runs and runs[col].notna().any():
            return runs[col].astype(str)
    return pd.Series("runs", index=runs.index)


def monitor_labels(runs: pd.DataFrame, models: Mapping[str, str] | None = None) -> dict[str, str]:
    """run id -> a reader's name: the model, its method (label) only when several are
    shown, and each other varying field (seed, lr, ...)."""
    models = models or {}
    extra = label_columns(runs, exclude=())
    several = _family(runs).nunique() > 1
    out = {}
    for _, r in runs.iterrows():
        model = r.get("model")
        parts = [models.get(str(model), str(model)) if pd.notna(model) else str(r["run_id"])]
        if several:
            parts.append(str(r.get("variant", r.get("method"))))
        parts += [t for c in extra if (t := table.field_text(c, r.get(c), models)) is not None]
        out[str(r["run_id"])] = " ".join(parts)
    return out


def _runs_with(runs: pd.DataFrame, curves: pd.DataFrame, col: str) -> list[str]:
    """Run ids in size order whose curves have a value in `col`."""
    if col not in curves:
        return []
    have = set(curves.loc[curves[col].notna(), "run_id"].astype(str))
    return [r for r in size_order(runs) if r in have]


def _integer_steps(ax: Any) -> None:
    """Step ticks at whole steps only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _series(curves: pd.DataFrame, run_id: str, col: str) -> pd.DataFrame:
    sub = curves[(curves["run_id"].astype(str) == run_id) & curves[col].notna()]
    return sub.sort_values("step")


def plot_lr_schedules(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    path: Path,
    models: Mapping[str, str] | None = None,
) -> Path:
    """The learning rate of parameter group 0 (`lr/0`) against the optimizer step, one
    line per run, named by model and coloured by size (smallest dark)."""
    order = _runs_with(runs, curves, LR)
    labels = monitor_labels(runs, models)
    colors = run_colors(runs)
    fig, ax = figure()
    for rid in order:
        sub = _series(curves, rid, LR)
        ax.plot(sub["step"], sub[LR], marker=".", ms=3, lw=1.4, color=colors[rid],
                label=labels.get(rid, rid))  # fmt: skip
    _integer_steps(ax)
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel(axis_label(LR))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_title("learning-rate schedule")
    if order:
        legend_outside(ax, len(order))
    return save(fig, path)


def _edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around sorted steps: midpoints between neighbours, half a gap past the
    ends (a single step gets width 1)."""
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[2 * steps[0] - mid[0]], mid, [2 * steps[-1] - mid[-1]]])


def grad_norm_grid(curves: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(layers in model order, monitor steps, values[layer, step]) of one run's
    `grad_norm/<layer>` columns; NaN where a layer has no value at a step."""
    layers = grad_layers(curves)
    cols = [GRAD + la for la in layers]
    pts = curves[curves[cols].notna().any(axis=1)] if cols else curves.iloc[:0]
    pts = pts.groupby("step", sort=True)[cols].last() if cols else pd.DataFrame()
    values = pts.to_numpy(float).T if cols else np.empty((0, 0))
    return layers, pts.index.to_numpy(float), values


def plot_grad_norm_heatmap(curves: pd.DataFrame, path: Path, title: str) -> Path:
    """The gradient norm of each layer (rows, in model order: embed, blocks, head, other)
    at each monitor step (columns): colour on a log scale, blank where there is no value
    (or a zero norm, as of a frozen layer)."""
    from matplotlib.colors import LogNorm

    layers, steps, values = grad_norm_grid(curves)
    masked = np.ma.masked_where(~np.isfinite(values) | (values <= 0), values)
    fig, ax = figure(height=max(2.6, min(6.0, 1.4 + 0.32 * len(layers))))
    if masked.count():
        norm = LogNorm(vmin=float(masked.min()), vmax=float(masked.max()))
        if norm.vmin == norm.vmax:
            norm = LogNorm(vmin=norm.vmin / 2, vmax=norm.vmax * 2)
        mesh = ax.pcolormesh(_edges(steps), np.arange(len(layers) + 1), masked, norm=norm,
                             cmap="magma", shading="flat")  # fmt: skip
        fig.colorbar(mesh, ax=ax, label="gradient norm", pad=0.01)
    ax.set_yticks(np.arange(len(layers)) + 0.5, layers)
    ax.set_ylim(len(layers), 0)  # embed at the top, head at the bottom
    ax.grid(False)
    _integer_steps(ax)
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel("layer")
    ax.set_title(title)
    return save(fig, path)


def plot_throughput_memory(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    path: Path,
    models: Mapping[str, str] | None = None,
) -> Path:
    """Two panels over the optimizer step, one line per run coloured by size: throughput
    (`tokens_per_s`, else `examples_per_s`) and memory (allocated on a GPU, RSS on a CPU,
    in MiB); a panel says so when the curves lack its column."""
    speed, mem = _first(curves, THROUGHPUT), memory_column(curves)
    labels = monitor_labels(runs, models)
    everyone = list(dict.fromkeys(_runs_with(runs, curves, speed or "")
                                  + _runs_with(runs, curves, mem or "")))  # fmt: skip
    colors = run_colors(runs)
    fig, axes = figure(height=7.2, nrows=2, sharex=True)
    for ax, col, what in ((axes[0], speed, "throughput"), (axes[1], mem, "memory")):
        if col is None:
            ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")  # fmt: skip
            continue
        for rid in _runs_with(runs, curves, col):
            sub = _series(curves, rid, col)
            ax.plot(sub["step"], sub[col], marker=".", ms=3, lw=1.4, color=colors[rid],
                    label=labels.get(rid, rid))  # fmt: skip
        ax.set_ylabel(axis_label(col))
        ax.set_ylim(bottom=0)
    axes[0].set_title("throughput and memory over training")
    _integer_steps(axes[1])
    axes[1].set_xlabel(axis_label("step"))
    if everyone:  # beside the panels: the lines of many runs fill them
        legend_outside(axes[0], len(everyone))
    return save(fig, path)


def heatmap_runs(runs: pd.DataFrame, curves: pd.DataFrame) -> list[str]:
    """One run id per family (method label, else method) with per-layer gradient norms:
    its largest model, lowest seed; at most MAX_HEATMAPS, families in table order."""
    have = {r for r in curves["run_id"].astype(str).unique()
            if grad_layers(curves[curves["run_id"].astype(str) == r])}  # fmt: skip
    cand = runs[runs["run_id"].astype(str).isin(have)].copy()
    if cand.empty:
        return []
    size = next((c for c in SIZE_COLUMNS if c in cand and cand[c].notna().any()), None)
    cand["_size"] = pd.to_numeric(cand[size], errors="coerce").fillna(0) if size else 0.0
    cand["_seed"] = pd.to_numeric(cand["seed"], errors="coerce") if "seed" in cand else 0
    cand["_family"] = _family(cand)
    picked = []
    for _, fam in cand.groupby("_family", sort=False):
        best = fam.sort_values(["_size", "_seed", "run_id"], ascending=[False, True, True])
        picked.append(str(best["run_id"].iloc[0]))
    return picked[:MAX_HEATMAPS]


def monitor_section(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    out_dir: Path,
    prefix: str = "",
    models: Mapping[str, str] | None = None,
) -> str:
    """HTML of the "Inside training" section: the lr schedules, throughput and memory, and
    a gradient-norm heat map per run family (its largest model); "" when the curves hold
    no monitor points."""
    if curves is None or not len(curves) or "run_id" not in runs:
        return ""
    cur = curves[curves["run_id"].astype(str).isin(runs["run_id"].astype(str))]
    if not has_monitor(cur):
        return ""
    out_dir = Path(out_dir)
    labels = monitor_labels(runs, models)
    parts = []
    if _has(cur, LR):
        png = plot_lr_schedules(runs, cur, out_dir / f"{prefix}lr_schedule.png", models)
        parts.append(html.figure(png, LR_CAPTION))
    if _first(cur, THROUGHPUT) or memory_column(cur):
        png = plot_throughput_memory(runs, cur, out_dir / f"{prefix}throughput_memory.png", models)
        parts.append(html.figure(png, SPEED_CAPTION))
    for i, rid in enumerate(heatmap_runs(runs, cur)):
        one = cur[cur["run_id"].astype(str) == rid]
        name = labels.get(rid, rid)
        png = plot_grad_norm_heatmap(
            one, out_dir / f"{prefix}grad_norm_heatmap_{i}.png", f"gradient norm per layer: {name}"
        )
        parts.append(html.figure(png, f"{name}: {HEATMAP_CAPTION}"))
    return "".join(parts)
