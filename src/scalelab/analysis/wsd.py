"""What cooldown branches save: the compute of one stable run plus its branches against the
cosine grid at the same budgets, and the loss difference at matched budgets.

Input: a runs table as `scalelab results` produces: stable runs are `pretrain` rows with
`params.branch_tokens`; a branch is a `cooldown` row whose `model` is `run:<stable id>`;
cosine runs are `pretrain` rows with the cosine schedule (`params.schedule` absent or
`cosine`) of the stable run's model, lr, batch size and parametrization.

Compute is counted in training tokens per model size (FLOPs ~ 6 N D, so at one N the token
ratio is the FLOP ratio): the cosine grid trains every budget from scratch, sum(D); the
stable run trains its own budget once and each branch its cooldown alone. For budgets
D_1..D_k <= D_max and cooldown fraction c the ratio is sum(D) / ((1 - c) D_max + c sum(D)),
at most k / (1 + (k - 1) c) (2.5x for 4 budgets at c = 0.2): Hägele et al. (2024), Sec. 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalelab.analysis.table import as_text

MATCH = ("params.lr", "params.batch_size", "params.parametrization", "params.dropout",
         "params.weight_decay", "task.dataset")  # fmt: skip


@dataclass(frozen=True)
class BranchSavings:
    """per_model: one row per stable run: model, non_embedding_params, budgets (tokens,
    ascending), wsd_tokens (stable + cooldowns), cosine_tokens (sum of budgets), ratio,
    and where every budget has a cosine run, wsd_wall_s / cosine_wall_s (measured, summed;
    means over seeds); matched: one row per (model, budget) with a cosine run: wsd and
    cosine `metric` means over seeds, their seed counts, diff (wsd - cosine), band (2 x the
    pooled seed sd x sqrt(1/n_wsd + 1/n_cos): ~95% for a difference of means; NaN without
    two seeds of anything) and within (|diff| <= band); ratio: total cosine tokens / total
    wsd tokens over every model; sd: the pooled seed sd (NaN without repeats); points: one
    row per (model, budget) of the wsd runs with a value: model, tokens, wsd (`metric`,
    mean over seeds), cosine run or not."""

    per_model: pd.DataFrame
    matched: pd.DataFrame
    ratio: float
    sd: float
    metric: str
    points: pd.DataFrame


def has_branches(runs: pd.DataFrame) -> bool:
    return "method" in runs and bool((runs["method"] == "cooldown").any())


def _schedule(rows: pd.DataFrame) -> pd.Series:
    col = rows["params.schedule"] if "params.schedule" in rows else pd.Series("nan", rows.index)
    return as_text(col).replace("nan", "cosine")


def _same(rows: pd.DataFrame, ref: pd.Series) -> pd.Series:
    """Rows whose MATCH columns equal `ref`'s (missing on both sides counts as equal)."""
    keep = pd.Series(True, rows.index)
    for col in MATCH:
        if col in rows:
            want = str(ref.get(col)) if pd.notna(ref.get(col)) else "nan"
            keep &= as_text(rows[col]) == want
    return keep


