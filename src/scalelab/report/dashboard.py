"""The report's data-centric dashboard, and the box plots and radar of a classification
stage.

A data-centric experiment is a classification one whose runs vary the labelled data
(`task.train_size`, `task.k_per_class`), augment it (`task.augment`), score models with
no labelled example (zero-shot `evaluate` runs) or choose the examples to label (`active`
runs). Its dashboard is one figure, panels present only where their data are:

  * accuracy vs labelled examples (log x): the data-scaling curves (means, bands, the law
    fitted by `analysis.data_scaling`, few-shot draws as open squares) and each zero-shot
    model as a dotted horizontal line;
  * accuracy vs augmentation ratio, with 95% intervals over seeds;
  * active learning per query strategy, random sampling dashed (only where
    `method == "active"` runs with their round curves exist; `analysis.active`);
  * the radar of methods over metrics (`analysis.method_profile`);
  * box plots over seeds and draws per cell, smallest model first.

Panels are built by the functions in `PANELS` (key -> build(runs, models, curves) ->
Panel or None); `register_panel` adds or replaces one (a method's report module can draw its own).
Tables and statistics are prepared here; `plots_dashboard` only draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.analysis.data_scaling import LABELS, varies_data
from scalelab.analysis.method_profile import MethodProfile, cell_names, method_profile
from scalelab.analysis.seeds import mean_ci
from scalelab.analysis.table import as_text, shown_models
from scalelab.errors import ScalelabError
from scalelab.report import html
from scalelab.report import plots_dashboard as plots
from scalelab.report.plots_dashboard import Panel

ACTIVE = "active"  # the active-learning method's name (its runs get a panel of their own)
ZERO_SHOT = "evaluate"
AUGMENT = "task.augment."
RATIO = "task.augment.ratio"
MAX_BOX_CELLS = 12  # more cells than this: the dashboard keeps each curve's largest n
SIZE_COLUMNS = ("non_embedding_params", "total_params")

# build(runs, models, curves) -> Panel or None; curves: the learning-curve table or None
Build = Callable[[pd.DataFrame, Mapping[str, str], pd.DataFrame | None], Panel | None]


def _done(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "done"] if "status" in runs else runs


def _zero_shot(runs: pd.DataFrame) -> pd.DataFrame:
    """The `evaluate` runs with a test accuracy (zero-shot or in-context classification)."""
    if "method" not in runs or "test_accuracy" not in runs:
        return runs.iloc[:0]
    return runs[(runs["method"] == ZERO_SHOT) & runs["test_accuracy"].notna()]


def _augmented(runs: pd.DataFrame) -> bool:
    return any(c.startswith(AUGMENT) and runs[c].notna().any() for c in runs.columns)


def is_data_centric(runs: pd.DataFrame) -> bool:
    """Whether the finished classification runs vary, augment or do without labelled data
    (see the module docstring): the report then leads with the dashboard."""
    from scalelab.report.classification import is_classification

    done = _done(runs)
    if "method" not in done or done.empty or not is_classification(done):
        return False
    return bool(varies_data(done) or _augmented(done) or len(_zero_shot(done))
                or (done["method"] == ACTIVE).any())  # fmt: skip


def seed_values(runs: pd.DataFrame, metrics, models: Mapping[str, str]) -> pd.DataFrame:
    """One row per run and metric: metric, cell (`method_profile.cell_names`: model, method
    entry and the settings that tell its cells apart, never seed, draw or data seed), value, size (the model's
    parameters), arm (method entry), n (labelled examples); cells smallest model first,
    then by method entry and n."""
    cells = cell_names(runs, models)
    size_col = next((c for c in SIZE_COLUMNS if c in runs and runs[c].notna().any()), None)
    size = pd.to_numeric(runs[size_col], errors="coerce") if size_col else np.nan
    n = pd.to_numeric(runs[LABELS], errors="coerce") if LABELS in runs else np.nan
    arm = as_text(runs["variant"] if "variant" in runs else runs["method"])
    base = pd.DataFrame({"cell": cells.values, "size": np.asarray(size, float) * np.ones(len(runs)),
                         "arm": arm.values, "n": np.asarray(n, float) * np.ones(len(runs))})  # fmt: skip
    key = base.groupby("cell", sort=False).agg(size=("size", "min"), arm=("arm", "first"),
                                               n=("n", "max"))  # fmt: skip
    key = key.assign(nosize=key["size"].isna()).sort_values(["nosize", "size", "arm", "n"],
                                                            kind="stable")  # fmt: skip
    rank = {c: i for i, c in enumerate(key.index)}
    rows = [base.assign(metric=m, value=pd.to_numeric(runs[m], errors="coerce").values)
            for m in metrics if m in runs]  # fmt: skip
    empty = base.iloc[:0].assign(metric=pd.Series(dtype=str), value=pd.Series(dtype=float))
    out = pd.concat(rows, ignore_index=True) if rows else empty
    out = out[np.isfinite(out["value"].astype(float))]
    return out.sort_values("cell", key=lambda c: c.map(rank), kind="stable").reset_index(drop=True)


def _replicated(values: pd.DataFrame) -> tuple[int, int]:
    """(cells with 2 or more values, all cells) of one metric's `seed_values`."""
    counts = values.groupby("cell", sort=False)["value"].count()
    return int((counts >= 2).sum()), len(counts)


