"""Active-learning curves and label savings: pure functions over the runs and curves tables.

An `active` run (`methods/active.py`) stores one curve point per round: `step` = labels
after the round, with the val/test accuracy, macro-F1 and loss of that round's model.

- `active_points`: one row per (run, round): setting, strategy, seed, labels, metrics. A
  strategy is the method entry's label (`variant`) when the spec gives one, else
  `params.strategy`; a setting is every other config field that varies within a strategy
  (model, lr, ...; "" when none), so strategies are compared within a setting.
- `learning_curves`: per (setting, strategy, labels) the mean over seeds with a Student-t
  95% interval (`analysis.seeds.mean_ci`, cut to [0, 1]).
- `label_savings`: the label saving at equal accuracy against the baseline (random):

      saving(L) = L_random(a_S(L)) / L

  where a_S(L) is the strategy's mean accuracy (over seeds) at L labels and L_random(a) the
  labels random sampling needs to reach accuracy a: on random's mean curve, linear in
  log(labels) between its rounds, the first point where it reaches a. 2.0 means random
  needs twice the labels for the same accuracy; 1.0 no saving; below 1 a loss. Random's
  curve is not extrapolated: where a lies above every point of it, L_random is taken as
  its last label count and the saving is a lower bound (`censored` = "more than"); where a
  lies below its first point, L_random is its first label count and the saving an upper
  bound ("at most"). At the seed round every strategy has the seed set random has, so the
  saving there is 1 (when the accuracies agree exactly, as they do for one seed set).
  Interval: 95% percentile bootstrap over seeds (drawn with replacement, the same draws
  for the strategy and random: a seed's runs share their seed set); with few seeds it is
  coarse (2 seeds give 3 distinct draws).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalelab.analysis.seeds import mean_ci, pairing_columns
from scalelab.analysis.table import as_text, require_columns, shown_models
from scalelab.errors import ScalelabError

BASELINE = "random"
UNIT = (0.0, 1.0)


def is_active(runs: pd.DataFrame) -> bool:
    """Whether the table holds finished `active` runs."""
    if "method" not in runs:
        return False
    done = runs["status"] == "done" if "status" in runs else True
    return bool(((runs["method"] == "active") & done).any())


def active_points(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (finished active run, round): run_id, setting, strategy, seed, labels,
    random (whether the run samples at random: `params.strategy`, whatever its label) and
    every curve metric. Raises ScalelabError when the tables hold no active run with a
    curve or lack a needed column."""
    require_columns(runs, ["run_id", "method", "seed"], "active learning")
    done = runs[(runs["method"] == "active")
                & ((runs["status"] == "done") if "status" in runs else True)]  # fmt: skip
    if done.empty:
        raise ScalelabError("no finished active-learning runs (method: active)")
    require_columns(curves, ["run_id", "step"], "active-learning curves")
    strategy = done["params.strategy"].astype(str) if "params.strategy" in done else "?"
    if "variant" in done:
        strategy = done["variant"].where(done["variant"].notna(), strategy).astype(str)
    done = done.assign(_strategy=strategy)
    cols = pairing_columns(done, "_strategy") if len(done) > 1 else []
    text = as_text(done[cols]) if cols else None
    if text is not None and "model" in cols:  # a model by its short name, not its path
        text["model"] = shown_models(done).values
    setting = (text.apply(lambda r: " ".join(f"{c.split('.')[-1]}={v}" for c, v in r.items()),
                          axis=1) if cols else pd.Series("", index=done.index))  # fmt: skip
    random = (done["params.strategy"] == BASELINE) if "params.strategy" in done else (
        done["_strategy"] == BASELINE)  # fmt: skip
    ids = pd.DataFrame({"run_id": done["run_id"].values, "setting": setting.values,
                        "strategy": done["_strategy"].values, "seed": done["seed"].values,
                        "random": random.values.astype(bool)})  # fmt: skip
    pts = curves.merge(ids, on="run_id", how="inner")
    if pts.empty:
        raise ScalelabError("the active-learning runs have no learning curves stored")
    pts = pts.assign(labels=pts["labels"] if "labels" in pts else pts["step"])
    return pts.sort_values(["setting", "strategy", "seed", "labels"], kind="stable").reset_index(
        drop=True
    )


