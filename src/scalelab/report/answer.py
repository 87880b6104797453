"""The report's first section: the answer to "what is the smallest model that beats the
reference?" (`analysis/beats.py`), in words, as a figure and as a table of every cell.

The reference is the spec's `report.beats` or `scalelab report --beats MODEL/METHOD`.
"""

from __future__ import annotations

import html as _html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.report import html, plots


def answer_section(
    runs: pd.DataFrame,
    beats: str,
    metric: str | None,
    out: Path,
    *,
    size: str = "non_embedding_params",
    bootstrap: int = 200,
    per: str = "token",
    margin: float = 0.0,
) -> tuple[str, Any]:
    """(HTML, the `beats.Answer` it shows): per method the statement (the smallest model
    that beats `beats`, or why none does), the fitted crossover with its flags, the figure,
    then every cell's gain with its 95% interval and test. Raises ScalelabError for a
    reference or metric the runs lack."""
    from scalelab.analysis.beats import answer_for, as_rows, crossover_text

    found = answer_for(runs, beats, metric, size, bootstrap, margin)
    metric, higher, answers = found.metric, found.higher_is_better, found.methods
    rows = as_rows(answers)
    better = "higher" if higher else "lower"
    n = found.reference_seeds
    seeds = f"{n} seed{'s' * (n != 1)}"
    parts = [
        _headline(found, size),
        f"<p>Reference <b>{_html.escape(beats)}</b>: {_html.escape(metric)} "
        f"{found.reference_mean:.4f} (mean of {seeds}; {better} is better). A model "
        f"{'counts' if margin else 'beats the reference'} when the 95% interval of its gain "
        f"over the seeds lies above {-margin if margin else 0:g} "
        "(paired t over shared seeds, else Welch's t).</p><ul>",
    ]
    for a in answers:
        flags = "".join(f"<br><span class='note'>flag: {_html.escape(f)}</span>"
                        for f in a.crossover_flags)  # fmt: skip
        parts.append(
            f"<li><b>{_html.escape(a.method)}</b>: {_html.escape(a.statement)}."
            f"<br><span class='note'>{_html.escape(crossover_text(a))}</span>{flags}</li>"
        )
    parts.append("</ul>")
    if rows:
        cells = pd.DataFrame(rows)
        ref = (beats, found.reference_size, found.reference_mean)
        lines = {a.method for a in answers if not any("besides size" in n for n in a.notes)}
        png = plots.plot_beats(cells, ref, out / "answer.png", metric=metric, size=size,
                               higher_is_better=higher, per=per, margin=margin,
                               lines=lines)  # fmt: skip
        parts.append(html.figure(png, f"{metric} of each cell (mean over seeds) vs {size}; "
                                 "bars: the reference mean plus the 95% interval of the "
                                 "cell's difference to it; filled: supported by that test."))  # fmt: skip
        parts.append(_panels(runs, cells, ref, lines, metric, size, per, higher, bootstrap, out))
        parts.append(html.table([_row(r, size, metric) for r in rows],
                                ["method", "model", size, "seeds", metric, "gain (95% CI)",
                                 "test", "counts"], left=2))  # fmt: skip
    return "".join(parts), found


def reaches_section(
    runs: pd.DataFrame,
    target: float,
    metric: str | None,
    out: Path,
    *,
    size: str = "non_embedding_params",
    chance: float | None = None,
    bootstrap: int = 200,
) -> tuple[str, Any]:
    """(HTML, the `reaches.ReachAnswer` it shows): per method the smallest model whose
    metric reaches `target` with support from its seeds, the size its fitted law predicts
    (the two-step chain where a task-loss column pairs with the accuracy), the figure and
    every cell's diff (mean - target). Raises ScalelabError for a metric the runs lack or a target
    outside the metric's range."""
    from scalelab.analysis.beats import as_rows
    from scalelab.analysis.reaches import answer_reaching, prediction_text
    from scalelab.report.scaling import per_of

    found = answer_reaching(runs, target, metric, size, bootstrap, chance=chance)
    how = (f"the two-step chain size -> {found.loss_col} -> {found.metric} (Bhagia et al. "
           "2024)" if found.loss_col else "the power law E + A·N^-alpha on the metric")  # fmt: skip
    parts = [f"<p>Target: {_html.escape(found.metric)} {target:g} "
             f"({'higher' if found.higher_is_better else 'lower'} is better). A model reaches "
             "it when the 95% interval of its mean lies past the target (one-sample t over "
             "its seeds; a one-run evaluation by its standard error over test items). The "
             f"predicted size comes from {_html.escape(how)}, with a bootstrap interval.</p>"
             "<ul>"]  # fmt: skip
    for a in found.methods:
        flags = "".join(f"<br><span class='note'>flag: {_html.escape(f)}</span>"
                        for f in a.crossover_flags)  # fmt: skip
        parts.append(f"<li><b>{_html.escape(a.method)}</b>: {_html.escape(a.statement)}."
                     f"<br><span class='note'>{_html.escape(prediction_text(a))}</span>"
                     f"{flags}</li>")  # fmt: skip
    parts.append("</ul>")
    rows = as_rows(found.methods)
    if rows:
        # Drawn only where the fit is identified (as the scaling plot's bands): a flagged
        # fit's answer stays in the text, with its flags.
        predicted = {a.method: (a.crossover.n, a.crossover.lo, a.crossover.hi)
                     for a in found.methods
                     if a.crossover is not None and not a.crossover_flags}  # fmt: skip
        png = plots.plot_beats(pd.DataFrame(rows), (f"target {target:g}", None, target),
                               out / "reaches.png", metric=found.metric, size=size,
                               higher_is_better=found.higher_is_better,
                               per=per_of(runs), predicted=predicted)  # fmt: skip
        parts.append(html.figure(png, f"{found.metric} of each cell (mean over seeds) vs "
                                 f"{size}; bars: the 95% interval of the mean; filled: "
                                 "reaches the target with that support; diamonds: the "
                                 "size each method's fit predicts, with its interval (only "
                                 "for fits without identifiability flags)."))  # fmt: skip
        parts.append(html.table([_reach_row(r, size, found.metric) for r in rows],
                                ["method", "model", size, "seeds", found.metric,
                                 "diff (95% CI)", "test", "reaches"], left=2))  # fmt: skip
    return "".join(parts), found