# --- the panels ------------------------------------------------------------------------


def _scaling_panel(runs: pd.DataFrame, models: Mapping[str, str], curves=None) -> Panel | None:
    """Accuracy vs labelled examples with zero-shot lines, where the trained runs vary
    their data or zero-shot runs are there to compare with (active runs and augmented
    ones, ratio > 0, have panels of their own)."""
    from scalelab.analysis.data_scaling import data_scaling, resolve_metric

    zero = _zero_shot(runs)
    trained = runs[~runs["method"].isin([ZERO_SHOT, ACTIVE])]
    if RATIO in trained:  # augmented copies are no labelled examples: their own panel
        trained = trained[~(pd.to_numeric(trained[RATIO], errors="coerce") > 0)]
    if LABELS not in trained or not trained[LABELS].notna().any():
        return None
    if not (varies_data(trained) or len(zero)):
        return None
    try:
        metric, higher, bounds = resolve_metric(trained, None)
        result = data_scaling(trained, metric, higher_is_better=higher, bounds=bounds, n_boot=0)
    except ScalelabError:
        return None
    lines = []
    if len(zero) and metric in zero:
        shots = pd.to_numeric(zero.get("params.shots", pd.Series(0, index=zero.index)),
                              errors="coerce").fillna(0)  # fmt: skip
        z = zero.assign(_model=shown_models(zero, models).values, _shots=shots.values)
        for (model, k), g in z.groupby(["_model", "_shots"], sort=False):
            how = "zero-shot" if k == 0 else f"{int(k)}-shot in context"
            lines.append({"label": f"{model} {how}",
                          "mean": float(pd.to_numeric(g[metric]).mean())})  # fmt: skip
    zero_table = pd.DataFrame(lines, columns=["label", "mean"])
    caption = (f"{metric} vs labelled training examples n (log x), one colour per model "
               "(size order): means over seeds and draws (open squares: k examples per "
               "class), bands: 95% intervals, dashed: the power law of the data-scaling "
               "section, star: its n*")  # fmt: skip
    if len(zero_table):
        caption += ("; dotted lines: models that saw no labelled example (zero-shot, n = 0, "
                    "or in-context examples only), at their mean")  # fmt: skip
    return Panel("scaling", f"{metric.replace('test_', '')} vs labelled examples",
                 (result, zero_table), lambda ax, d: plots.draw_scaling(ax, *d), caption)  # fmt: skip


def augment_points(runs: pd.DataFrame, metric: str, models: Mapping[str, str]) -> pd.DataFrame:
    """Per curve and ratio: mean and 95% t interval of `metric` over seeds (cut to [0, 1]).
    Trained runs without augmentation count as ratio 0 (their training set is the
    original one). Curves with a single ratio are left out. A curve: a cell
    (`method_profile.cell_names`) without the augmentation's settings, except its method
    (eda or back-translation) where that varies."""
    rows = runs[~runs["method"].isin([ZERO_SHOT, ACTIVE])]
    plain = ~rows[[c for c in rows.columns if c.startswith(AUGMENT)]].notna().any(axis=1)
    ratio = pd.to_numeric(rows[RATIO], errors="coerce").where(~plain, 0.0)
    rows = rows.assign(_ratio=ratio.values)[ratio.notna().values]
    how = "task.augment.method"  # eda or back-translation: curves of their own
    own = how in rows and rows[how].dropna().nunique() > 1
    skip = tuple(c for c in rows.columns if c.startswith(AUGMENT) and not (own and c == how))
    curves = cell_names(rows, models, exclude=skip)
    out = []
    for (curve, r), g in rows.groupby([curves.values, rows["_ratio"].values], sort=False):
        s = mean_ci(pd.to_numeric(g[metric], errors="coerce"), 0.95, (0.0, 1.0))
        out.append({"curve": curve, "ratio": float(r), **{k: s[k] for k in
                    ("mean", "ci_low", "ci_high", "n")}})  # fmt: skip
    points = pd.DataFrame(out, columns=["curve", "ratio", "mean", "ci_low", "ci_high", "n"])
    ratios = points.groupby("curve")["ratio"].transform("nunique")
    return points[ratios >= 2].reset_index(drop=True)  # one ratio: nothing to compare


