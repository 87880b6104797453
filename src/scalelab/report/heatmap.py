"""A heatmap of one metric over a two-parameter grid (e.g. lr x weight_decay), as a PNG.

Plots what it is given: the caller aggregates (e.g. averages over seeds) first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.analysis.table import number_text


def plot_heatmap(
    table: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    path: str | Path,
    title: str = "",
    best: tuple | None = None,
) -> Path:
    """Write a heatmap of `table[value]` at (table[x], table[y]) cells to `path`.

    table: one row per (x, y) cell; axes are the sorted unique values; empty cells are
    blank. best: an (x, y) cell to outline. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    grid = table.pivot_table(index=y, columns=x, values=value, aggfunc="mean")
    grid = grid.sort_index().sort_index(axis=1)
    data = grid.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.4 * data.shape[1] + 2.5, 1.0 * data.shape[0] + 1.8))
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(
        range(data.shape[1]),
        [number_text(v) if isinstance(v, float) else str(v) for v in grid.columns],
    )
    ax.set_yticks(
        range(data.shape[0]),
        [number_text(v) if isinstance(v, float) else str(v) for v in grid.index],
    )
    from scalelab.report.style import axis_label

    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    finite = data[np.isfinite(data)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if np.isfinite(data[i, j]):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.3f}",
                    ha="center",
                    va="center",
                    color="black" if data[i, j] > mid else "white",
                    fontsize=9,
                )
    if best is not None:
        j, i = list(grid.columns).index(best[0]), list(grid.index).index(best[1])
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=3, ec="red"))
    fig.colorbar(im, ax=ax, label=axis_label(value))
    ax.set_title(title or f"{value} over {x} x {y}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
