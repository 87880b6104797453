"""Weak-to-strong figures and the report section (analysis/w2s.py computes; this file
draws and lays out).

- `scaling_behavior.png`: test accuracy vs strong-model size, one panel per weak model: a
  line per method (the students), the strong ceilings (ground truth on half B) and the weak
  ceiling as a dashed line (Burns et al. 2023, Fig. 3 in form).
- `error_distribution.png`: per method, the student's test error rate where the weak
  model was wrong vs right, beside the strong ceiling's on the same examples (a student
  that imitates its supervisor errs where the supervisor errs).
- `pgr_heatmap.png`: PGR per (weak, strong) pair, one panel per method.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.analysis.w2s import PGRSummary, accuracy_table, error_split, summarize_pgr
from scalelab.report import html, style


def load_correct(runs: pd.DataFrame, runs_dir: Path | None) -> dict[str, np.ndarray]:
    """run id -> bool [n_test] (argmax == truth) from each run's `predictions.npz`; runs
    without one (older runs, a CSV without run folders) are left out."""
    from scalelab.errors import ScalelabError
    from scalelab.methods.label_files import read_predictions

    out = {}
    if runs_dir is None:
        return out
    for run_id in runs["run_id"]:
        try:
            probs, truth = read_predictions(Path(runs_dir) / str(run_id))
        except ScalelabError:
            continue
        out[str(run_id)] = probs.argmax(-1) == truth
    return out


def plot_scaling_behavior(summary: PGRSummary, path: Path) -> Path:
    """Test accuracy vs strong-model size (log x), one panel per weak model (see module)."""
    pairs = summary.pairs
    weaks = list(pairs.sort_values("weak_size").drop_duplicates("weak")["weak"])
    methods = list(dict.fromkeys(pairs["method"]))
    colors = style.group_colors(methods)
    fig, axes = style.figure(4.4 * len(weaks) + 1.0, 4.4, ncols=len(weaks), squeeze=False,
                             sharex=True, sharey=True)  # fmt: skip
    sizes = list(pairs["strong_size"].dropna())
    for ax, weak in zip(axes[0], weaks, strict=True):
        sub = pairs[pairs["weak"] == weak].sort_values("strong_size")
        ceil = sub.drop_duplicates("strong")
        ax.plot(ceil["strong_size"], ceil["acc_strong"], "k-s", label="strong ceiling")
        ax.axhline(sub["acc_weak"].iloc[0], color="grey", ls="--", label=f"weak ceiling ({weak})")
        for m in methods:
            s = sub[sub["method"] == m]
            ax.plot(s["strong_size"], s["acc_w2s"], "o-", color=colors[m], label=m)
        style.log_axis(ax, "x", sizes)
        ax.set_xlabel("strong model: non-embedding parameters")
        ax.set_title(f"weak supervisor: {weak}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test accuracy (mean over seeds)")
    return style.save(fig, path)


def plot_error_distribution(errors: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: per method, error rate where the weak model was wrong / right, for
    the students (pooled over pairs and seeds) and the strong ceilings on the same examples."""
    pooled = errors.assign(s=errors["student_error"] * errors["n"],
                           c=errors["ceiling_error"] * errors["n"])  # fmt: skip
    agg = pooled.groupby(["method", "weak_right"], sort=False)[["s", "c", "n"]].sum()
    methods = list(dict.fromkeys(errors["method"]))
    fig, ax = style.figure(max(5.0, 1.8 * len(methods) + 2), 4.2)
    width, x = 0.2, np.arange(len(methods))
    bars = [("student, weak wrong", False, "s", "C3"), ("ceiling, weak wrong", False, "c", "C7"),
            ("student, weak right", True, "s", "C0"), ("ceiling, weak right", True, "c", "C8")]  # fmt: skip
    for k, (label, right, col, color) in enumerate(bars):
        vals = [agg.loc[(m, right), col] / max(agg.loc[(m, right), "n"], 1)
                if (m, right) in agg.index else np.nan for m in methods]  # fmt: skip
        ax.bar(x + (k - 1.5) * width, vals, width, label=label, color=color)
    ax.set_xticks(x, methods)
    ax.set_xlabel("student's training method (strong ceilings beside them)")
    ax.set_ylabel("test error rate")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return style.save(fig, path)


