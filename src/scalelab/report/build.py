"""Build a report folder: one page per experiment that adapts to what the runs hold.

A set-up block heads the page; then, per stage (a spec without stages has one): the
classification section where runs report accuracies (led, for a data-centric experiment,
by its dashboard: `dashboard.py`; where they vary train_size or k_per_class, the
data-scaling section; per stage, box plots over seeds and the radar of methods), the sweep
heat map where exactly two hyper-parameters vary, the scaling section (loss vs size with
fits) where runs have a size column, and the learning curves. Fitting happens here and in
`scaling.py` (via `analysis.api`); the plot modules only draw. Everything is written to a
temporary folder and moved into place at the end: bad input leaves nothing behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.data_scaling import varies_data
from scalelab.analysis.distill_grid import lm_distill
from scalelab.analysis.wsd import has_branches
from scalelab.errors import ScalelabError
from scalelab.metrics import default_metric
from scalelab.report import classification, dashboard, evaluations, html, monitor, scaling, setup
from scalelab.report import curves as curve_figs
from scalelab.report.active import active_run_ids, active_section, is_active
from scalelab.report.lr_transfer import lr_transfer_section
from scalelab.report.scaling import default_columns, default_y  # noqa: F401 (public API)
from scalelab.report.w2s import has_w2s, w2s_section
from scalelab.report.wsd import wsd_section


@dataclass(frozen=True)
class ReportSpec:
    """Columns to use (None = defaults for a scalelab runs table) and bootstrap settings."""

    x: str | None = None
    y: str | None = None
    group: str | None = None
    bootstrap: int = 200
    seed: int = 0
    loss_to_loss: list[tuple[str, str]] = field(default_factory=list)
    title: str = "scalelab report"
    # (task loss, accuracy) column pairs: accuracy from task loss with a chance floor.
    task_accuracy: list[tuple[str, str]] = field(default_factory=list)
    chance: float | None = None
    # The answer section: the reference cell MODEL/METHOD, its metric, and whether a
    # reference the runs lack is an error (asked for on the command line) or a note (the
    # spec's `report.beats`, before its runs are done).
    beats: str | None = None
    metric: str | None = None
    margin: float = 0.0
    beats_required: bool = False
    # The smallest model that reaches this value of `metric` (`analysis/reaches.py`), with
    # the same rule for a value the runs cannot answer (asked: error; from the spec: note).
    reaches: float | None = None
    reaches_required: bool = False
    # Swept axes (params.lr): per model the best run over them, chosen on validation
    # (`analysis/envelope.py`); required: asked for on the command line (a bad axis is an
    # error), else the spec's `report.best_over` (a note while the runs do not vary).
    best_over: tuple[str, ...] = ()
    best_over_required: bool = False


@contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A temporary folder whose files move into `out_dir` when the block succeeds; on an
    error nothing is created (no empty report folder). A previous report's PNGs in
    `out_dir` are replaced."""
    tmp = Path(tempfile.mkdtemp(prefix="scalelab-report-"))
    try:
        yield tmp
        out_dir.mkdir(parents=True, exist_ok=True)
        if (out_dir / "report.html").exists():
            for old in out_dir.glob("*.png"):
                old.unlink()
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == "report.html"):  # html last
            shutil.move(str(f), str(out_dir / f.name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _answer(
    done: pd.DataFrame, spec: ReportSpec, out: Path, notes: list[str]
) -> tuple[str, str, Any]:
    """("The answer: ...", html, the `beats.Answer` or None when there is none): the
    report's lead when a reference cell is named."""
    from scalelab.report.answer import answer_section

    verb = f"comes within {spec.margin:g} of" if spec.margin else "beats"
    heading = f"The answer: the smallest model that {verb} {spec.beats}"
    if spec.best_over:
        from scalelab.analysis.envelope import answer_envelope

        try:
            done, _ = answer_envelope(done, spec.best_over, spec.metric)
        except ScalelabError as err:
            if spec.best_over_required:
                raise
            notes.append(f"the answer compares every run, not the best per model: {err}")
    try:
        body, found = answer_section(done, spec.beats, spec.metric, out,
                                     bootstrap=spec.bootstrap, per=scaling.per_of(done),
                                     margin=spec.margin)  # fmt: skip
    except ScalelabError as err:
        if spec.beats_required:
            raise
        notes.append(f"no answer for report.beats {spec.beats}: {err}")
        body, found = f"<p class='note'>No answer: {html.esc(err)}</p>", None
    return heading, body, found


def _reaching(done: pd.DataFrame, spec: ReportSpec, out: Path, notes: list[str]):
    """("The answer: the smallest model that reaches ...", html)."""
    from scalelab.report.answer import reaches_section

    heading = f"The answer: the smallest model that reaches {spec.reaches:g}"
    try:
        body, found = reaches_section(done, spec.reaches, spec.metric, out,
                                      chance=spec.chance, bootstrap=spec.bootstrap)  # fmt: skip
    except ScalelabError as err:
        if spec.reaches_required:
            raise
        notes.append(f"no answer for report.reaches {spec.reaches:g}: {err}")
        return heading, f"<p class='note'>No answer: {html.esc(err)}</p>"
    return f"The answer: the smallest model that reaches {found.metric} {spec.reaches:g}", body


def _law(done: pd.DataFrame, spec: ReportSpec, out: Path, found: Any) -> tuple[str, str]:
    """("When to distill: ...", html): the distillation law's answers for a grid of
    language-model distill runs, at the reference's loss when the answer section found one
    (`found`, a `beats.Answer`, or None)."""
    from scalelab.metrics import metric_def
    from scalelab.report.answer import law_section

    metric, target = spec.metric or "val_loss", None
    if found is not None:
        metric, target = found.metric, found.reference_mean

    defn = metric_def(metric, ["distill"])
    if metric not in done or not done[metric].notna().any() or not defn or defn.higher_is_better:
        return "", ""  # the law is about a loss
    body = law_section(done, metric, target, out, bootstrap=min(spec.bootstrap, 100))
    return "When to distill: the distillation scaling law (Busbridge et al. 2025)", body


def _w2s(done: pd.DataFrame, runs_dir, out: Path, spec: ReportSpec, notes: list[str]):
    """("Weak-to-strong: ...", html), or a note when no student has its ceilings yet."""
    heading = "Weak-to-strong: performance gap recovered (PGR)"
    try:
        # As many draws as `scalelab w2s` (1000): the report's intervals are the command's.
        return heading, w2s_section(done, runs_dir, out, bootstrap=max(spec.bootstrap, 1000))
    except ScalelabError as err:
        notes.append(f"no weak-to-strong summary: {err}")
        return heading, f"<p class='note'>No summary: {html.esc(err)}</p>"


def _active(done: pd.DataFrame, curves, out: Path, spec: ReportSpec, notes: list[str]):
    """("Active learning: ...", html), or a note when the runs have no curves."""
    heading = "Active learning: learning curves and label saving"
    try:
        # As many draws as `scalelab active` (1000), so the two print the same intervals.
        return heading, active_section(done, curves, out, bootstrap=max(spec.bootstrap, 1000))
    except ScalelabError as err:
        notes.append(f"no active-learning summary: {err}")
        return heading, f"<p class='note'>No summary: {html.esc(err)}</p>"


def _data_scaling(done: pd.DataFrame, out: Path, spec: ReportSpec, notes: list[str]):
    """("Data scaling: ...", html) for runs that vary train_size or k_per_class, or a note
    when they hold nothing to show."""
    from scalelab.report.data_scaling import data_scaling_section

    heading = f"Data scaling: {spec.metric or 'accuracy'} vs labelled examples"
    try:
        return heading, data_scaling_section(done, out, spec.metric, bootstrap=spec.bootstrap)
    except ScalelabError as err:
        notes.append(f"no data-scaling summary: {err}")
        return heading, f"<p class='note'>No summary: {html.esc(err)}</p>"


def _stages(runs: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    if "stage" in runs and runs["stage"].nunique(dropna=True) > 1:
        return [(str(s), sub) for s, sub in runs.groupby("stage", sort=False)]
    return [(None, runs)]


def _failed_notes(runs: pd.DataFrame) -> list[str]:
    if "status" not in runs:
        return []
    bad = runs[runs["status"] != "done"]
    return [
        f"run {r['run_id'][:8]} ({r.get('model')} {r.get('method')} seed {r.get('seed')}) "
        f"is {r['status']}: {r.get('error') or 'no error recorded'}"
        for _, r in bad.iterrows()
    ]


def _event_notes(runs: pd.DataFrame) -> list[str]:
    """One note per run with training events (loss spikes, non-finite gradient norms;
    engine/monitor.py), the run named by its model, method and every setting that varies
    (two learning rates read apart), never by a hash; the events are in its folder's
    events.json."""
    from scalelab.analysis.seeds import label_columns
    from scalelab.engine.monitor import EVENTS_FILE, events_note

    models = table.model_names(runs)
    fields = [c for c in label_columns(runs) if c != "params.keep_layers"]
    notes = []
    for _, r in runs.iterrows():
        note = events_note(r.to_dict(), f"{EVENTS_FILE} in the run's folder")
        if note:
            name = (table.run_name(r, [*fields, "seed"] if "seed" in r else fields, models)
                    if "model" in runs else f"run {r.get('run_id')}")  # fmt: skip
            notes.append(f"{name}: {note}")
    return notes


def _sweep_axes(runs: pd.DataFrame) -> list[str]:
    """The numeric params.* columns that vary (a sweep when there are exactly two)."""
    from scalelab.analysis.seeds import varying_columns

    cols = [c for c in varying_columns(runs) if c.startswith("params.")]
    return [c for c in cols if pd.to_numeric(runs[c], errors="coerce").notna().all()]


def _sweep_section(runs: pd.DataFrame, out: Path, prefix: str) -> str:
    from scalelab.metrics import metric_def
    from scalelab.report.heatmap import plot_heatmap

    axes = _sweep_axes(runs)
    methods = runs["method"] if "method" in runs else []
    filled = [c for c in runs.columns if runs[c].notna().any()]
    metric = default_metric(methods, "val", available=filled)
    if len(axes) != 2 or metric is None:
        return ""
    x, y = axes
    grid = runs.groupby([x, y], as_index=False)[metric].mean()
    defn = metric_def(metric, methods)
    higher = bool(defn and defn.higher_is_better)
    best = grid.loc[grid[metric].idxmax() if higher else grid[metric].idxmin()]
    png = plot_heatmap(grid, x, y, metric, out / f"{prefix}sweep.png",
                       title=f"{metric}, mean over seeds", best=(best[x], best[y]))  # fmt: skip
    return html.figure(
        png,
        f"{metric} over {x} × {y} (mean over seeds); outlined: the best cell on validation "
        f"({x}={best[x]:g}, {y}={best[y]:g}, {metric} {best[metric]:.4f}). Pick on "
        "validation, report its test metric (scalelab sweep prints it).",
    )


def _own(curves: pd.DataFrame | None, runs: pd.DataFrame) -> pd.DataFrame | None:
    """The curve rows of `runs` (all of them for a table without run ids)."""
    if curves is None or not len(curves):
        return curves
    table.require_columns(curves, ["run_id", "step"], "learning curves")
    return curves[curves["run_id"].isin(runs["run_id"])] if "run_id" in runs else curves


def _stage_sections(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    out: Path,
    spec: ReportSpec,
    ctx: dict,
    prefix: str,
    rows: list,
    notes: list[str],
) -> list[tuple[str, str]]:
    """(heading, html) sections for one stage's finished runs."""
    sections = []
    models = ctx["models"]
    if classification.is_classification(runs) and spec.x is None and spec.y is None:
        reports = setup.read_eval_reports(runs, ctx["runs_dir"])
        planned = ctx["planned"]
        body = classification.classification_section(runs, curves, reports, planned, out,
                                                     prefix, models)  # fmt: skip
        kinds = set(runs["task.kind"]) if "task.kind" in runs else set()
        title = {frozenset({"math"}): "Exact match (math answers)",
                 frozenset({"mcqa"}): "Exact match (written option letters)",
                 frozenset({"math", "mcqa"}): "Exact match (written answers)"}  # fmt: skip
        sections.append((title.get(frozenset(kinds), "Classification"), body))
        seeds = dashboard.methods_section(runs, out, prefix, models, radar=not ctx["dashboard"])
        if seeds:
            sections.append(("Seeds and methods", seeds))
        sweep = _sweep_section(runs, out, prefix)
        if sweep:
            sections.append(("Sweep", sweep))
        if inside := monitor.monitor_section(runs, _own(curves, runs), out, prefix, models):
            sections.append(("Inside training", inside))
        return sections
    sweep = _sweep_section(runs, out, prefix)
    if sweep:
        sections.append(("Sweep", sweep))
    if transfer := lr_transfer_section(runs, out, prefix):
        sections.append(("Learning-rate transfer", transfer))
    env = scaling.envelope(runs, spec, notes) if spec.best_over else None
    if env is not None:
        sections.append((f"Best {', '.join(env.axes)} per model (the sweep's envelope)",
                         scaling.winners_html(env)))  # fmt: skip
    body = scaling.scaling_section(runs, out, spec, prefix, rows, notes, models, env)
    if body:
        sections.append(("Loss vs model size", body))
    if curves is not None and len(curves):
        cur = _own(curves, runs)
        if len(cur) and "val_loss" in cur and cur["val_loss"].notna().any():
            fig = curve_figs.lm_curves(runs, cur, out, prefix, models, scaling.per_of(runs))
            sections.append(("Learning curves", fig))
        if inside := monitor.monitor_section(runs, cur, out, prefix, models):
            sections.append(("Inside training", inside))
    return sections


def _evaluations_only(runs: pd.DataFrame, spec: ReportSpec) -> bool:
    """A stage of `evaluate` runs only (shown in the one Evaluations table), unless the
    user asked for columns of their own."""
    return evaluations.is_evaluation(runs) and spec.x is None and spec.y is None


def build_report(
    runs: pd.DataFrame,
    curves: pd.DataFrame | None,
    out_dir: Path,
    spec: ReportSpec | None = None,
    *,
    runs_dir: Path | None = None,
    planned: pd.DataFrame | None = None,
) -> Path:
    """Write PNGs and a self-contained report.html into `out_dir`; returns the html path.

    runs: one row per run (a scalelab runs table, or any CSV with the named columns);
    curves: learning curves (run_id, step, ...) or None; runs_dir: the experiment's run
    folders (each run's eval.json); planned: every planned run (for "2 of 3 seeds").
    Raises ScalelabError (writing nothing) for a missing named column, or runs that hold
    nothing a report can show.
    """
    import numpy as np

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _build(runs, curves, Path(out_dir), spec or ReportSpec(), runs_dir, planned)


def _build(runs, curves, out_dir: Path, spec: ReportSpec, runs_dir, planned) -> Path:
    """`build_report`'s body (numpy's overflow messages off: flags say it in words)."""
    if runs.empty:
        raise ScalelabError("no runs to report on")
    notes = _failed_notes(runs) + _event_notes(runs)
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    if done.empty:
        raise ScalelabError(f"no finished runs to report on ({len(runs)} failed)")
    ctx = {
        "runs_dir": runs_dir,
        "models": table.model_names(runs),
        "planned": planned,
        "every": runs,
        "dashboard": dashboard.is_data_centric(done) and spec.x is None and spec.y is None,
    }
    stages = _stages(done)
    rows: list = []
    with _staged(out_dir) as tmp:
        sections: list[tuple[str, str]] = []
        found = None
        if spec.beats:
            heading, body, found = _answer(done, spec, tmp, notes)
            sections.append((heading, body))
        if spec.reaches is not None:
            sections.append(_reaching(done, spec, tmp, notes))
        if lm_distill(done).any():
            sections.append(_law(done, spec, tmp, found))
        if has_branches(done):
            sections.append(("Cooldown branches vs cosine", wsd_section(done, tmp)))
        if has_w2s(done):
            sections.append(_w2s(done, runs_dir, tmp, spec, notes))
        if ctx["dashboard"]:  # at the top of the classification part
            if board := dashboard.dashboard_section(done, tmp, ctx["models"], curves):
                sections.append(("Data-centric dashboard", board))
        if is_active(done):
            sections.append(_active(done, curves, tmp, spec, notes))
            # their curve points are rounds (x: labels), not the training-step curves below
            if curves is not None and "run_id" in curves:
                curves = curves[~curves["run_id"].astype(str).isin(active_run_ids(done))]
        if varies_data(done):
            sections.append(_data_scaling(done, tmp, spec, notes))
        evaluated = [sub for _, sub in stages if _evaluations_only(sub, spec)]
        eval_setups = []  # every evaluate stage's set-up, then their one table, below
        for stage, sub in stages:
            where = f" (stage {stage})" if stage else ""
            plan = planned
            if planned is not None and stage and "stage" in planned:
                plan = planned[planned["stage"] == stage]
            reports = setup.read_eval_reports(sub, runs_dir)
            all_runs = runs[runs["stage"] == stage] if stage else runs
            block = (f"Set-up{where}", setup.setup_html(
                setup.setup_rows(all_runs, reports, plan, ctx["models"])))  # fmt: skip
            if _evaluations_only(sub, spec):
                eval_setups.append(block)
                continue
            sections.append(block)
            found = _stage_sections(sub, curves, tmp, spec, {**ctx, "planned": plan},
                                    f"{stage}_" if stage else "", rows, notes)  # fmt: skip
            sections.extend((f"{h}{where}", b) for h, b in found)
        if evaluated and (body := evaluations.evaluations_section(
                pd.concat(evaluated), runs, ctx["models"])):  # fmt: skip
            sections.extend(eval_setups)
            sections.append(("Evaluations", body))
        for i, (loss, acc) in enumerate(spec.task_accuracy):
            fig = scaling.task_accuracy_section(done, loss, acc, spec, tmp, i, rows, notes)
            sections.append((f"Task accuracy: {acc} vs {loss}", fig))
        if not any(h.split(" (")[0] != "Set-up" for h, _ in sections):
            have = table.name_list(list(runs.columns))
            raise ScalelabError(
                "nothing to report: the runs have no size column (non_embedding_params), "
                f"no classification metrics and no learning curves (table has: {have})"
            )
        if rows:
            sections.append(("Fitted laws", html.fits_table(rows)))
        if "run_id" in runs:  # a scalelab runs table (not any CSV)
            sections.append(("Runs", setup.runs_html(runs, ctx["models"])))
        sections.append(("Notes", html.notes(notes)))
        html.write_page(tmp / "report.html", spec.title, sections)
    return out_dir / "report.html"
