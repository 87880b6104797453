"""The report's scaling sections: loss (or error rate) vs model size with power-law fits and
bootstrap bands where the fit is identified, loss-to-loss, and task accuracy from task loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import table
from scalelab.analysis.api import FitSpec, GroupFit, fit_table
from scalelab.analysis.envelope import Envelope
from scalelab.analysis.fitting import predict
from scalelab.analysis.uncertainty import prediction_band
from scalelab.errors import ScalelabError
from scalelab.metrics import default_metric, metric_def, split_of
from scalelab.report import html, plots

Y_DEFAULTS = ("val_loss", "test_loss")
GROUP_CANDIDATES = ("method", "task.dataset")
# Config fields that never change a model's size but change its loss: runs that differ in
# one are separate series (a power law in N at one token budget, one parametrization).
SERIES_FIELDS = ("params.tokens", "task.max_train_tokens", "params.parametrization")


def _group_candidates(runs: pd.DataFrame) -> tuple[str, ...]:
    """Columns that split runs into series: labelled method entries (`variant`) replace
    the method's name."""
    if "variant" in runs:
        return tuple("variant" if c == "method" else c for c in GROUP_CANDIDATES)
    return GROUP_CANDIDATES


def default_y(runs: pd.DataFrame) -> str:
    """The metric to plot against size: the first loss (lower-is-better quality metric) the
    runs' methods declare, validation before test, that has values; else val_loss, else
    test_loss (a table without a method column, or with undeclared methods)."""
    filled = [c for c in runs.columns if runs[c].notna().any()]
    methods = runs["method"] if "method" in runs else []
    declared = default_metric(methods, available=filled, lower_is_better=True)
    return declared or next((c for c in Y_DEFAULTS if c in filled), Y_DEFAULTS[0])


def _as_error_rate(runs: pd.DataFrame, y: str, notes: list[str]) -> tuple[pd.DataFrame, str]:
    """A declared higher-is-better y in [0, 1] (an accuracy) becomes the column `1 - y`: power
    laws describe quantities that fall with scale. Other columns are returned unchanged."""
    defn = metric_def(y, runs["method"] if "method" in runs else None)
    values = pd.to_numeric(runs[y], errors="coerce")
    if defn is None or not defn.higher_is_better or not values.dropna().between(0, 1).all():
        return runs, y
    col = f"1 - {y}"
    notes.append(f"{y} is higher-is-better: plotted and fitted as the error rate {col}")
    return runs.assign(**{col: 1 - values}), col


def default_columns(runs: pd.DataFrame, spec: Any) -> tuple[str, str, str | None, pd.DataFrame]:
    """(x, y, group, runs): N, the declared loss (`default_y`), grouped by method/dataset if
    they vary."""
    x = spec.x or "non_embedding_params"
    y = spec.y or default_y(runs)
    table.require_columns(runs, [x, y], "the report's scaling plot")
    group = spec.group
    if group is None:
        candidates = (*_group_candidates(runs), *SERIES_FIELDS)
        varying = [c for c in candidates if c in runs and _varies(runs[c], c in SERIES_FIELDS)]
        if len(varying) == 1 and varying[0] not in SERIES_FIELDS:
            group = varying[0]
        elif varying:
            runs = runs.copy()
            group = " / ".join(c.split(".")[-1] for c in varying)
            runs[group] = runs.apply(lambda r: " / ".join(_series_text(c, r[c]) for c in varying),
                                     axis=1)  # fmt: skip
    elif group not in runs:
        table.require_columns(runs, [group], "--group")
    return x, y, group, runs


def _varies(values: pd.Series, unset_is_a_value: bool) -> bool:
    """More than one value; for SERIES_FIELDS an unset value (a default) counts as one."""
    if unset_is_a_value:
        return table.as_text(values).nunique() > 1
    return values.nunique(dropna=True) > 1


def _series_text(column: str, value: Any) -> str:
    """A series name's part: a method or dataset as it is, a SERIES_FIELDS value as
    `name=value` ("tokens=250000", "parametrization=standard" where it is unset)."""
    if column not in SERIES_FIELDS:
        return str(value)
    if column == "params.parametrization" and pd.isna(value):
        value = "standard"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return table.field_text(column, value, {}) or f"{column.split('.')[-1]}=-"


def _stage_of(prefix: str) -> str:
    """ " (stage S)" for a stage's file prefix "S_", "" for none."""
    return f" (stage {prefix[:-1]})" if prefix else ""


def _fits(runs: pd.DataFrame, spec: FitSpec, notes: list[str]) -> list[GroupFit]:
    """Fit, turning user-level problems (too few points, ...) into report notes."""
    try:
        report = fit_table(runs, spec)
    except ScalelabError as e:
        notes.append(f"{spec.law} fit of {spec.y} vs {spec.x}: {e}")
        return []
    notes.extend(report.skipped)
    for g in report.groups:
        notes.extend(f"{spec.y} vs {spec.x} [{g.group}]: {n}" for n in g.notes + g.fit.notes)
    return report.groups


