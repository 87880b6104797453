"""Methods side by side over several metrics: the data of a radar (spider) chart.

Pure functions over a runs table (one row per run: `model`, `method` [, `variant`],
`seed`, `task.*`, `params.*`, metrics). Per method entry (its label, `variant`, else its
name) one cell is shown: a cell is one model and configuration, its value of a metric the
mean over its replicates (seeds, `task.draw`, `task.data_seed`). A method with several
cells shows the one with the highest mean validation accuracy (else validation macro-F1):
selection on validation, never on test.

The axes, in order, where at least two methods have values:
  * the test quality metrics accuracy and macro-F1; their direction is the declared one
    (`metrics.metric_def`);
  * trainable parameters: fewer is better (a size: `metrics.py` declares no direction for
    sizes, so this module states the reading of an efficiency axis);
  * speed: training throughput `examples_per_s` (more is better), else wall-clock seconds
    `wall_s` (fewer is better), whichever more methods report (ties: throughput).

Each axis is normalised to 0..1 across the methods shown, the better end at 1 (the rim):
score = (v - worst) / (best - worst), on log10 values for the count axes (parameters,
throughput, seconds: they span orders of magnitude) when every value is positive, else
linear. Every method scores 1 on an axis where all shown values are equal. A method
without a value on an axis has no score there (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalelab.analysis.seeds import label_columns
from scalelab.analysis.table import as_text, drop_implied, field_text, shown_models

REPLICATES = ("seed", "task.draw", "task.data_seed")
AXES = ("task.train_size", "task.k_per_class", "task.augment.ratio")  # always in a cell's name
SELECT_BY = ("val_accuracy", "val_macro_f1")
QUALITY = ("test_accuracy", "test_macro_f1")
# (metric, higher_is_better, log scale) for the axes that carry no declared direction.
PARAMS_AXIS = ("trainable_params", False, True)
SPEED_AXES = (("examples_per_s", True, True), ("wall_s", False, True))


@dataclass(frozen=True)
class Axis:
    """One spoke: the metric, which end is better, and whether scores use log10 values."""

    metric: str
    higher_is_better: bool
    log: bool

    @property
    def label(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        return f"{self.metric} ({better} is better)"


@dataclass(frozen=True)
class MethodProfile:
    """raw: one row per method (method, cell, then each axis's metric: the cell's mean);
    scores: the same rows with each axis normalised to 0..1 (1: the best); notes say which
    methods were left out and why. `drawable`: at least 2 methods and 3 axes."""

    axes: tuple[Axis, ...]
    raw: pd.DataFrame
    scores: pd.DataFrame
    chosen_by: str
    notes: tuple[str, ...] = field(default=())

    @property
    def drawable(self) -> bool:
        return len(self.raw) >= 2 and len(self.axes) >= 3


def normalise(values: pd.Series, higher_is_better: bool, log: bool) -> pd.Series:
    """`values` scored 0..1 across the entries, 1 at the better end (see the module);
    NaN stays NaN; all-equal values all score 1."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    finite = v[np.isfinite(v)]
    if log and len(finite) and (finite > 0).all():
        v = np.log10(v.where(v > 0))
        finite = v[np.isfinite(v)]
    if finite.empty:
        return v
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        return v.where(~np.isfinite(v), 1.0)
    score = (v - lo) / (hi - lo)
    return score if higher_is_better else 1.0 - score


