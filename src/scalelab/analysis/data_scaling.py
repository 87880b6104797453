"""Data scaling: a metric against the number of labelled training examples, per model.

Pure functions over a runs table (one row per run: `model`, `method` [, `variant`],
`seed`, `task.*`, `params.*`, metrics). The number of labelled examples n of a run is its
`train_examples` metric (what it trained on: a `train_size` subsample, a `k_per_class`
draw, a half). Runs of one curve differ only in n and in replicates: `seed`, `task.draw`
and `task.data_seed` (another draw of the examples). A curve is one model (as
`table.shown_models` names it) and method entry (its label, `variant`), split further by
any other config column that differs between runs at the same n (an lr sweep); a column
that changes only with n (more epochs for the few-shot runs) is part of each point's
recipe and said in a note.

Per point: the mean over its runs and a Student-t 95% interval (`seeds.mean_ci`, cut to
the metric's bounds). Per curve, the law of the error against n,

    err(n) = A * n^(-alpha) + E,

with err = 1 - metric for a higher-is-better metric in [0, 1] (accuracy), else the metric
itself (a loss): generalization error falls as a power law of the training-set size
towards an irreducible error E (Hestness et al. 2017, "Deep Learning Scaling is
Predictable, Empirically", arXiv 1712.00409, Sec. 2). It is fitted on every run (not the
means) by `api.fit_table` (`fitting.fit_power_law`), with its percentile bootstrap over
runs, i.e. over seeds and draws (`uncertainty.bootstrap`), a holdout of the largest n when
there are 5 or more distinct n, and the identifiability flags of `identify.flags`.

The point of diminishing returns (`diminishing_returns`): the smallest n at which doubling
the labelled examples is predicted to improve the metric by less than `min_gain` (in the
metric's units; 0.01 = one point of accuracy). Under the law the gain of a doubling is
err(n) - err(2n) = A (1 - 2^-alpha) n^-alpha, which falls with n, so

    n* = (A (1 - 2^-alpha) / min_gain)^(1 / alpha)       (alpha > 0, A > 0);

with alpha <= 0 or A <= 0 no doubling gains anything and n* = 0. E does not enter. Its
interval is the percentile interval of n* over the bootstrap refits. The data bound it
when that interval lies inside the measured range of n; otherwise the answer says where it
falls (past the largest n: an extrapolation; below the smallest n: every measured doubling
already gains less) and that the data do not bound it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis.seeds import label_columns, mean_ci
from scalelab.analysis.table import (
    as_text,
    drop_implied,
    field_text,
    require_columns,
    shown_models,
)
from scalelab.errors import ScalelabError

LABELS = "train_examples"  # the metric that counts a run's labelled training examples
DATA_AXES = ("task.train_size", "task.k_per_class")
REPLICATES = ("seed", "task.draw", "task.data_seed")
MIN_DISTINCT_FOR_HOLDOUT = 5  # distinct n: the refit without the largest keeps 4


@dataclass(frozen=True)
class Returns:
    """The point of diminishing returns of one curve (see the module docstring).

    n: n* in labelled examples (0: no doubling gains min_gain; inf: beyond any float);
    lo / hi: its 95% percentile interval over bootstrap refits (NaN without refits);
    data_min / data_max: the measured range of n; metric_at: the law's metric at n* (NaN
    when n* is 0 or inf).
    """

    min_gain: float
    n: float
    lo: float
    hi: float
    data_min: float
    data_max: float
    metric_at: float

    @property
    def where(self) -> str:
        """ "within", "beyond" (past the largest n measured) or "below" (the smallest)."""
        if self.n > self.data_max:
            return "beyond"
        return "below" if self.n < self.data_min else "within"

    @property
    def bounded(self) -> bool:
        """Whether the data bound n*: its interval lies inside the measured range."""
        return bool(np.isfinite(self.lo) and self.data_min <= self.lo
                    and self.hi <= self.data_max)  # fmt: skip

    def text(self) -> str:
        """One line: n*, its interval and what the data say about it."""
        ci = "" if not np.isfinite(self.lo) else f" [{_count(self.lo)}, {_count(self.hi)}]"
        head = (f"doubling gains < {self.min_gain:g} from n* = {_count(self.n)}{ci} labelled "
                f"examples")  # fmt: skip
        span = f"{_count(self.data_min)}..{_count(self.data_max)}"
        if self.where == "beyond":
            tail = f"beyond the measured {span}: an extrapolation, not bounded by the data"
        elif self.where == "below":
            tail = (f"below the measured {span}: every measured doubling already gains "
                    "less; not bounded by the data")  # fmt: skip
        elif not np.isfinite(self.lo):
            tail = f"within the measured {span}; no bootstrap interval"
        elif self.bounded:
            tail = f"within the measured {span}, interval included: the data bound it"
        else:
            tail = f"within the measured {span}, but its interval is not: not bounded by the data"
        return f"{head}: {tail}"

    def as_dict(self) -> dict[str, Any]:
        return {"min_gain": self.min_gain, "n": self.n, "lo": self.lo, "hi": self.hi,
                "data_min": self.data_min, "data_max": self.data_max,
                "metric_at": self.metric_at, "where": self.where, "bounded": self.bounded,
                "text": self.text()}  # fmt: skip


def _count(v: float) -> str:
    return f"{v:,.0f}" if np.isfinite(v) and v >= 1 else f"{v:.3g}"


def doubling_gain(n: np.ndarray | float, params: dict[str, float]) -> np.ndarray | float:
    """err(n) - err(2n) = A (1 - 2^-alpha) n^-alpha: the improvement of the metric a
    doubling of the labelled examples buys at n under `params` (A, alpha[, E]); n > 0."""
    a, alpha = params["A"], params["alpha"]
    return a * -np.expm1(-alpha * math.log(2.0)) * np.asarray(n, float) ** (-alpha)


def diminishing_point(params: dict[str, float], min_gain: float) -> float:
    """n* = (A (1 - 2^-alpha) / min_gain)^(1/alpha), computed in logs (inf past a float's
    range); 0 when alpha <= 0 or A <= 0 (no doubling gains). Raises ValueError for
    min_gain <= 0."""
    if not min_gain > 0:
        raise ValueError(f"min_gain must be positive (got {min_gain!r})")
    a, alpha = params["A"], params["alpha"]
    factor = -math.expm1(-alpha * math.log(2.0))  # 1 - 2^-alpha, exact for a tiny alpha
    if alpha <= 0 or a <= 0 or factor <= 0:
        return 0.0
    log_n = (math.log(a) + math.log(factor) - math.log(min_gain)) / alpha
    return math.exp(log_n) if log_n < 709.0 else math.inf


def diminishing_returns(
    fit: Any, boot: Any, min_gain: float, data_min: float, data_max: float, higher: bool
) -> Returns:
    """`Returns` of a power-law fit (a FitResult) and its bootstrap (or None)."""
    n = diminishing_point(fit.params, min_gain)
    lo = hi = math.nan
    if boot is not None and not boot.too_few:
        draws = np.array([diminishing_point(p, min_gain) for p in boot.param_dicts()])
        big = np.finfo(float).max  # inf - inf would make an interpolated percentile NaN
        q = np.percentile(np.minimum(draws, big), [2.5, 97.5])
        lo, hi = (math.inf if v >= big else float(v) for v in q)
    err = float(fit.predict(np.array([n]))[0]) if 0 < n < math.inf else math.nan
    metric_at = 1.0 - err if higher else err
    return Returns(min_gain, n, lo, hi, data_min, data_max, metric_at)


@dataclass(frozen=True)
class Curve:
    """One curve: `points` has one row per n (n, mean, std, ci_low, ci_high, runs, seeds,
    draws, few_shot: True where every run there drew k per class); `fit` a `api.GroupFit`
    or None (then `why_not` says why); `returns` the diminishing-returns point or None."""

    model: str
    method: str
    setting: str
    size: float
    points: pd.DataFrame
    fit: Any = None
    returns: Returns | None = None
    why_not: str = ""

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.model, self.method, self.setting) if p)

    def predict(self, n: np.ndarray, higher: bool) -> np.ndarray:
        """The fitted law's metric at n (NaN without a fit)."""
        if self.fit is None:
            return np.full(len(n), np.nan)
        err = self.fit.fit.predict(np.asarray(n, float))
        return 1.0 - err if higher else err


