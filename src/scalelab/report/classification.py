"""The report's classification section: accuracy and macro-F1 per configuration with seed
intervals, the worst class of each, per-class F1, the best run's confusion matrix, and
validation-accuracy learning curves.

Reads the runs table, each run's eval.json (per-class reports and confusion matrices on
validation and test) and the curves; the statistics come from `analysis.seeds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.seeds import label_columns, seed_summary
from scalelab.metrics import metric_def
from scalelab.report import curves as curve_section
from scalelab.report import html
from scalelab.report import plots_classification as plots

FALLBACK = ("test_accuracy", "test_macro_f1")  # a CSV without declared methods


def headline(runs: pd.DataFrame) -> list[str]:
    """The metrics the section summarises, from the metric contract: the bounded (in
    [0, 1]) test metrics the runs' methods declare and have values for (accuracy,
    macro-F1); for undeclared methods, `test_accuracy` and `test_macro_f1` if present."""
    from scalelab.metrics import metrics_for, split_of

    filled = {c for c in runs.columns if runs[c].notna().any()}
    methods = runs["method"].dropna() if "method" in runs else []
    declared = [
        d.name
        for d in metrics_for(methods, skip_unknown=True)
        if d.bounds is not None and split_of(d.name) == "test" and d.name in filled
    ]
    return declared or [c for c in FALLBACK if c in filled]


def is_classification(runs: pd.DataFrame) -> bool:
    """Whether the runs report bounded test metrics (accuracies): see `headline`."""
    return bool(headline(runs))


def config_labels(runs: pd.DataFrame, models: Mapping[str, str] | None = None) -> pd.Series:
    """One name per configuration (what differs between runs, seeds aside): model and
    method always, plus each other varying field as `name=value` (lr=0.0001)."""
    models = models or {}
    extra = label_columns(runs)
    return runs.apply(lambda r: table.run_name(r, extra, models), axis=1)


def _summaries(runs: pd.DataFrame, planned: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """metric -> seed summary per configuration (with a `label` column), for the headline
    metrics the runs have; intervals cut to each metric's bounds."""
    out = {}
    methods = runs["method"] if "method" in runs else None
    for metric in headline(runs):
        defn = metric_def(metric, methods)
        s = seed_summary(runs, metric, bounds=defn.bounds if defn else None, planned=planned,
                         by="_label")  # fmt: skip
        out[metric] = s.rename(columns={"_label": "label"})
    return out


def per_class_table(runs: pd.DataFrame, reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (run, class) of the test split: label, run_id, seed, class, f1, support.
    Classes in the dataset's label order (eval.json's `labels`, the confusion matrix's
    order; its `per_class` object is stored with sorted keys)."""
    rows = []
    for _, r in runs.iterrows():
        rep = reports.get(str(r["run_id"]), {}).get("test")
        if not rep:
            continue
        stats = rep["per_class"]
        order = [c for c in rep.get("labels", ()) if c in stats] + [
            c for c in stats if c not in rep.get("labels", ())]  # fmt: skip
        for cls in order:
            st = stats[cls]
            rows.append({"label": r["_label"], "run_id": r["run_id"], "seed": r.get("seed"),
                         "class": cls, "f1": st["f1"], "support": st["support"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["label", "run_id", "seed", "class", "f1", "support"])


def worst_classes(per_class: pd.DataFrame) -> dict[str, str]:
    """label -> "ABBR: F1 0.333 (0 in 2 of 3 seeds)": the class with the lowest mean test
    F1 over the configuration's seeds."""
    out = {}
    for label, sub in per_class.groupby("label", sort=False):
        means = sub.groupby("class", sort=False)["f1"].mean()
        cls = means.idxmin()
        f1 = sub.loc[sub["class"] == cls, "f1"]
        zeros = int((f1 == 0).sum())
        extra = f" (F1 0 in {zeros} of {len(f1)} seed{'s' * (len(f1) != 1)})" if zeros else ""
        support = int(sub.loc[sub["class"] == cls, "support"].iloc[0])
        out[label] = f"{cls} (n={support}): F1 {means[cls]:.3f}{extra}"
    return out


