"""Report figures. Plot functions draw data plus already-fitted laws; they never fit.

Each takes a DataFrame, parameter dicts / bands computed elsewhere, and an output path, and
writes one PNG. Matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scalelab.analysis import laws  # noqa: E402

Band = tuple[np.ndarray, np.ndarray, np.ndarray]  # (x grid, lower, upper)


def _groups(df: pd.DataFrame, group: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    if group is None or group not in df.columns:
        return [(None, df)]
    return [(str(k), sub) for k, sub in df.groupby(group, sort=True, dropna=True)]


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
) -> Path:
    """y vs x on log-log axes, one colour per group, with fitted power laws and their bands.

    `params[group]`: power-law parameters (E, A, alpha); `bands[group]`: (x grid, lo, hi) from
    bootstrap refits. Groups without an entry are drawn as points only.
    """
    params, bands = params or {}, bands or {}
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    xs = pd.to_numeric(df[x], errors="coerce")
    lo_x, hi_x = xs[xs > 0].min(), xs[xs > 0].max()
    grid = np.geomspace(lo_x, hi_x, 200) if np.isfinite(lo_x) else np.array([])
    for i, (key, sub) in enumerate(_groups(df, group)):
        color = f"C{i % 10}"
        ax.scatter(sub[x], sub[y], s=18, color=color, label=key or y, zorder=3)
        if key in bands:
            bx, blo, bhi = bands[key]
            ax.fill_between(bx, blo, bhi, color=color, alpha=0.2, lw=0)
        if key in params and len(grid):
            p = params[key]
            label = f"fit: E={p.get('E', 0):.3g}, A={p['A']:.3g}, α={p['alpha']:.3g}"
            ax.plot(grid, laws.power_law(grid, p), color=color, lw=1.5, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} vs {x}")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_learning_curves(
    curves: pd.DataFrame,
    path: Path,
    *,
    x: str = "tokens",
    labels: Mapping[str, str] | None = None,
    max_runs: int = 20,
) -> Path:
    """Train loss (thin) and validation loss (markers) per run vs `x` (tokens or step)."""
    labels = labels or {}
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    x = x if x in curves.columns and curves[x].notna().any() else "step"
    for i, (run, sub) in enumerate(list(curves.groupby("run_id", sort=True))[:max_runs]):
        sub = sub.sort_values(x)
        color = f"C{i % 10}"
        label = labels.get(str(run), str(run))
        if "train_loss" in sub and sub["train_loss"].notna().any():
            ax.plot(sub[x], sub["train_loss"], color=color, lw=1, alpha=0.6, label=f"{label} train")
        if "val_loss" in sub and sub["val_loss"].notna().any():
            val = sub[sub["val_loss"].notna()]
            ax.plot(val[x], val["val_loss"], "o--", color=color, ms=3, lw=1, label=f"{label} val")
    ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    ax.set_title("learning curves")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
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
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, (key, sub) in enumerate(_groups(df, group)):
        color = f"C{i % 10}"
        ax.scatter(sub[x], sub[y], s=16, color=color, label=key or f"{y} vs {x}", zorder=3)
        if key in params:
            lx = pd.to_numeric(sub[x], errors="coerce").dropna()
            p = params[key]
            grid = np.linspace(max(lx.min(), p["E_x"] * (1 + 1e-6)), lx.max(), 200)
            ax.plot(grid, laws.loss_to_loss(grid, p), color=color, lw=1.5)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"loss-to-loss: {y} vs {x}")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
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
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    xs = pd.to_numeric(df[loss], errors="coerce").dropna()
    grid = np.linspace(xs.min(), xs.max(), 200) if len(xs) else np.array([])
    for i, (key, sub) in enumerate(_groups(df, group)):
        color = f"C{i % 10}"
        ax.scatter(sub[loss], sub[acc], s=16, color=color, label=key or acc, zorder=3)
        if key in params and len(grid):
            ax.plot(grid, laws.acc_from_loss(grid, params[key]), color=color, lw=1.5)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance {chance:.3g}")
    ax.set_xlabel(loss)
    ax.set_ylabel(acc)
    ax.set_title(f"task accuracy: {acc} vs {loss}")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