@dataclass(frozen=True)
class DataScaling:
    """Every curve of a runs table, smallest model first, and notes for a reader."""

    metric: str
    higher_is_better: bool
    min_gain: float
    curves: tuple[Curve, ...]
    notes: tuple[str, ...] = field(default=())

    def grid(self) -> pd.DataFrame:
        """Labels vs parameters side by side: one row per curve (model, method, size), one
        column per n (the mean metric there; NaN where the curve has no point)."""
        ns = sorted({int(n) for c in self.curves for n in c.points["n"]})
        rows = []
        for c in self.curves:
            means = dict(zip(c.points["n"].astype(int), c.points["mean"], strict=True))
            rows.append({"model": c.model, "method": c.method, "setting": c.setting,
                         "size": c.size, **{n: means.get(n, np.nan) for n in ns}})  # fmt: skip
        return pd.DataFrame(rows)

    def as_dict(self) -> dict[str, Any]:
        curves = []
        for c in self.curves:
            curves.append({"model": c.model, "method": c.method, "setting": c.setting,
                           "size": c.size, "points": c.points.to_dict("records"),
                           "fit": c.fit.as_dict() if c.fit is not None else None,
                           "not_fitted": c.why_not or None,
                           "diminishing_returns": c.returns.as_dict() if c.returns else None})  # fmt: skip
        return {"metric": self.metric, "higher_is_better": self.higher_is_better,
                "min_gain": self.min_gain, "curves": curves, "notes": list(self.notes)}  # fmt: skip