def _table_rows(summaries: dict[str, pd.DataFrame], worst: dict[str, str]) -> list[dict]:
    rows: dict[str, dict] = {}
    for metric, s in summaries.items():
        for _, r in s.iterrows():
            row = rows.setdefault(r["label"], {"configuration": r["label"]})
            ci = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["n"] > 1 else "n/a"
            row[metric] = f"{r['mean']:.4f} ± {r['std']:.4f}" if r["n"] > 1 else f"{r['mean']:.4f}"
            row[f"{metric} 95% CI"] = ci
            row["seeds"] = r["seed_note"] or f"{r['n']} seed{'s' * (r['n'] != 1)}"
    for label, text in worst.items():
        if label in rows:
            rows[label]["worst class (test)"] = text
    return list(rows.values())


def _best_run(runs: pd.DataFrame) -> pd.Series | None:
    """The run with the highest validation accuracy (selection on validation, never test)."""
    if "val_accuracy" not in runs or not runs["val_accuracy"].notna().any():
        return None
    return runs.loc[pd.to_numeric(runs["val_accuracy"]).idxmax()]


def classification_section(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    reports: Mapping[str, Mapping[str, Any]],
    planned: pd.DataFrame | None,
    out: Path,
    prefix: str,
    models: Mapping[str, str] | None = None,
) -> str:
    """The section's HTML; its PNGs are written to `out` with names starting `prefix`."""
    runs = runs.assign(_label=config_labels(runs, models))
    if planned is not None and len(planned):
        planned = planned.assign(_label=config_labels(planned, models))
    summaries = _summaries(runs, planned)
    per_class = per_class_table(runs, reports)
    worst = worst_classes(per_class) if len(per_class) else {}
    classes = bool(len(per_class))  # classifiers; math answers have no classes
    kept = ("Test metrics use the weights with the best validation accuracy." if classes else
            "Test metrics use the weights each method keeps (see its select_by).")  # fmt: skip
    parts = [
        "<p>Mean ± standard deviation over seeds; 95% interval of the mean (Student t, cut to "
        "[0, 1]: an accuracy cannot leave it, so the cut interval covers the mean as often "
        f"as the uncut one). {kept}</p>",
        html.table(
            _table_rows(summaries, worst),
            [
                "configuration",
                *[c for m in summaries for c in (m, f"{m} 95% CI")],
                "seeds",
                *(["worst class (test)"] if classes else []),
            ],
        ),  # fmt: skip
    ]
    if summaries:
        values = {m: runs[["_label", m]].rename(columns={"_label": "label", m: "value"})
                  for m in summaries}  # fmt: skip
        png = plots.plot_metric_intervals(summaries, values, out / f"{prefix}metrics.png")
        parts.append(html.figure(png, f"{', '.join(summaries)} per configuration: mean "
                                 "(diamond), 95% interval (bar), each seed (dots)."))  # fmt: skip
    if len(per_class):
        by_run, order = curve_section.run_colors(runs), curve_section.size_order(runs)
        label_of = dict(zip(runs["run_id"].astype(str), runs["_label"], strict=True))
        configs = list(dict.fromkeys(label_of[r] for r in order))
        colors = {label_of[r]: c for r, c in by_run.items()}
        per_class = per_class.sort_values("label", key=lambda s: s.map(configs.index),
                                          kind="stable")  # fmt: skip
        png = plots.plot_per_class_f1(per_class, out / f"{prefix}per_class_f1.png",
                                      colors=colors)  # fmt: skip
        parts.append(html.figure(png, "Per-class test F1 (bars: mean over seeds; dots: one "
                                 "seed each; n: test examples of the class)."))  # fmt: skip
    best = _best_run(runs)
    rep = reports.get(str(best["run_id"]), {}).get("test") if best is not None else None
    if rep:
        title = f"confusion matrix (test) of the best run: {best['_label']} seed {best['seed']}"
        png = plots.plot_confusion(rep["confusion_matrix"], rep["labels"],
                                   out / f"{prefix}confusion.png")  # fmt: skip
        parts.append(html.figure(png, f"{title}; the best run has the highest validation "
                                 f"accuracy ({best['val_accuracy']:.4f})."))  # fmt: skip
    mine = curves[curves["run_id"].isin(runs["run_id"])] if curves is not None else None
    if mine is not None and "val_accuracy" in mine and mine["val_accuracy"].notna().any():
        parts.append(curve_section.classification_curves(runs, mine, out, prefix))
    return "".join(parts)
