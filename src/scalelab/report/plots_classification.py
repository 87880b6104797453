"""Classification figures: metrics per configuration with seed intervals, per-class F1,
a confusion matrix. They draw what they are given (statistics come from `analysis.seeds`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalelab.report import style


def plot_metric_intervals(
    summaries: dict[str, pd.DataFrame],
    values: dict[str, pd.DataFrame],
    path: Path,
    *,
    label: str = "label",
    title: str = "",
) -> Path:
    """One panel per metric: each configuration's mean over seeds (diamond) with its 95%
    interval (bar) and every seed's value (dots).

    summaries[metric]: rows with `label`, mean, ci_low, ci_high (as `seed_summary` gives,
    plus a label column); values[metric]: rows with `label` and `value` (one per run).
    """
    metrics = list(summaries)
    fig, axes = style.figure(style.FIGSIZE[0], 1.8 + 0.55 * _rows(summaries, label))
    fig.clear()
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        summary = summaries[metric].reset_index(drop=True)
        names = list(summary[label])
        ypos = np.arange(len(names))[::-1]
        lo = (summary["mean"] - summary["ci_low"]).to_numpy(float)
        hi = (summary["ci_high"] - summary["mean"]).to_numpy(float)
        err = np.nan_to_num(np.vstack([lo, hi]), nan=0.0)
        ax.errorbar(summary["mean"], ypos, xerr=err, fmt="D", color="black", ms=6, capsize=4,
                    lw=1.5, label="mean, 95% CI", zorder=3)  # fmt: skip
        vals = values[metric]
        for y0, name in zip(ypos, names, strict=True):
            v = vals.loc[vals[label] == name, "value"].to_numpy(float)
            ax.scatter(v, np.full(len(v), y0) + 0.18, s=18, color="C0", alpha=0.7,
                       label="one seed" if y0 == ypos[0] else None, zorder=2)  # fmt: skip
        ax.set_yticks(ypos, names)
        ax.set_xlabel(style.axis_label(metric, "example"))
        style.plain_axis(ax, "x")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.suptitle(title or "per configuration: mean over seeds and 95% interval")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return style.save(fig, path, layout=False)


def _rows(summaries: dict[str, pd.DataFrame], label: str) -> int:
    return max(len(s[label]) for s in summaries.values()) if summaries else 1


def plot_per_class_f1(
    per_class: pd.DataFrame,
    path: Path,
    *,
    title: str = "",
    colors: Mapping[str, Any] | None = None,
) -> Path:
    """Grouped bars: mean test F1 of each class per configuration, with each seed's value.

    per_class: rows with `label` (configuration), `class`, `seed`, `f1`, `support`; classes
    are shown in their given order with their test support under the name. colors:
    configuration -> colour (the report's by-size colours); default one per configuration.
    """
    classes = list(dict.fromkeys(per_class["class"]))
    configs = list(dict.fromkeys(per_class["label"]))
    colors = {**style.group_colors(configs), **(colors or {})}
    fig, ax = style.figure()
    width = 0.8 / max(len(configs), 1)
    x = np.arange(len(classes))
    for i, cfg in enumerate(configs):
        sub = per_class[per_class["label"] == cfg]
        means = [sub.loc[sub["class"] == c, "f1"].mean() for c in classes]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, means, width * 0.9, color=colors[cfg], alpha=0.75, label=cfg)
        for j, c in enumerate(classes):
            v = sub.loc[sub["class"] == c, "f1"].to_numpy(float)
            ax.scatter(np.full(len(v), pos[j]), v, s=12, color="black", zorder=3)
    support = per_class.drop_duplicates("class").set_index("class")["support"]
    ax.set_xticks(x, [f"{c}\n(n={int(support[c])})" for c in classes])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test F1 (dots: one seed each)")
    ax.set_title(title or "per-class test F1, mean over seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return style.save(fig, path)


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                   *, title: str = "") -> Path:  # fmt: skip
    """A confusion matrix (rows: true class, columns: predicted), counts in the cells,
    shaded by the share of the row (recall)."""
    m = np.asarray(cm, dtype=float)
    share = np.divide(m, m.sum(axis=1, keepdims=True), out=np.zeros_like(m),
                      where=m.sum(axis=1, keepdims=True) > 0)  # fmt: skip
    side = min(2.2 + 0.6 * len(labels), style.FIGSIZE[0])
    fig, ax = style.figure(side + 1.2, side)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, label="share of the true class")
    ax.set_title(title or "confusion matrix (test)")
    return style.save(fig, path)