def _augment_panel(runs: pd.DataFrame, models: Mapping[str, str], curves=None) -> Panel | None:
    """Accuracy vs augmentation ratio where the trained runs take 2 or more ratios."""
    if RATIO not in runs or not runs[RATIO].notna().any() or "test_accuracy" not in runs:
        return None
    points = augment_points(runs, "test_accuracy", models)
    if points["ratio"].nunique() < 2:
        return None
    caption = ("test accuracy vs the augmented share of the training examples (0: the "
               "original set), per model and method: mean over seeds, bars: 95% t interval "
               "(none for one seed)")  # fmt: skip
    return Panel("augment", "accuracy vs augmentation ratio", points,
                 lambda ax, d: plots.draw_ratio(ax, d, "test_accuracy"), caption)  # fmt: skip


def _radar_panel(runs: pd.DataFrame, models: Mapping[str, str], curves=None) -> Panel | None:
    profile = method_profile(runs, models)
    if not profile.drawable:
        return None
    caption = (f"methods over {len(profile.axes)} metrics, each normalised 0..1 across the "
               f"methods (rim: the best; log scale for counts); {profile.chosen_by}; raw "
               "values in the table below")  # fmt: skip
    return Panel("radar", "methods over metrics", profile,
                 lambda ax, p: plots.draw_radar(ax, p.axes, p.scores, fontsize=8), caption,
                 polar=True)  # fmt: skip


def _box_panel(runs: pd.DataFrame, models: Mapping[str, str], curves=None) -> Panel | None:
    values = seed_values(runs, ["test_accuracy"], models)
    if values.empty:
        return None
    cells = values.drop_duplicates("cell")
    kept = ""
    if len(cells) > MAX_BOX_CELLS:  # each curve's full-data end
        top = cells.assign(_m=cells["size"].fillna(-1)).groupby(["_m", "arm"], sort=False)["n"]
        keep = cells[cells["n"].isna() | (cells["n"] == top.transform("max"))]["cell"]
        keep = list(keep)[:MAX_BOX_CELLS]
        values = values[values["cell"].isin(keep)]
        kept = (f" Of {len(cells)} cells, the {len(keep)} with the most labelled examples "
                "per model and method are shown (the classification sections show all).")  # fmt: skip
    boxed, total = _replicated(values)
    caption = (f"test accuracy over seeds and draws per cell, smallest model first: box "
               f"(quartiles, median red) where a cell has 2 or more runs ({boxed} of {total}); "
               f"dots only otherwise.{kept}")  # fmt: skip
    height = 1.0 + 0.3 * values["cell"].nunique()
    return Panel("boxes", "test accuracy over seeds", values,
                 lambda ax, d: plots.draw_boxes(ax, d, "test_accuracy", fontsize=8), caption,
                 wide=True, height=max(height, 2.4))  # fmt: skip


# --- active learning: a panel only where `active` runs exist ----------------------------


def _active_panel(runs: pd.DataFrame, models: Mapping[str, str], curves=None) -> Panel | None:
    """Test accuracy vs labelled examples per query strategy of the `active` runs (their
    round curves, `analysis.active`: mean over seeds, 95% band), random sampling dashed;
    None without active runs or their curves."""
    from scalelab.analysis.active import active_points, is_active, learning_curves

    if not is_active(runs) or curves is None or not len(curves):
        return None
    try:
        lc = learning_curves(active_points(runs, curves), "test_accuracy")
    except ScalelabError:
        return None
    several = lc["setting"].nunique() > 1
    name = lc["strategy"] + (" " + lc["setting"] if several else "")
    points = pd.DataFrame({"curve": name.str.strip(), "n": lc["labels"].astype(float),
                           "mean": lc["mean"], "ci_low": lc["ci_low"], "ci_high": lc["ci_high"],
                           "style": np.where(lc["strategy"] == "random", "dashed", "solid")})  # fmt: skip
    caption = ("active learning: test accuracy vs labelled examples per query strategy (log "
               "x; every round fine-tunes afresh), mean over seeds with 95% bands; dashed: "
               "random sampling (label saving: the active-learning section)")  # fmt: skip
    return Panel("active", "active learning", points,
                 lambda ax, d: plots.draw_labels_curves(ax, d, "test_accuracy"), caption)  # fmt: skip