def plot_pgr_heatmap(pairs: pd.DataFrame, path: Path) -> Path:
    """PGR of each (weak, strong) pair, one panel per method, on one colour scale clipped
    to [-1, 1] (a colour bar; the cell's own value written on it, in white on dark cells);
    excluded pairs are hatched, cells of no pair (a model with itself) left blank."""
    from matplotlib.patches import Rectangle

    methods = list(dict.fromkeys(pairs["method"]))
    weaks = list(pairs.sort_values("weak_size").drop_duplicates("weak")["weak"])
    strongs = list(pairs.sort_values("strong_size").drop_duplicates("strong")["strong"])
    fig, axes = style.figure(3.4 * len(methods) + 2.0, 0.8 * len(weaks) + 2.6,
                             ncols=len(methods), squeeze=False)  # fmt: skip
    image = None
    for ax, m in zip(axes[0], methods, strict=True):
        grid = np.full((len(weaks), len(strongs)), np.nan)
        for r in pairs[pairs["method"] == m].itertuples():
            i, j = weaks.index(r.weak), strongs.index(r.strong)
            if r.excluded:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                       ec="0.6", lw=0))  # fmt: skip
            else:
                grid[i, j] = r.pgr
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=-1, vmax=1,
                          aspect="auto")  # fmt: skip
        for i, j in zip(*np.nonzero(np.isfinite(grid)), strict=True):
            dark = abs(grid[i, j]) > 0.6  # the ends of RdYlGn are dark
            ax.text(j, i, f"{grid[i, j]:+.2f}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")  # fmt: skip
        ax.grid(False)
        ax.set_xticks(range(len(strongs)), strongs, rotation=20, ha="right", fontsize=8)
        ax.set_yticks(range(len(weaks)), weaks, fontsize=8)
        ax.set_xlabel("strong student")
        ax.set_title(f"PGR: {m}", fontsize=10)
    axes[0][0].set_ylabel("weak supervisor")
    fig.tight_layout(rect=(0, 0, 0.88, 1))  # room on the right for the colour bar
    if image is not None:
        cax = fig.add_axes((0.9, 0.25, 0.018, 0.6))
        fig.colorbar(image, cax=cax, label="PGR (colours clipped to [-1, 1])")
    return style.save(fig, path, layout=False)


def write_figures(summary: PGRSummary, correct: Mapping[str, np.ndarray], out: Path,
                  prefix: str = "") -> dict[str, Path]:  # fmt: skip
    """The three PNGs (error_distribution only with per-example results) in `out`."""
    figs = {"scaling_behavior": plot_scaling_behavior(summary, out / f"{prefix}scaling_behavior.png"),
            "pgr_heatmap": plot_pgr_heatmap(summary.pairs, out / f"{prefix}pgr_heatmap.png")}  # fmt: skip
    errors = error_split(summary, correct)
    if len(errors):
        figs["error_distribution"] = plot_error_distribution(
            errors, out / f"{prefix}error_distribution.png")  # fmt: skip
    return figs


def _num(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:+.3f}"


def _ci(lo: float, hi: float) -> str:
    return "n/a" if not np.isfinite(lo) else f"[{lo:+.3f}, {hi:+.3f}]"


def medians_rows(summary: PGRSummary) -> list[dict]:
    """The medians table (per method: median PGR, 95% interval, pairs) as rows of text."""
    return [{"method": r.method, "median PGR": _num(r.median_pgr),
             "95% interval": _ci(r.ci_low, r.ci_high), "pairs": str(r.pairs),
             "excluded": str(r.excluded)} for r in summary.medians.itertuples()]  # fmt: skip


def w2s_section(runs: pd.DataFrame, runs_dir: Path | None, out: Path, bootstrap: int = 1000) -> str:
    """The report's weak-to-strong section: median PGR per method with intervals, each
    method against the baseline, every model's accuracy, the three figures, excluded pairs."""
    correct = load_correct(runs, runs_dir)
    s = summarize_pgr(runs, correct, n_boot=bootstrap)
    figs = write_figures(s, correct, out)
    acc = accuracy_table(runs, s)
    cols = [c for c in acc.columns if c not in ("model", "size")]
    acc_rows = [{"model": r["model"], "N": style.human(r["size"]),
                 **{c: "" if pd.isna(r[c]) else f"{r[c]:.4f}" for c in cols}}
                for _, r in acc.iterrows()]  # fmt: skip
    diffs = [{"method": f"{r.method} - {r.baseline}", "difference": _num(r.difference),
              "95% interval": _ci(r.ci_low, r.ci_high)} for r in s.differences.itertuples()]  # fmt: skip
    body = (f"<p>PGR = (acc<sub>w2s</sub> - acc<sub>weak</sub>) / (acc<sub>strong ceiling</sub>"
            f" - acc<sub>weak</sub>) on the test split (Burns et al. 2023); per pair from the "
            f"means over seeds; intervals: 95% percentile bootstrap over {s.resampled} "
            f"({bootstrap} draws, paired across methods).</p>")  # fmt: skip
    body += html.table(medians_rows(s), ["method", "median PGR", "95% interval", "pairs",
                                         "excluded"])  # fmt: skip
    if diffs:
        body += html.table(diffs, ["method", "difference", "95% interval"])
    body += html.table(acc_rows, ["model", "N", *cols], left=1)
    body += html.figure(figs["scaling_behavior"], "Test accuracy vs strong-model size, one "
                        "panel per weak supervisor: students per method, strong ceilings "
                        "(black) and the weak ceiling (dashed); means over seeds.")  # fmt: skip
    if "error_distribution" in figs:
        body += html.figure(figs["error_distribution"], "Test error rate of the students "
                            "where their weak supervisor was wrong vs right, beside the "
                            "strong ceilings on the same examples (pooled over pairs and "
                            "seeds).")  # fmt: skip
    body += html.figure(figs["pgr_heatmap"], "PGR per (weak, strong) pair and method; "
                        "hatched: excluded (the strong ceiling does not beat the weak one); "
                        "blank: no such pair.")  # fmt: skip
    return body + html.notes([f"excluded: {e}" for e in s.excluded])


def has_w2s(runs: pd.DataFrame) -> bool:
    """Whether the table holds finished weak-to-strong students."""
    return "method" in runs and bool((runs["method"] == "w2s").any())
