"""The report's "Cooldown branches vs cosine" section: loss against budget per model (wsd
branches beside cosine runs), the compute each side trained, and the verdicts in words
(analysis/wsd.py computes them; this file only draws and lays out)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scalelab.analysis.wsd import BranchSavings, branch_savings, savings_text
from scalelab.report import html, style


def plot_branches(savings: BranchSavings, path: Path) -> Path:
    """`metric` vs tokens (log x), one colour per model (size order): filled circles joined
    for the wsd runs (the stable run and its branches), open squares for cosine runs at the
    same budgets (means over seeds)."""
    fig, ax = style.figure()
    per = savings.per_model.sort_values("non_embedding_params")
    colors = style.size_colors(list(per["model"]))
    pts, got = savings.points, savings.matched
    for model in per["model"]:
        wsd = pts[pts["model"] == model].sort_values("tokens")
        ax.plot(wsd["tokens"], wsd["wsd"], "o-", color=colors[model], label=f"{model} wsd")
        if len(got):
            cos = got[got["model"] == model]
            ax.plot(cos["tokens"], cos["cosine"], "s", mfc="none", color=colors[model],
                    label=f"{model} cosine")  # fmt: skip
    style.log_axis(ax, "x", [t for b in per["budgets"] for t in b])
    style.plain_axis(ax, "y")
    ax.set_xlabel(style.axis_label("tokens"))
    ax.set_ylabel(style.axis_label(savings.metric))
    ax.legend(fontsize=7, ncol=2)
    return style.save(fig, path)


def wsd_section(runs: pd.DataFrame, out: Path) -> str:
    """The section's HTML: the verdicts, the figure and the per-model compute table."""
    savings = branch_savings(runs)
    png = plot_branches(savings, out / "wsd_branches.png")
    rows = [
        {"model": r["model"], "N": style.human(r["non_embedding_params"]),
         "budgets": ", ".join(style.human(b) for b in r["budgets"]),
         "wsd tokens": f"{r['wsd_tokens']:,.0f}", "cosine tokens": f"{r['cosine_tokens']:,.0f}",
         "ratio": f"{r['ratio']:.2f}x"}
        for _, r in savings.per_model.sort_values("non_embedding_params").iterrows()
    ]  # fmt: skip
    cols = ["model", "N", "budgets", "wsd tokens", "cosine tokens", "ratio"]
    caption = (f"{savings.metric} vs training tokens: filled circles, the stable wsd run and "
               "its cooldown branches (mean over seeds); open squares, cosine runs trained "
               "from scratch to the same budget.")  # fmt: skip
    body = html.notes(savings_text(savings)) + html.figure(png, caption)
    body += html.table(rows, cols, left=3)
    if len(savings.matched):
        m = savings.matched
        matched = [
            {"model": r["model"], "tokens": style.human(r["tokens"]),
             "wsd": f"{r['wsd']:.4f} ({r['n_wsd']})", "cosine": f"{r['cosine']:.4f} ({r['n_cosine']})",
             "wsd - cosine": f"{r['diff']:+.4f}",
             "noise band": "" if pd.isna(r["band"]) else f"±{r['band']:.4f}"}
            for _, r in m.iterrows()
        ]  # fmt: skip
        body += html.table(matched, list(matched[0]), left=2)
    return body