def varies_data(runs: pd.DataFrame) -> bool:
    """Whether the finished runs vary `task.train_size` or `task.k_per_class` and report
    how many examples they trained on (the report's data-scaling section). Only the runs
    that report it count: a pretraining stage before a fine-tuning one (no train_size) does
    not make the fine-tuning runs' one train_size "vary"."""
    if LABELS not in runs or not runs[LABELS].notna().any():
        return False
    runs = runs[runs[LABELS].notna()]
    return any(c in runs and as_text(runs[c]).nunique() > 1 for c in DATA_AXES)


def _curve_axes(runs: pd.DataFrame, arm: str) -> tuple[list[str], list[str]]:
    """(columns that split curves, columns that only change with n): see the module."""
    cols = [c for c in label_columns(runs) if c not in DATA_AXES + REPLICATES]
    keyed = as_text(runs[cols]) if cols else pd.DataFrame(index=runs.index)
    curve = [shown_models(runs), runs[arm]]
    split = [c for c in cols if (keyed[c].groupby([*curve, runs[LABELS]]).nunique() > 1).any()]
    recipe = [c for c in cols if c not in split and (keyed[c].groupby(curve).nunique() > 1).any()]
    return split, recipe


def _points(rows: pd.DataFrame, metric: str, bounds) -> pd.DataFrame:
    """Per n: mean, std and t interval of `metric` over the runs there, and their counts."""
    out = []
    for n, g in rows.groupby(LABELS, sort=True):
        s = mean_ci(pd.to_numeric(g[metric], errors="coerce"), 0.95, bounds)
        draws = g["task.draw"].fillna(0).nunique() if "task.draw" in g else 1
        few = "task.k_per_class" in g and bool(g["task.k_per_class"].notna().all())
        out.append({"n": float(n), "mean": s["mean"], "std": s["std"], "ci_low": s["ci_low"],
                    "ci_high": s["ci_high"], "runs": s["n"], "seeds": g["seed"].nunique(),
                    "draws": int(draws), "few_shot": few})  # fmt: skip
    return pd.DataFrame(out)


def _fit_curve(rows, metric, higher, min_gain, n_boot, seed):
    """(GroupFit, Returns) of one curve's runs, or (None, None, why) when it cannot fit."""
    from scalelab.analysis.api import FitSpec, fit_table

    distinct = rows[LABELS].nunique()
    at_top = int((rows[LABELS] == rows[LABELS].max()).sum())
    hold = at_top if distinct >= MIN_DISTINCT_FOR_HOLDOUT else 0
    spec = FitSpec("power", LABELS, metric, bootstrap=n_boot, holdout=hold, seed=seed,
                   higher_is_better=higher)  # fmt: skip
    try:
        fit = fit_table(rows, spec).groups[0]
    except ScalelabError as err:
        return None, None, str(err)
    n = rows[LABELS].astype(float)
    returns = diminishing_returns(fit.fit, fit.boot, min_gain, n.min(), n.max(), higher)
    # The shared sign flag speaks of model size N; here the size is the examples n.
    flags = tuple(replace(f, message=f.message.replace("fall with N;", "fall with n (labelled "
                                                       "examples);")) for f in fit.flags)  # fmt: skip
    return replace(fit, flags=flags), returns, ""


def _named_by(runs: pd.DataFrame, base: list[str], split: list[str]) -> list[str]:
    """The columns that name curves apart, fewest first: `stage` where the runs span
    several stages (a staged experiment's sizes / fewshot / augment are curves a reader
    knows by those names), then each split column unless the others already tell the same
    curves apart (EDA's alphas beside its ratio; the few-shot stage's epochs beside
    `stage`). Params are dropped before task fields."""
    kept = list(split)
    if "stage" in runs and as_text(runs["stage"]).nunique() > 1:
        kept = ["stage", *kept]
    order = sorted((k for k in kept if k != "stage"), key=lambda k: not k.startswith("params."))
    return drop_implied(as_text(runs[base + kept]), base, kept, order)