PANELS: dict[str, Build] = {"scaling": _scaling_panel, "augment": _augment_panel,
                            "active": _active_panel, "radar": _radar_panel,
                            "boxes": _box_panel}  # fmt: skip


def register_panel(key: str, build: Build) -> None:
    """Add a dashboard panel (or replace the one of that key: `active` for a method's
    own drawing). `build(runs, models, curves)` returns a `plots_dashboard.Panel`, or None
    when the runs hold nothing for it."""
    PANELS[key] = build


# --- the sections ----------------------------------------------------------------------


def _radar_table(profile: MethodProfile) -> str:
    from scalelab.metrics import format_value, metric_def

    methods = list(profile.raw["method"])
    rows = [{"metric": "cell shown", **dict(zip(methods, profile.raw["cell"], strict=True))}]
    for a in profile.axes:
        defn = metric_def(a.metric, methods)
        rows.append({"metric": a.label, **{m: format_value(defn, v) for m, v in
                                            zip(methods, profile.raw[a.metric], strict=True)}})  # fmt: skip
    return html.table(rows, ["metric", *methods], left=1)


def dashboard_section(runs: pd.DataFrame, out: Path, models: Mapping[str, str],
                      curves: pd.DataFrame | None = None) -> str:  # fmt: skip
    """The dashboard's HTML ("" when no panel has data): the figure `dashboard.png`, a
    caption per panel, the radar's raw values. curves: the learning curves (the active
    runs' rounds), or None."""
    done = _done(runs)
    panels = [p for build in PANELS.values() if (p := build(done, models, curves)) is not None]
    if not panels:
        return ""
    png = plots.plot_dashboard(panels, out / "dashboard.png")
    drawn = [p for row in plots.layout(panels) for p in row]
    # Captions are sentences of their own ("... shown."): joined without doubling a period.
    captions = "; ".join(f"({chr(97 + i)}) {p.caption.rstrip('.')}" for i, p in enumerate(drawn))
    body = ("<p>The experiment at a glance: what labelled data, augmentation and methods "
            "buy. Details in the sections below.</p>" + html.figure(png, captions + "."))  # fmt: skip
    radar = next((p for p in panels if p.key == "radar"), None)
    if radar is not None:
        body += "<p>The radar's raw values:</p>" + _radar_table(radar.data)
        body += html.notes(list(radar.data.notes))
    return body


def methods_section(runs: pd.DataFrame, out: Path, prefix: str, models: Mapping[str, str],
                    radar: bool = True) -> str:  # fmt: skip
    """A classification stage's box plots over seeds (where a cell has 2 or more runs)
    and, with `radar`, the radar of its methods with their raw values ("" when neither
    has data)."""
    from scalelab.report.classification import headline

    done = _done(runs)
    parts = []
    metrics = [m for m in ("test_accuracy", "test_macro_f1") if m in headline(done)]
    values = seed_values(done, metrics, models)
    if len(values) and _replicated(values[values["metric"] == metrics[0]])[0]:
        boxed, total = _replicated(values[values["metric"] == metrics[0]])
        png = plots.plot_seed_boxes(values, out / f"{prefix}seed_boxes.png")
        parts.append(html.figure(png, f"{', '.join(metrics)} over seeds and draws per cell, "
                                 "smallest model first: box (quartiles, median red) where "
                                 f"a cell has 2 or more runs ({boxed} of {total} cells), "
                                 "dots (one per run) only otherwise."))  # fmt: skip
    profile = method_profile(done, models) if radar else None
    if profile is not None and profile.drawable:
        png = plots.plot_radar(profile.axes, profile.scores, profile.raw,
                               out / f"{prefix}radar.png", fmt=_fmt(profile))  # fmt: skip
        parts.append(html.figure(png, f"Methods over {len(profile.axes)} metrics, each "
                                 "normalised 0..1 across the methods shown (rim: the best; "
                                 "log10 values for counts); "
                                 f"{profile.chosen_by}."))  # fmt: skip
        parts.append(_radar_table(profile) + html.notes(list(profile.notes)))
    return "".join(parts)


def _fmt(profile: MethodProfile):
    from scalelab.metrics import format_value, metric_def

    methods = list(profile.raw["method"])
    return lambda metric, v: format_value(metric_def(metric, methods), v)