def _group(runs: pd.DataFrame, spec: Any) -> str | None:
    if spec.group is not None:
        return spec.group
    varying = [c for c in _group_candidates(runs) if c in runs and runs[c].nunique(dropna=True) > 1]
    return varying[0] if len(varying) == 1 else None


def per_of(runs: pd.DataFrame) -> str:
    """What a loss is averaged over: tokens for language models, else examples."""
    lm = "task.seq_len" in runs or (
        "method" in runs and set(runs["method"].dropna()) <= {"pretrain"}
    )
    return "token" if lm else "example"


def identified_band(g: GroupFit, x: str, notes: list[str], y: str) -> tuple | None:
    """The 95% bootstrap band of an identified fit over the data range; None (and a note)
    for a fit with identifiability flags: its band would show the freedom of parameters the
    points do not determine, not an uncertainty about the curve."""
    if g.boot is None or not g.boot.param_dicts():
        return None
    if g.flags:
        where = f" [{g.group}]" if g.group is not None else ""
        notes.append(f"{y} vs {x}{where}: no bootstrap band drawn, the fit is not identified "
                     f"({'; '.join(f.kind for f in g.flags)}; see the flags)")  # fmt: skip
        return None
    xs = table.numeric(g.data, x)
    grid = np.geomspace(xs.min(), xs.max(), 200)
    return (grid, *prediction_band(lambda p, grid=grid: predict("power", p, grid), g.boot))


def envelope(runs: pd.DataFrame, spec: Any, notes: list[str]) -> Envelope | None:
    """The sweep's envelope over `spec.best_over` (`analysis/envelope.py`), chosen on the
    validation twin of the scaling plot's y; its edge warnings join `notes`. None when the
    spec's axes do not vary in these runs (a stage that does not sweep them), None and a
    note when they cannot be applied otherwise; raises ScalelabError for axes asked for on
    the command line (`spec.best_over_required`) that do not apply."""
    from scalelab.analysis.envelope import envelope_for

    y = spec.y or default_y(runs)
    defn = metric_def(y, runs["method"] if "method" in runs else None)
    swept = all(a in runs and table.as_text(runs[a]).nunique() > 1 for a in spec.best_over)
    if not swept and not spec.best_over_required:
        return None  # a stage that does not sweep them (the spec's check saw one that does)
    try:
        env = envelope_for(runs, spec.best_over, y, bool(defn and defn.higher_is_better))
    except ScalelabError as err:
        if spec.best_over_required:
            raise
        notes.append(f"report.best_over: {err} (the runs are shown unselected)")
        return None
    notes.extend(env.warnings)
    return env


def winners_html(env: Envelope) -> str:
    """HTML: what was chosen and how, the winners table (model -> winning value(s) and
    their validation metric), and the edge warnings."""
    better = "higher" if env.higher_is_better else "lower"
    axes = ", ".join(env.axes)
    cols = ["model", *env.axes, env.select_on, "seeds", "settings", "edge"]
    rows = [{**r, "model": r["cell"], "edge": r["edge"] or "–"}
            for r in env.winners.to_dict(orient="records")]  # fmt: skip
    warn = "".join(f"<p class='note'>warning: {html.esc(w)}</p>" for w in env.warnings)
    return (
        f"<p>Per model (and every other setting that is not swept), the value of {html.esc(axes)} "
        f"with the best {html.esc(env.select_on)} ({better} is better), mean over seeds: chosen "
        "on validation, never on test. Every seed of the winner is kept; the scaling plot "
        "draws these runs as the envelope, and the answer (where there is one) compares them. <i>edge</i>: the winner is the smallest or largest "
        "value swept for that model, so its best may lie outside the sweep.</p>"
        + html.table(rows, cols)
        + warn
    )


def _series(runs: pd.DataFrame, env: Envelope, group: str | None):
    """(runs, group column, emphasised keys): each run once under its fixed setting
    ("lr=0.001"), and the envelope's runs again under "best lr" (prefixed by the group)."""
    prefix = table.as_text(runs[group]) + " / " if group else pd.Series("", index=runs.index)
    best = prefix + "best " + ", ".join(a.split(".", 1)[-1] for a in env.axes)
    fixed = prefix + runs[list(env.axes)].apply(
        lambda r: " ".join(table.field_text(a, r[a], {}) or "" for a in env.axes), axis=1
    )
    picked = runs.index.isin(env.rows.index)
    both = pd.concat([runs[picked].assign(series=best[picked]), runs.assign(series=fixed)],
                     ignore_index=True)  # fmt: skip
    return both, "series", set(best[picked])