def _field(column: str, value: Any) -> str:
    """`name=value` of a curve's setting; its stage as `(stage)`; nothing when missing
    (a run without that setting: no augmentation, no strategy)."""
    if column == "stage":
        return f"({value})" if isinstance(value, str) and value else ""
    return field_text(column, value, {}) or ""


def data_scaling(
    runs: pd.DataFrame,
    metric: str,
    *,
    higher_is_better: bool,
    bounds: tuple[float, float] | None = None,
    min_gain: float = 0.01,
    n_boot: int = 200,
    seed: int = 0,
    size: str = "non_embedding_params",
) -> DataScaling:
    """Every curve of `metric` against labelled examples (see the module docstring).

    runs: a scalelab runs table (finished runs are used); bounds: the metric's range (an
    accuracy's (0, 1)), which cuts the points' intervals; min_gain: > 0, in the metric's
    units; n_boot: bootstrap refits per curve (0: no intervals on the fit); size: the
    column that orders models. Raises ScalelabError for a missing column, no run with a
    value of `metric`, a bad min_gain, or a higher-is-better metric outside [0, 1].
    """
    if not min_gain > 0 or not math.isfinite(min_gain):
        raise ScalelabError(f"--min-gain must be a positive number (got {min_gain!r})")
    require_columns(runs, ["model", "method", "seed", LABELS], "data scaling")
    if metric not in runs.columns:
        raise ScalelabError(f"no metric {metric!r} in the results (have: {_metrics(runs)})")
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    values = pd.to_numeric(done[metric], errors="coerce")
    done = done[values.notna() & pd.to_numeric(done[LABELS], errors="coerce").notna()].copy()
    if done.empty:
        raise ScalelabError(f"no finished run has both {metric!r} and {LABELS!r}")
    done[metric] = pd.to_numeric(done[metric])
    done[LABELS] = pd.to_numeric(done[LABELS])
    if higher_is_better and not done[metric].between(0, 1).all():
        raise ScalelabError(f"{metric}: a higher-is-better metric must lie in [0, 1] to be "
                            "fitted as an error rate 1 - metric")  # fmt: skip
    arm = "variant" if "variant" in done else "method"
    split, recipe = _curve_axes(done, arm)
    notes = [f"{c} changes with the number of examples, never between runs at one n: part "
             "of each point's recipe, not a curve of its own" for c in recipe]  # fmt: skip
    done = done.assign(_model=shown_models(done).values)
    split = _named_by(done, ["_model", arm], split)
    keys = ["_model", arm, *split]
    curves = []
    for key, rows in done.groupby([as_text(done[k]) for k in keys], sort=False):
        setting = " ".join(t for c in split if (t := _field(c, rows[c].iloc[0])))
        sizes = (
            pd.to_numeric(rows[size], errors="coerce") if size in rows else pd.Series(dtype=float)
        )
        fit, returns, why = _fit_curve(rows, metric, higher_is_better, min_gain, n_boot, seed)
        curves.append(Curve(key[0], key[1], setting,
                            float(sizes.dropna().iloc[0]) if sizes.notna().any() else math.nan,
                            _points(rows, metric, bounds), fit, returns, why))  # fmt: skip
    # Smallest model first; within a model, the runs' order (a staged spec's stage order).
    curves.sort(key=lambda c: (math.isnan(c.size), c.size))
    return DataScaling(metric, higher_is_better, min_gain, tuple(curves), tuple(notes))


def resolve_metric(runs: pd.DataFrame, metric: str | None) -> tuple[str, bool, Any]:
    """(metric, higher_is_better, bounds): `metric`, or test_accuracy, else the methods'
    first test-split quality metric with values. Raises ScalelabError for a metric no
    method declares as a quality metric (a size or a cost has no direction to fit)."""
    from scalelab.metrics import default_metric, metric_def

    methods = list(dict.fromkeys(runs["method"])) if "method" in runs else []
    filled = [c for c in runs.columns if runs[c].notna().any()]
    if metric is None:
        metric = "test_accuracy" if "test_accuracy" in filled else default_metric(
            methods, "test", available=filled)  # fmt: skip
        if metric is None:
            raise ScalelabError(
                "no quality metric with values in the results: name one with --metric"
            )
    if metric not in runs.columns:
        raise ScalelabError(f"no metric {metric!r} in the results (have: {_metrics(runs)})")
    defn = metric_def(metric, methods)
    if defn is None or defn.higher_is_better is None:
        raise ScalelabError(f"--metric {metric}: not a quality metric (no declared direction)")
    return metric, bool(defn.higher_is_better), defn.bounds


def _metrics(runs: pd.DataFrame) -> str:
    from scalelab.analysis.seeds import _metric_names
    from scalelab.analysis.table import name_list

    return name_list(_metric_names(runs).split(", "))
