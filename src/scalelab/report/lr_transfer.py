"""Learning-rate transfer: validation loss vs learning rate, one line per model, one panel
per parametrization, the best lr of each model marked.

The figure of muP's claim (Yang et al. 2022, "Tensor Programs V", Figure 1): under muP the
best lr stays put as the width grows, under the standard parametrization it drifts (down,
with Adam). Plots what it is given (means over seeds); never fits.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scalelab.report import html, style

LR, PAR, SIZE = "params.lr", "params.parametrization", "non_embedding_params"


def lr_table(runs: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """Mean `metric` per (parametrization, model, lr), finite rows only; columns
    parametrization ("standard" where the column is missing or empty), model, lr, size
    (non-embedding params, NaN without the column) and `metric`, sorted by parametrization,
    size, model, lr. Empty without the model, lr or metric columns."""
    if not {"model", LR, metric} <= set(runs.columns):
        return pd.DataFrame(columns=["parametrization", "model", "lr", "size", metric])
    t = pd.DataFrame({
        "parametrization": runs[PAR].fillna("standard") if PAR in runs else "standard",
        "model": runs["model"].astype(str),
        "lr": pd.to_numeric(runs[LR], errors="coerce"),
        "size": pd.to_numeric(runs[SIZE], errors="coerce") if SIZE in runs else float("nan"),
        metric: pd.to_numeric(runs[metric], errors="coerce"),
    })  # fmt: skip
    t = t[t["lr"].gt(0) & t[metric].notna() & t[metric].abs().lt(float("inf"))]
    t = t.groupby(["parametrization", "model", "lr"], as_index=False).agg(
        size=("size", "max"), **{metric: (metric, "mean")}
    )
    return t.sort_values(["parametrization", "size", "model", "lr"], kind="stable")


def best_lrs(table: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """The row of the lowest `metric` per (parametrization, model) of an `lr_table`."""
    idx = table.groupby(["parametrization", "model"], sort=False)[metric].idxmin()
    return table.loc[idx.to_numpy()]


def plot_lr_transfer(runs: pd.DataFrame, path: str | Path, metric: str = "val_loss") -> Path:
    """Write the lr-transfer PNG: one panel per parametrization (shared y), `metric` vs lr
    on a log x axis, one line per model coloured by size (smallest first), each model's
    argmin ringed. runs: a runs table (model, params.lr, `metric`, optional
    params.parametrization and non_embedding_params). Returns the path written."""
    t = lr_table(runs, metric)
    pars = sorted(t["parametrization"].unique(), key=lambda p: (p != "standard", p))
    models = list(dict.fromkeys(t.sort_values(["size", "model"], kind="stable")["model"]))
    colors = style.size_colors(models)
    fig, axes = style.figure(ncols=max(len(pars), 1), sharey=True, squeeze=False)
    best = best_lrs(t, metric)
    for ax, par in zip(axes[0], pars, strict=False):
        sub = t[t["parametrization"] == par]
        for model, line in sub.groupby("model", sort=False):
            ax.plot(line["lr"], line[metric], "o-", ms=4, color=colors[model], label=model)
            b = best[(best["parametrization"] == par) & (best["model"] == model)].iloc[0]
            ax.plot(b["lr"], b[metric], "o", ms=12, mfc="none", mec=colors[model], mew=2)
        style.log_axis(ax, "x", list(sub["lr"]))
        ax.set_xlabel(style.axis_label(LR))
        ax.set_title(f"{par} parametrization")
    axes[0][0].set_ylabel(style.axis_label(metric))
    style.plain_axis(axes[0][0], "y")
    axes[0][-1].legend(title="model (by size)")
    return style.save(fig, Path(path))


def lr_transfer_section(runs: pd.DataFrame, out_dir: str | Path, prefix: str = "") -> str:
    """The report's "Learning-rate transfer" section: the figure and each model's best lr
    per parametrization; "" when the runs sweep fewer than 2 lrs or hold fewer than 2
    models (nothing to transfer)."""
    t = lr_table(runs)
    if t["lr"].nunique() < 2 or t["model"].nunique() < 2:
        return ""
    png = plot_lr_transfer(runs, Path(out_dir) / f"{prefix}lr_transfer.png")
    best = best_lrs(t)
    rows = [{"parametrization": r["parametrization"], "model": r["model"],
             "best lr": r["lr"], "val_loss": r["val_loss"]}
            for _, r in best.iterrows()]  # fmt: skip
    spread = {
        par: sub["lr"].max() / sub["lr"].min() for par, sub in best.groupby("parametrization")
    }
    note = "; ".join(f"{p}: best lr varies {s:.3g}x across models" for p, s in spread.items())
    caption = (
        "Validation loss vs peak learning rate (mean over seeds), one line per model, "
        f"smallest first; ringed: each model's best lr. The lr transfers when the rings line "
        f"up ({note})."
    )
    return html.figure(png, caption) + html.table(
        rows, ["parametrization", "model", "best lr", "val_loss"], left=2
    )