def branch_savings(runs: pd.DataFrame, metric: str = "val_loss") -> BranchSavings:
    """Compute saved by cooldown branches and the loss at matched budgets (module docstring).
    Only finished runs count; `runs` must hold at least one `cooldown` row."""
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    stable_ids = {m[4:] for m in as_text(done.loc[done["method"] == "cooldown", "model"])}
    stables = done[done["run_id"].isin(stable_ids)]
    cosine = done[(done["method"] == "pretrain") & (_schedule(done) == "cosine")]
    per_model, matched, points = [], [], []
    for model, group in stables.groupby(as_text(stables["model"]), sort=False):
        first = group.iloc[0]
        branches = done[as_text(done["model"]).isin([f"run:{i}" for i in group["run_id"]])]
        wsd = pd.concat([group, branches])
        budgets = sorted(set(wsd["tokens"].astype(int)))
        runs_per = max(len(group), 1)  # seeds of the stable run: totals are per seed
        own = group["tokens"].sum() + branches["cooldown_tokens"].sum()
        row = {"model": model, "non_embedding_params": int(first["non_embedding_params"]),
               "budgets": budgets, "wsd_tokens": own / runs_per,
               "cosine_tokens": float(sum(budgets))}  # fmt: skip
        row["ratio"] = row["cosine_tokens"] / row["wsd_tokens"]
        cos = cosine[(as_text(cosine["model"]) == model) & _same(cosine, first)]
        if set(budgets) <= set(cos["tokens"].astype(int)) and "wall_s" in done:
            picked = cos[cos["tokens"].astype(int).isin(budgets)]
            row["wsd_wall_s"] = wsd["wall_s"].sum() / runs_per
            row["cosine_wall_s"] = picked.groupby("tokens")["wall_s"].mean().sum()
        per_model.append(row)
        for d in budgets:
            w = wsd.loc[wsd["tokens"].astype(int) == d, metric].dropna()
            c = cos.loc[cos["tokens"].astype(int) == d, metric].dropna()
            if len(w):
                points.append({"model": model, "tokens": d, "wsd": w.mean()})
            if len(w) and len(c):
                matched.append({"model": model, "tokens": d, "wsd": w.mean(), "n_wsd": len(w),
                                "cosine": c.mean(), "n_cosine": len(c),
                                "_w": w.to_numpy(), "_c": c.to_numpy()})  # fmt: skip
    sd = _pooled_sd([m[k] for m in matched for k in ("_w", "_c")])
    for m in matched:
        m["diff"] = m["wsd"] - m["cosine"]
        m["band"] = 2 * sd * math.sqrt(1 / m["n_wsd"] + 1 / m["n_cosine"])
        m["within"] = bool(abs(m["diff"]) <= m["band"]) if np.isfinite(m["band"]) else None
        del m["_w"], m["_c"]
    table = pd.DataFrame(per_model)
    total = table["cosine_tokens"].sum() / table["wsd_tokens"].sum() if len(table) else math.nan
    return BranchSavings(
        table,
        pd.DataFrame(matched),
        float(total),
        sd,
        metric,
        pd.DataFrame(points, columns=["model", "tokens", "wsd"]),
    )


def _pooled_sd(groups: list[np.ndarray]) -> float:
    """Pooled within-group standard deviation over groups of two or more values."""
    num = sum(((g - g.mean()) ** 2).sum() for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    return float(math.sqrt(num / dof)) if dof else math.nan


def savings_text(s: BranchSavings) -> list[str]:
    """The result in words: the compute ratio and the matched-budget verdicts."""
    lines = [
        f"Cooldown branches trained {s.ratio:.2f}x fewer tokens than the cosine grid at the "
        f"same budgets ({s.per_model['wsd_tokens'].sum():,.0f} vs "
        f"{s.per_model['cosine_tokens'].sum():,.0f} over {len(s.per_model)} model sizes)."
    ]
    if "wsd_wall_s" in s.per_model and s.per_model["wsd_wall_s"].notna().any():
        t = s.per_model.dropna(subset=["wsd_wall_s"])
        lines.append(
            f"Measured wall time where every budget has a cosine run: "
            f"{t['cosine_wall_s'].sum() / t['wsd_wall_s'].sum():.2f}x less "
            f"({t['wsd_wall_s'].sum():.0f} s vs {t['cosine_wall_s'].sum():.0f} s)."
        )
    if len(s.matched):
        m = s.matched
        worst = m.loc[m["diff"].abs().idxmax()]
        line = (f"At matched budgets {s.metric} differs by {m['diff'].mean():+.4f} on average "
                f"(wsd - cosine; largest {worst['diff']:+.4f}, {worst['model']} at "
                f"{int(worst['tokens']):,} tokens)")  # fmt: skip
        if np.isfinite(s.sd):
            inside = int(m["within"].fillna(False).sum())
            line += (f"; {inside} of {len(m)} within seed noise (2 x pooled seed sd "
                     f"{s.sd:.4f} x sqrt(1/n_wsd + 1/n_cosine))")  # fmt: skip
        else:
            line += "; no repeated seeds, so no noise band"
        lines.append(line + ".")
    else:
        lines.append("No cosine run at any branch budget: no loss comparison.")
    return lines
