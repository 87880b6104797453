"""One look for every report figure: size, fonts, readable log ticks, labels with units,
colours ordered by model size.

Plot functions call `figure()` and `save()` and label axes with `axis_label(column)`;
nothing here reads data or fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# 8.8 x 4.8 inches at 100 dpi: 880 x 480 pixels, the width of the report's text column.
FIGSIZE = (8.8, 4.8)
DPI = 100
RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}

# Axis labels with units. Losses are natural-log cross-entropies: nats per token for
# language models, nats per example for classifiers (`axis_label(..., per="example")`).
LABELS = {
    "non_embedding_params": "non-embedding parameters N",
    "total_params": "parameters (all)",
    "trainable_params": "trainable parameters",
    "tokens": "training tokens",
    "step": "optimizer step",
    "examples": "training examples seen",
    "train_loss": "training loss (nats per {per})",
    "val_loss": "validation loss (nats per {per})",
    "test_loss": "test loss (nats per {per})",
    "val_ppl": "validation perplexity",
    "test_ppl": "test perplexity",
    "bits_per_byte": "test bits per byte",
    "val_accuracy": "validation accuracy (fraction correct)",
    "test_accuracy": "test accuracy (fraction correct)",
    "val_macro_f1": "validation macro-F1",
    "test_macro_f1": "test macro-F1",
    "params.lr": "peak learning rate",
    "params.weight_decay": "weight decay",
    "compute": "training compute (FLOP)",
    "tokens_per_s": "tokens per second",
    "examples_per_s": "examples per second",
    "lr/0": "learning rate (parameter group 0)",
    "mem/allocated_mb": "GPU memory allocated (MiB)",
    "mem/reserved_mb": "GPU memory reserved (MiB)",
    "mem/peak_allocated_mb": "peak GPU memory allocated (MiB)",
    "mem/rss_mb": "process memory, resident set (MiB)",
    "mem/peak_rss_mb": "peak process memory, resident set (MiB)",
}


def axis_label(column: str, per: str = "token") -> str:
    """`column` as an axis label with its unit ("validation loss (nats per token)"); an
    error rate `1 - x` as "error rate (1 - x)"; a monitor's memory column in words with
    MiB; unknown columns as they are."""
    if column.startswith("1 - "):
        base = axis_label(column[4:], per).split(" (")[0]
        base = base.replace("accuracy", "error rate") if "accuracy" in base else f"{base} error"
        return f"{base} ({column})"
    if column.startswith("mem/") and column not in LABELS:  # another monitor memory column
        return f"memory: {column[4:].removesuffix('_mb').replace('_', ' ')} (MiB)"
    return LABELS.get(column, column).format(per=per)


def legend_outside(ax: Any, n: int) -> None:
    """The legend right of the axes (never over the data), in 2 columns past 12 entries."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8,
              ncol=2 if n > 12 else 1, borderaxespad=0.0)  # fmt: skip


def figure(width: float = FIGSIZE[0], height: float = FIGSIZE[1], **grid: Any):
    """(fig, ax) in the report style; matplotlib on the Agg backend (files only). `grid`:
    `plt.subplots` options for several panels (nrows, ncols, sharex, ...), then ax is
    their array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(RC)
    return plt.subplots(figsize=(width, height), dpi=DPI, **grid)


def save(fig: Any, path: Path, layout: bool = True) -> Path:
    """Lay out (unless the caller did), write `path` as a PNG at the report's resolution,
    close the figure."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def human(v: float) -> str:
    """A count in few characters: 950, 13k, 1.5M, 2G ("G" for 1e9)."""
    if v == 0 or not np.isfinite(v):
        return f"{v:g}"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def number(v: float) -> str:
    """`v` to 3 significant digits, trailing zeros kept ("3.40", "0.0301", "2.43"), in
    e-notation only outside [0.001, 10,000) ("1.04e4", "5.42e-14")."""
    if v == 0 or not np.isfinite(v):
        return f"{v:g}"
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:#.3g}".rstrip(".")
    mantissa, exp = f"{v:.2e}".split("e")
    return f"{mantissa}e{int(exp)}"


def power_law_text(params: Mapping[str, float], x: str = "N", rel_zero: float = 1e-6) -> str:
    """The fitted law E + A·x^-alpha as a legend shows it, 3 significant digits each
    (`number`): "2.43 + 1.04e4·N^-0.508". An E that is zero for the loss's scale (below
    `rel_zero` of A: a fit whose E sits on its bound 0, e.g. 5.4e-14) is left out:
    "3.40·N^-0.0301"."""
    e, a, alpha = float(params.get("E", 0.0)), float(params["A"]), float(params["alpha"])
    law = f"{number(a)}·{x}^-{number(alpha)}"
    return law if abs(e) <= rel_zero * max(abs(a), 1.0) else f"{number(e)} + {law}"


def log_axis(ax: Any, which: str = "x", values: Sequence[float] | None = None) -> None:
    """A logarithmic axis with plain labels (13k, 100k, 1M), never overlapping: labels at
    powers of ten, plus 2 and 5 times them when the data span less than two decades, plus
    3 when they span less than one. Minor ticks carry no labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    v = np.asarray([x for x in (values or []) if x and np.isfinite(x) and x > 0], float)
    span = np.log10(v.max() / v.min()) if len(v) > 1 else 3.0
    subs = (1.0,) if span >= 2 else (1.0, 2.0, 5.0) if span >= 1 else (1.0, 2.0, 3.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: human(x)))
    axis.set_minor_formatter(NullFormatter())


def plain_axis(ax: Any, which: str = "y") -> None:
    """A linear axis with plain decimal labels (2.2, not 2.2×10⁰ or an offset)."""
    from matplotlib.ticker import ScalarFormatter

    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    (ax.xaxis if which == "x" else ax.yaxis).set_major_formatter(fmt)


def size_colors(keys: Sequence[Any]) -> dict[Any, Any]:
    """One colour per key, in the order given (smallest model first): viridis from dark
    purple to yellow-green, so colour order is size order."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    n = len(keys)
    return {k: cmap(0.05 + 0.8 * (i / max(n - 1, 1))) for i, k in enumerate(keys)}


def group_colors(keys: Sequence[Any]) -> dict[Any, str]:
    """Distinct qualitative colours for unordered groups (methods, datasets)."""
    return {k: f"C{i % 10}" for i, k in enumerate(keys)}