def scaling_section(
    runs: pd.DataFrame,
    out: Path,
    spec: Any,
    prefix: str,
    rows: list,
    notes: list[str],
    models: dict[str, str] | None = None,
    env: Envelope | None = None,
) -> str:
    """Loss vs size with fits (and loss-to-loss pairs); "" when the runs have no size
    column (and none was asked for). Raises ScalelabError for a named column that is
    missing. models: run products ("run:<id>") -> names (`table.model_names` of the whole
    experiment: a stage's products come from another stage). env: a sweep's envelope
    (`envelope`): drawn and fitted beside the runs at each single value of its axes."""
    x = spec.x or "non_embedding_params"
    if spec.x is None and (x not in runs or not runs[x].notna().any()):
        return ""
    if spec.y is None and not any(c in runs and runs[c].notna().any() for c in runs.columns
                                  if split_of(c) in ("val", "test")):  # fmt: skip
        return ""
    x, y, group, runs = default_columns(runs, spec)
    every, own_group, emphasis = runs, group, None
    if env is not None:
        runs, group, emphasis = _series(runs, env, group)
    runs, y = _as_error_rate(runs, y, notes)
    per = per_of(runs)
    fit_spec = FitSpec("power", x, y, group=group, bootstrap=spec.bootstrap, seed=spec.seed)
    fits = _fits(runs, fit_spec, notes)
    params, bands = {}, {}
    for g in fits:
        params[g.group] = g.fit.params
        band = identified_band(g, x, notes, y) if emphasis is None or g.group in emphasis else None
        if band is not None:
            bands[g.group] = band
        rows.append({"title": f"{y} vs {x}{_stage_of(prefix)}", **g.as_dict()})
    named = runs.assign(model=table.shown_models(runs, models)) if "model" in runs else runs
    png = plots.plot_scaling(named, x, y, out / f"{prefix}scaling.png", group=group,
                             params=params, bands=bands, per=per, emphasis=emphasis)  # fmt: skip
    caption = _scaling_caption(x, y, params, bands)
    if env is not None:
        caption += _envelope_caption(env, emphasis)
    parts = [html.figure(png, caption)]
    parts += _loss_to_loss(every, y, own_group, spec, out, prefix, rows, notes)
    return "".join(parts)


def _scaling_caption(x: str, y: str, params: dict, bands: dict) -> str:
    """What `plot_scaling` drew, in words: the points, a fitted line only where a fit with
    finite parameters exists (a stage of 2 sizes has none), a band only where one is."""
    import numpy as np

    drawn = [g for g, p in params.items() if all(np.isfinite(list(p.values())))]
    text = f"{y} vs {x}: points are runs (named by model)"
    if not drawn:
        return text + "; no fitted line: no power law could be fitted to these points (see Notes)."
    text += ", lines the fitted power law E + A·N^-alpha"
    if bands:
        text += (", shaded the 95% bootstrap band where the fit is identified (drawn over the "
                 "data range only)")  # fmt: skip
    else:
        text += "; no band drawn (no bootstrap, or no fit identified: see Notes)"
    return text + "."


def _envelope_caption(env: Envelope, emphasis: set[str]) -> str:
    axes = ", ".join(env.axes)
    return (
        f" Bold, labelled ({', '.join(sorted(emphasis))}): the envelope, each model at its best "
        f"{axes} chosen on {env.select_on}; thin, faded: the runs at one fixed value of {axes} "
        "each, fitted on their own for comparison (their laws are in the fitted-laws table)."
    )


def _loss_to_loss(runs, y, group, spec, out, prefix, rows, notes) -> list[str]:
    # Only the pairs asked for (--loss-to-loss): test against validation loss of the same
    # runs, the obvious default, is a straight line that says nothing.
    parts = []
    for i, (lx, ly) in enumerate(spec.loss_to_loss):
        if not ({lx, ly} <= set(runs) and runs[[lx, ly]].notna().all(axis=1).any()):
            continue  # a stage without both losses (e.g. the evaluate runs that made them)
        l2l = _fits(runs, FitSpec("loss-to-loss", lx, ly, group=group), notes)
        rows.extend({"title": f"{ly} vs {lx}", **g.as_dict()} for g in l2l)
        fitted = {g.group: g.fit.params for g in l2l}
        png = plots.plot_loss_to_loss(
            runs, lx, ly, out / f"{prefix}loss_to_loss_{i}.png", group=group, params=fitted
        )
        parts.append(html.figure(png, f"loss-to-loss: {ly} vs {lx}"))
    return parts


def task_accuracy_section(
    runs: pd.DataFrame,
    loss: str,
    acc: str,
    spec: Any,
    out_dir: Path,
    i: int,
    rows: list,
    notes: list[str],
) -> str:
    """Fit accuracy from task loss (chance floor `spec.chance`), add its rows, plot it;
    returns the figure's HTML."""
    table.require_columns(runs, [loss, acc], "the report's task-accuracy plot")
    group = _group(runs, spec)
    fit_spec = FitSpec(
        "loss-to-acc", loss, acc, group=group, chance=spec.chance,
        bootstrap=spec.bootstrap, seed=spec.seed,
    )  # fmt: skip
    fits = _fits(runs, fit_spec, notes)
    rows.extend({"title": f"{acc} vs {loss}", **g.as_dict()} for g in fits)
    png = plots.plot_task_accuracy(
        runs,
        loss,
        acc,
        out_dir / f"task_accuracy_{i}.png",
        group=group,
        params={g.group: g.fit.params for g in fits},
        chance=spec.chance,
    )
    return html.figure(png, f"task accuracy: {acc} vs {loss} (chance-aware fit)")
