"""The distillation law (`distill_table`) on an experiment's own runs: which runs are its
from-scratch and distilled points, with each distilled run's teacher loss, size and tokens
read from the teacher's row, and the answers `scalelab smallest` and the report print.

Busbridge et al. (2025, Eq. 8) describe a student trained from random initialisation on
D_S tokens with one teacher. So the law's points are: from scratch, every language-model
`pretrain` run (the teachers included: they are supervised runs of the same ladder); and
distilled, every `distill` run with exactly one teacher whose row is in the table. Runs
with several teachers (an ensemble's loss is not one L_T) or cut from a trained model
(`keep_layers`: not a random start) are left out, and a note says how many.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalelab.errors import ScalelabError

N, D = "non_embedding_params", "tokens"
TEACHER_COLUMNS = ("teacher_loss", "teacher_n", "teacher_d")


def _teacher_ids(value: Any) -> list[str]:
    """The run ids of a `params.teachers` cell (JSON text of ["run:<id>", ...])."""
    if not isinstance(value, str):
        return []
    try:
        refs = json.loads(value)
    except json.JSONDecodeError:
        return []
    return [r[4:] for r in refs if isinstance(r, str) and r.startswith("run:")]


def lm_distill(runs: pd.DataFrame) -> pd.Series:
    """Rows of language-model `distill` runs (a task with a seq_len): the ones the law
    describes, as opposed to distilled classifiers."""
    if not {"method", "task.seq_len"} <= set(runs.columns):
        return pd.Series(False, index=runs.index)
    return (runs["method"] == "distill") & runs["task.seq_len"].notna()


def law_rows(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """(rows, notes): the finished runs the law reads, with `teacher_loss`, `teacher_n` and
    `teacher_d` filled on distilled rows (NaN on from-scratch rows). `metric` is the loss
    compared (L_S and L_T alike, e.g. val_loss). Rows without the columns the law needs
    are dropped (counted in a note)."""
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    for col in ("method", N, D, metric):
        if col not in done:
            return done.iloc[0:0], [f"the runs have no {col!r} column"]
    by_id = done.set_index("run_id") if "run_id" in done else pd.DataFrame()
    cut = done["params.keep_layers"].notna() if "params.keep_layers" in done else False
    scratch = done[(done["method"] == "pretrain") & ~cut].assign(  # pretrain: always an LM
        teacher_loss=np.nan, teacher_n=np.nan, teacher_d=np.nan
    )
    distilled, ensembles, cuts, missing = [], 0, 0, 0
    for _, r in done[lm_distill(done)].iterrows():
        ids = _teacher_ids(r.get("params.teachers"))
        if pd.notna(r.get("params.keep_layers")):
            cuts += 1
        elif len(ids) != 1:
            ensembles += 1
        elif ids[0] not in by_id.index:
            missing += 1
        else:
            t = by_id.loc[ids[0]]
            distilled.append({**r.to_dict(), "teacher_loss": t[metric], "teacher_n": t[N],
                              "teacher_d": t[D]})  # fmt: skip
    notes = [f"{k} distill run(s) left out: {why}" for k, why in (
        (ensembles, "several teachers (the law takes one teacher loss)"),
        (cuts, "cut from a trained model (the law starts students from random weights)"),
        (missing, "their teacher's run is not in the table"),
    ) if k]  # fmt: skip
    rows = pd.concat([scratch, pd.DataFrame(distilled)], ignore_index=True)
    return rows, notes


def with_teacher_columns(runs: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """`runs` plus `teacher_loss`, `teacher_n`, `teacher_d` on the rows the law reads as
    distilled (`law_rows`: one teacher, not cut), so `scalelab fit --law distillation
    --scratch method=pretrain` reads a `scalelab results` CSV; unchanged without such rows."""
    rows, _ = law_rows(runs, metric)
    if "run_id" not in runs or rows.empty or rows["teacher_loss"].notna().sum() == 0:
        return runs
    filled = rows[rows["teacher_loss"].notna()].set_index("run_id")
    out = runs.copy()
    for col in TEACHER_COLUMNS:
        out[col] = out["run_id"].map(filled[col])
    return out


@dataclass(frozen=True)
class LawAnswer:
    """The law's answers for an experiment (None with `why` when it cannot be fitted), and
    the rows it read (`law_rows`)."""

    report: Any = None
    why: str = ""
    notes: tuple[str, ...] = ()
    rows: pd.DataFrame | None = None


def law_answer(
    runs: pd.DataFrame, metric: str, target: float | None, bootstrap: int = 100
) -> LawAnswer:
    """Fit the distillation law to the experiment's runs (`law_rows`) and answer (c), the
    smallest student predicted to beat `target` per teacher, plus (a), (b), (d) for each
    distilled student size, all at D_S = the grid's largest distillation budget; a grid too
    small for the law gives `why` instead (no error: the law is an extra answer, not the
    one asked for)."""
    from scalelab.analysis.distill_table import (
        MIN_STUDENTS,
        MIN_TEACHERS,
        DistillSpec,
        fit_distill_table,
    )

    rows, notes = law_rows(runs, metric)
    if rows.empty or rows["teacher_loss"].notna().sum() == 0:
        return LawAnswer(
            why="no single-teacher distill runs of language models", notes=tuple(notes)
        )
    distilled = rows[rows["teacher_loss"].notna()]
    students = tuple(sorted(set(distilled[N].astype(float))))
    d_s = float(distilled[D].max())  # the answers hold D_S at the grid's largest budget
    # The holdout check refits without the largest student (or the strongest teacher)
    # where one is to spare beyond the fit's minimum.
    n_teachers = distilled["teacher_loss"].nunique()
    by = ("student" if len(students) > MIN_STUDENTS
          else "teacher" if n_teachers > MIN_TEACHERS else None)  # fmt: skip
    spare = [] if by else [f"no holdout check: it needs a {MIN_STUDENTS + 1}th student size or "
                           f"a {MIN_TEACHERS + 1}th teacher (the grid has {len(students)} and "
                           f"{n_teachers})"]  # fmt: skip
    spec = DistillSpec(n=N, d=D, y=metric, teacher_loss="teacher_loss", teacher_n="teacher_n",
                       teacher_d="teacher_d", bootstrap=bootstrap, students=students,
                       target=target, target_tokens=d_s, holdout=1 if by else 0,
                       holdout_by=by or "student")  # fmt: skip
    try:
        report = fit_distill_table(rows, spec)
    except ScalelabError as err:
        return LawAnswer(why=str(err), notes=tuple(notes))
    for s in report.answers.get("students", []):  # not a flag here: say where D_S came from
        s["D_S_from"] = "the grid's largest distillation budget"
    return LawAnswer(report, notes=(*notes, *spare), rows=rows)