def cell_columns(runs: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """The config columns that tell one method's cells apart: varying ones (replicates,
    `params.keep_layers`, part of the shown model, and `exclude` aside) that take two or
    more values for one model and method entry, less those the others already imply (a
    recipe that changes with the data size: the few-shot stage's epochs; EDA's alphas
    beside its ratio); the data axes (`AXES`) always stay. A setting only one method has
    (LoRA's rank, a zero-shot template) names no cell: the method's name already does."""
    arm = "variant" if "variant" in runs else "method"
    skip = (*REPLICATES, "params.keep_layers", *exclude)
    cols = label_columns(runs, exclude=skip)
    if not cols:
        return []
    keyed = as_text(runs[cols]).assign(_model=as_text(shown_models(runs)).values,
                                       _arm=as_text(runs[arm]).values)  # fmt: skip
    within = keyed.groupby(["_model", "_arm"])[cols].nunique()
    kept = [c for c in cols if (within[c] > 1).any()]
    droppable = sorted((k for k in kept if k not in AXES), key=lambda k: k.startswith("params."))
    kept = drop_implied(keyed, ["_model", "_arm"], kept, droppable[::-1])  # params first
    return [c for c in cols if c in kept]


def cell_names(runs: pd.DataFrame, models=None, exclude: tuple[str, ...] = ()) -> pd.Series:
    """Per row, its cell as a reader names it: the shown model (`table.shown_models`: a
    cut model with its blocks), the method entry, then `name=value` of `cell_columns`
    (`augment.ratio=0.5` for the augmentation's settings)."""
    arm = "variant" if "variant" in runs else "method"
    cols = cell_columns(runs, exclude)
    shown = shown_models(runs, models or None)

    def text(c: str, v) -> str | None:
        t = field_text(c, v, models or {})
        return f"augment.{t}" if t and c.startswith("task.augment.") else t

    fields = runs.apply(lambda r: [text(c, r.get(c)) for c in cols], axis=1)
    parts = [f"{m} {a}" + "".join(f" {t}" for t in f if t)
             for m, a, f in zip(shown, as_text(runs[arm]), fields, strict=True)]  # fmt: skip
    return pd.Series(parts, index=runs.index, dtype=object)


def _cells(runs: pd.DataFrame, models) -> pd.DataFrame:
    """Per cell (model, method entry, varying config except replicates): the mean of every
    numeric metric column, the method entry as `method` and the cell's name as `cell`."""
    arm = "variant" if "variant" in runs else "method"
    names = cell_names(runs, models)
    keyed = runs.assign(_cell=names.values, _arm=as_text(runs[arm]).values)
    metrics = [c for c in (*QUALITY, *SELECT_BY, PARAMS_AXIS[0], *(s[0] for s in SPEED_AXES))
               if c in runs]  # fmt: skip
    for c in metrics:
        keyed[c] = pd.to_numeric(keyed[c], errors="coerce")
    cells = keyed.groupby(["_arm", "_cell"], sort=False)[metrics].mean().reset_index()
    return cells.rename(columns={"_arm": "method", "_cell": "cell"})


def _best(cells: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The chosen cell of each method (see the module)."""
    rows = []
    for method, sub in cells.groupby("method", sort=False):
        by = next((c for c in SELECT_BY if c in sub and sub[c].notna().any()), None)
        if by is not None:
            rows.append(sub.loc[sub[by].idxmax()])
        elif len(sub) == 1:
            rows.append(sub.iloc[0])
        else:
            notes.append(f"{method}: {len(sub)} cells and no validation accuracy to choose "
                         "one by: left out of the radar")  # fmt: skip
    return pd.DataFrame(rows).reset_index(drop=True)


def _axes(best: pd.DataFrame, methods) -> list[Axis]:
    from scalelab.metrics import metric_def

    def count(metric: str) -> int:
        return int(best[metric].notna().sum()) if metric in best else 0

    axes = []
    for metric in QUALITY:
        defn = metric_def(metric, methods)
        if count(metric) >= 2 and defn is not None and defn.higher_is_better is not None:
            axes.append(Axis(metric, bool(defn.higher_is_better), False))
    if count(PARAMS_AXIS[0]) >= 2:
        axes.append(Axis(*PARAMS_AXIS))
    speed = max(SPEED_AXES, key=lambda s: count(s[0]))  # the first on a tie
    if count(speed[0]) >= 2:
        axes.append(Axis(*speed))
    return axes


def method_profile(runs: pd.DataFrame, models=None) -> MethodProfile:
    """The radar's data for the finished runs of `runs` (see the module docstring).

    runs: a runs table with `model` and `method`; models: run-product names
    (`table.model_names`) for the cells' names. Never raises for missing metrics: a
    profile with fewer than 2 methods or 3 axes is not `drawable`.
    """
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    notes: list[str] = []
    if done.empty:
        return MethodProfile((), pd.DataFrame(), pd.DataFrame(), "", ())
    best = _best(_cells(done, models or {}), notes)
    methods = list(dict.fromkeys(done["method"]))
    axes = tuple(_axes(best, methods)) if len(best) else ()
    cols = ["method", "cell", *(a.metric for a in axes)]
    raw = best[cols].reset_index(drop=True) if len(best) else pd.DataFrame(columns=cols)
    scores = raw.copy()
    for a in axes:
        scores[a.metric] = normalise(raw[a.metric], a.higher_is_better, a.log)
    chosen = ("per method, the cell (model and configuration) with the highest mean "
              "validation accuracy over its seeds (validation macro-F1 where a method has no "
              "validation accuracy; a method's only cell as it is); values: means over seeds")  # fmt: skip
    return MethodProfile(axes, raw, scores, chosen, tuple(notes))