def _reach_row(r: dict, size: str, metric: str) -> dict:
    row = _row(r, size, metric)
    row["diff (95% CI)"] = row.pop("gain (95% CI)")
    row["reaches"] = row.pop("counts")
    return row


def _panels(runs, cells, ref, lines, metric, size, per, higher, bootstrap, out) -> str:
    """One panel per method on shared axes, with each size-only method's power law (and
    its band where the fit is identified); losses only (accuracies get points)."""
    from scalelab.analysis.api import FitSpec, fit_table
    from scalelab.analysis.beats import arm_column
    from scalelab.errors import ScalelabError
    from scalelab.report.scaling import identified_band

    fits, bands, notes = {}, {}, []
    arm = arm_column(runs)
    for m in lines if not higher else ():
        rows = runs[(runs[arm] == m) & runs[metric].notna()]
        try:
            g = fit_table(rows, FitSpec("power", size, metric, bootstrap=bootstrap)).groups[0]
        except ScalelabError:
            continue  # too few sizes: points only
        fits[m] = g.fit.params
        band = identified_band(g, size, notes, metric)
        if band is not None:
            bands[m] = band
    png = plots.plot_methods_panels(cells, out / "answer_panels.png", metric=metric, size=size,
                                    per=per, fits=fits, bands=bands, reference=ref)  # fmt: skip
    return html.figure(png, "one panel per method, shared axes: cell means (every seed's "
                       "mean), the method's fitted power law E + A·N^-alpha where its cells "
                       "differ only in size (shaded: its 95% bootstrap band, where the fit is "
                       "identified), the reference dashed.")  # fmt: skip


def _headline(found, size: str) -> str:
    """One sentence across methods: the smallest model any method gets past the bar."""
    verb = f"comes within {found.margin:g} of" if found.margin else "beats"
    best = [a.smallest for a in found.methods if a.smallest is not None]
    if not best:
        return (f"<p><b>No model {verb} {_html.escape(found.reference)} with support from "
                "its seeds</b> (per method below: the closest cell and its interval).</p>")  # fmt: skip
    c = min(best, key=lambda c: c.size)
    return (f"<p><b>Smallest overall: {_html.escape(c.model)} ({_html.escape(c.method)}, "
            f"{size} {c.size:,.0f}) {verb} {_html.escape(found.reference)}</b> "
            f"(reference {size} {found.reference_size:,.0f}).</p>")  # fmt: skip


def _row(r: dict, size: str, metric: str) -> dict:
    ci = "" if math.isnan(r["lo"]) else f" [{r['lo']:+.4g}, {r['hi']:+.4g}]"
    return {"method": r["method"], "model": r["model"], size: f"{r['size']:,.0f}",
            "seeds": r["seeds"], metric: r["mean"],
            "gain (95% CI)": f"{r['gain']:+.4g}{ci}", "test": r["test"],
            "counts": "yes" if r["beats"] else "no"}  # fmt: skip


def law_section(runs: pd.DataFrame, metric: str, target: float | None, out: Path,
                bootstrap: int = 100) -> str:  # fmt: skip
    """HTML: the distillation law of Busbridge et al. (2025, Eq. 8) fitted to the grid's own
    runs (`analysis/distill_grid.py`): its answers as `scalelab fit --law distillation`
    prints them, and student loss vs teacher loss with the fitted curves; or why it was
    not fitted (too few teachers, students or budgets)."""
    from scalelab.analysis.distill_grid import law_answer
    from scalelab.cli.distill import format_report, jsonable

    law = law_answer(runs, metric, target, bootstrap)
    notes = "".join(f"<li>{_html.escape(n)}</li>" for n in law.notes)
    notes = f"<ul class='note'>{notes}</ul>" if notes else ""
    if law.report is None:
        return f"<p class='note'>Not fitted: {_html.escape(law.why)}.</p>{notes}"
    text = format_report(jsonable(law.report.as_dict()))
    rows = law.rows
    png = plots.plot_distillation(rows[rows["teacher_loss"].notna()], out / "distill_law.png",
                                  l_s=metric, params=law.report.fit.params)  # fmt: skip
    return (
        "<p>The student's loss from its size N_S, its distillation tokens D_S and its "
        "teacher's loss L_T, fitted in two stages (the supervised law on the from-scratch "
        "runs, then Eq. 8 on the distilled runs); answers at the grid's largest D_S, the "
        "smallest student for the reference's loss.</p>"
        + html.figure(
            png,
            "student loss vs teacher loss: measured runs over the fitted "
            "law, one colour per student size; the diagonal is student = teacher",
        )  # fmt: skip
        + f"<div class='wide'><pre>{_html.escape(text)}</pre></div>{notes}"
    )