def learning_curves(points: pd.DataFrame, metric: str = "test_accuracy",
                    confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
    """Per (setting, strategy, labels): n seeds, mean, std, ci_low, ci_high of `metric`
    (Student t over seeds, cut to [0, 1]). Raises ScalelabError for an unknown metric."""
    if metric not in points:
        raise ScalelabError(f"no metric {metric!r} in the active-learning curves")
    rows = []
    for (setting, strategy, labels), g in points.groupby(["setting", "strategy", "labels"],
                                                         sort=False):  # fmt: skip
        s = mean_ci(pd.to_numeric(g[metric], errors="coerce"), confidence, UNIT)
        rows.append({"setting": setting, "strategy": strategy, "labels": int(labels),
                     "n": s["n"], "mean": s["mean"], "std": s["std"], "ci_low": s["ci_low"],
                     "ci_high": s["ci_high"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["setting", "strategy", "labels", "n", "mean", "std",
                                       "ci_low", "ci_high"])  # fmt: skip


def labels_to_reach(labels, accuracy, target: float) -> tuple[float, str]:
    """(labels, censored): where a curve (labels ascending, > 0; accuracy per point) first
    reaches `target`, linear in log(labels) between points. censored: "" (exact), "at most"
    (target below the first point: its labels), "more than" (never reached: the last
    point's labels). Raises ValueError for an empty curve or labels not ascending."""
    x, y = np.asarray(labels, dtype=float), np.asarray(accuracy, dtype=float)
    if not len(x) or np.any(np.diff(x) <= 0) or x[0] <= 0:
        raise ValueError("a curve needs ascending positive label counts")
    if target <= y[0]:
        return float(x[0]), "" if target == y[0] else "at most"
    for i in range(len(x) - 1):
        if y[i] < target <= y[i + 1]:
            frac = (target - y[i]) / (y[i + 1] - y[i])
            return float(np.exp(np.log(x[i]) + frac * (np.log(x[i + 1]) - np.log(x[i])))), ""
    return float(x[-1]), "more than"


def _matrix(g: pd.DataFrame, metric: str, seeds: list) -> tuple[np.ndarray, np.ndarray]:
    """(labels [L], values [seeds, L]) of one strategy's runs, rows in `seeds` order."""
    wide = g.pivot_table(index="seed", columns="labels", values=metric, aggfunc="first")
    return wide.columns.to_numpy(dtype=float), wide.loc[seeds].to_numpy(dtype=float)


def _ratios(xs, ys, xb, yb) -> list[tuple]:
    """(L, accuracy, L_random, ratio, censored) per point (xs, ys) of a strategy's mean
    curve against random's mean curve (xb, yb)."""
    out = []
    for L, a in zip(xs, ys, strict=True):
        need, cens = labels_to_reach(xb, yb, a)
        out.append((int(L), float(a), need, need / L, cens))
    return out


def label_savings(
    points: pd.DataFrame,
    metric: str = "test_accuracy",
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (setting, strategy other than `baseline`, labels L): accuracy (the strategy's
    mean), random_labels (L_random), ratio (saving, see the module docstring), ci_low and
    ci_high (95% percentile bootstrap over the seeds both have), censored, seeds.
    baseline: the strategy compared with; None: the one strategy of the random-sampling
    runs (else "random"). A setting without the baseline strategy is left out. Raises ScalelabError when no strategy
    has a baseline to compare with."""
    if metric not in points:
        raise ScalelabError(f"no metric {metric!r} in the active-learning curves")
    pts = points.assign(**{metric: pd.to_numeric(points[metric], errors="coerce")})
    pts = pts[pts[metric].notna()]
    if baseline is None:
        names = pts.loc[pts["random"], "strategy"].unique() if "random" in pts else []
        baseline = names[0] if len(names) == 1 else BASELINE
    rng = np.random.default_rng(seed)
    rows = []
    for setting, g in pts.groupby("setting", sort=False):
        base = g[g["strategy"] == baseline]
        if base.empty:
            continue
        for strategy, s in g[g["strategy"] != baseline].groupby("strategy", sort=False):
            seeds = sorted(set(s["seed"]) & set(base["seed"]))
            if not seeds:
                continue
            xs, ms = _matrix(s, metric, seeds)
            xb, mb = _matrix(base, metric, seeds)
            point = _ratios(xs, ms.mean(0), xb, mb.mean(0))
            draws = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
            s_means, b_means = ms[draws].mean(1), mb[draws].mean(1)  # [n_boot, labels]
            boot = np.array([[r[3] for r in _ratios(xs, sd, xb, bd)]
                             for sd, bd in zip(s_means, b_means, strict=True)])  # fmt: skip
            for j, (L, acc, need, ratio, cens) in enumerate(point):
                lo, hi = np.percentile(boot[:, j], [2.5, 97.5]) if len(seeds) > 1 else (
                    np.nan, np.nan)  # fmt: skip
                rows.append({"setting": setting, "strategy": strategy, "labels": L,
                             "accuracy": acc, "random_labels": need, "ratio": ratio,
                             "ci_low": float(lo), "ci_high": float(hi), "censored": cens,
                             "seeds": len(seeds)})  # fmt: skip
    if not rows:
        raise ScalelabError(
            f"no strategy to compare with {baseline!r}: add `{{name: active, strategy: "
            f"{baseline}}}` runs with the same settings and seeds"
        )
    return pd.DataFrame(rows)
