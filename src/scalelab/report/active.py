"""The report's active-learning section (analysis/active.py computes; this file draws and
lays out): learning curves per strategy (test accuracy vs labels, log x, a band for the
95% interval over seeds, one panel per setting) and the label-saving table against random
sampling."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scalelab.analysis.active import active_points, is_active, label_savings, learning_curves
from scalelab.errors import ScalelabError
from scalelab.report import html, style

METRIC = "test_accuracy"


def plot_active_curves(curves: pd.DataFrame, path: Path, metric: str = METRIC) -> Path:
    """Mean `metric` vs labels per strategy (log x), the 95% interval as a band; one panel
    per setting; random first, black and dashed where present (as in the dashboard)."""
    settings = list(dict.fromkeys(curves["setting"]))
    strategies = list(dict.fromkeys(curves["strategy"]))
    strategies.sort(key=lambda s: s != "random")
    colors = style.group_colors([s for s in strategies if s != "random"])
    colors["random"] = "black"
    fig, axes = style.figure(max(style.FIGSIZE[0], 4.4 * len(settings)), style.FIGSIZE[1],
                             ncols=len(settings), squeeze=False, sharey=True)  # fmt: skip
    for ax, setting in zip(axes[0], settings, strict=True):
        sub = curves[curves["setting"] == setting]
        for s in strategies:
            c = sub[sub["strategy"] == s].sort_values("labels")
            if c.empty:
                continue
            ax.plot(c["labels"], c["mean"], "o--" if s == "random" else "o-", color=colors[s],
                    label=s, ms=4)  # fmt: skip
            ax.fill_between(c["labels"], c["ci_low"], c["ci_high"], color=colors[s], alpha=0.15,
                            lw=0)  # fmt: skip
        style.log_axis(ax, "x", list(sub["labels"]))
        ax.set_xlabel("labelled training examples")
        if setting:
            ax.set_title(setting, fontsize=9)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"{style.axis_label(metric)}, mean over seeds")
    return style.save(fig, path)


def _saving_rows(savings: pd.DataFrame) -> list[dict]:
    rows = []
    for r in savings.itertuples():
        mark = {"more than": "≥ ", "at most": "≤ "}.get(r.censored, "")
        ci = "n/a" if r.ci_low != r.ci_low else f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
        rows.append({"setting": r.setting or "-", "strategy": r.strategy,
                     "labels": f"{r.labels:,d}", "accuracy": f"{r.accuracy:.4f}",
                     "random needs": f"{mark}{r.random_labels:,.0f}",
                     "saving": f"{mark}{r.ratio:.2f}", "95% interval": ci})  # fmt: skip
    return rows


def active_section(runs: pd.DataFrame, curves: pd.DataFrame | None, out: Path,
                   prefix: str = "", bootstrap: int = 1000) -> str:  # fmt: skip
    """The section's HTML (its figure `active_curves.png` in `out`). Raises ScalelabError
    when the active runs have no stored curves."""
    if curves is None or not len(curves):
        raise ScalelabError("the active-learning runs have no learning curves stored")
    points = active_points(runs, curves)
    lc = learning_curves(points, METRIC)
    png = plot_active_curves(lc, out / f"{prefix}active_curves.png")
    body = html.figure(png, "Test accuracy vs labelled examples per query strategy (log x): "
                       "mean over seeds, band: 95% interval of the mean (Student t over "
                       "seeds). Every round fine-tunes the pretrained model afresh on the "
                       "labelled set.")  # fmt: skip
    try:
        savings = label_savings(points, METRIC, n_boot=bootstrap)
    except ScalelabError as err:
        return body + html.notes([f"no label saving: {err}"])
    body += (f"<p>Label saving at equal test accuracy: the labels random sampling needs "
             f"(its mean curve, linear in log labels between rounds) to reach the accuracy a "
             f"strategy has at L labels, divided by L; above 1 the strategy saves labels. "
             f"≥ / ≤: outside random's curve (not extrapolated), a bound. Interval: 95% "
             f"percentile bootstrap over seeds ({bootstrap} draws).</p>")  # fmt: skip
    body += html.table(_saving_rows(savings), ["setting", "strategy", "labels", "accuracy",
                                               "random needs", "saving", "95% interval"],
                       left=2)  # fmt: skip
    return body


def active_run_ids(runs: pd.DataFrame) -> set[str]:
    """Run ids of the active runs: their curves are rounds, not training steps."""
    if not is_active(runs):
        return set()
    return set(runs.loc[runs["method"] == "active", "run_id"].astype(str))


__all__ = ["active_run_ids", "active_section", "is_active", "plot_active_curves"]
