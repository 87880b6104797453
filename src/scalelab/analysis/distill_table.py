"""The distillation law on a results table: which rows are from scratch, input checks, fit,
bootstrap, holdout, identifiability flags and the answers `scalelab fit --law distillation`
prints (see `distill_law` for the fit, `distill_answers` for the answers).

One table holds both kinds of run, one row each: from-scratch runs (students without a
teacher, and the teachers) feed Eq. 1 of Busbridge et al. (2025); distilled runs, which have
a teacher loss, feed Eq. 8. A row is from scratch when its teacher-loss cell is empty, or,
with `scratch="COL=VALUE"`, when column COL holds VALUE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import distill_answers as answers
from scalelab.analysis import identify, table
from scalelab.analysis.distill_law import (
    HOLDOUT_BY,
    DistillData,
    DistillFit,
    bootstrap_distillation,
    fit_distillation,
    holdout_distillation,
)
from scalelab.analysis.identify import Flag, Thresholds
from scalelab.analysis.uncertainty import Bootstrap, Holdout
from scalelab.errors import ScalelabError

MIN_TEACHERS = 3  # distinct teacher losses: L_T enters through c0, c1, d1, f1
MIN_STUDENTS = 3  # distinct student sizes: alpha' and the break's dependence on L~_S
MIN_SCRATCH_SIZES = 3  # distinct N among the from-scratch runs (alpha of Eq. 1)


@dataclass(frozen=True)
class DistillSpec:
    """What `scalelab fit --law distillation` was asked. Columns: `n` (non-embedding N; the
    student's N_S on distilled rows), `d` (training tokens; D_S on distilled rows), `y` (the
    run's cross-entropy), `teacher_loss` (L_T), optional `teacher_n`, `teacher_d` (N_T, D_T
    of each distilled row's teacher, for the compute comparison). `gamma`: hold Eq. 1's gamma
    (None: fitted). `holdout` K with `holdout_by` student | teacher. Answers: `students`
    (N_S for (a), (b), (d)), `teacher_losses` (extra L_T for (a)), `target` (reference loss
    for (c)); D_S from `target_tokens`, `tokens_per_param`, or the data's single value."""

    n: str
    d: str
    y: str
    teacher_loss: str
    scratch: str | None = None
    teacher_n: str | None = None
    teacher_d: str | None = None
    gamma: float | None = None
    bootstrap: int = 0
    seed: int = 0
    holdout: int = 0
    holdout_by: str = "student"
    students: tuple[float, ...] = ()
    teacher_losses: tuple[float, ...] = ()
    target: float | None = None
    target_tokens: float | None = None
    tokens_per_param: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class Teacher:
    """A teacher of the table: its loss L_T and, where given, N_T and D_T."""

    l_t: float
    n_t: float | None = None
    d_t: float | None = None

    @property
    def label(self) -> str:
        size = f" (N_T {self.n_t:.3g}" if self.n_t is not None else ""
        size += f", D_T {self.d_t:.3g})" if self.d_t is not None else (")" if size else "")
        return f"L_T {self.l_t:.4g}{size}"


@dataclass(frozen=True)
class DistillReport:
    """Everything printed: the fit, its bootstrap, holdout, flags, notes and answers."""

    fit: DistillFit
    data: DistillData
    teachers: list[Teacher]
    boot: Bootstrap | None = None
    holdout: Holdout | None = None
    held_out: str = ""
    flags: tuple[Flag, ...] = ()
    notes: tuple[str, ...] = ()
    answers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of `scalelab fit --law distillation --format json`."""
        sup, dist = self.fit.supervised, self.fit.distill
        ci = self.boot.ci() if self.boot and not self.boot.too_few else {}
        free = identify.free_params(sup) | identify.free_params(dist)
        out: dict[str, Any] = {"law": "distillation", **self.fit.params}
        out["ci"] = {k: list(v) for k, v in ci.items() if k in free and all(np.isfinite(v))}
        out["stages"] = {
            "supervised": {"equation": "Eq. 1", "n_points": sup.n_points, "r2": sup.r2},
            "distillation": {"equation": "Eq. 8", "n_points": dist.n_points, "r2": dist.r2},
        }
        out["teachers"] = [t.label for t in self.teachers]
        if self.boot:
            out["bootstrap"] = {"n": self.boot.n_requested, "ok": self.boot.n_ok,
                                "failed": self.boot.n_failed, "seed": self.boot.seed}  # fmt: skip
        out["holdout"] = self.holdout.as_dict() if self.holdout else None
        if self.holdout:
            out["holdout"]["held_out"] = self.held_out
        out["flags"] = [f.as_dict() for f in self.flags]
        out["notes"] = list(self.notes + sup.notes)
        out["answers"] = self.answers
        return out


def split_rows(df: pd.DataFrame, spec: DistillSpec) -> tuple[pd.Series, list[str]]:
    """A boolean Series, True for from-scratch rows, and notes. Raises ScalelabError for a
    malformed `scratch` or missing columns."""
    table.require_columns(df, [spec.n, spec.d, spec.y, spec.teacher_loss], "the distillation law")
    l_t = table.numeric(df, spec.teacher_loss)
    if spec.scratch is None:
        return l_t.isna(), [f"from-scratch runs: rows with no {spec.teacher_loss!r}"]
    col, sep, value = spec.scratch.partition("=")
    if not sep or not col:
        raise ScalelabError(f"--scratch must be COL=VALUE (got {spec.scratch!r})")
    table.require_columns(df, [col], "--scratch")
    return df[col].astype(str) == value, [f"from-scratch runs: rows with {col} = {value!r}"]


def table_data(df: pd.DataFrame, spec: DistillSpec) -> tuple[DistillData, list[Teacher], list]:
    """The two tables as arrays, the teachers, notes. Raises ScalelabError (one line) for
    missing columns, non-positive values, or too few runs, students or teachers."""
    scratch, notes = split_rows(df, spec)
    cols = [spec.n, spec.d, spec.y]
    s = table.clean_columns(df[scratch.to_numpy()], cols, "the distillation law")
    extra = [c for c in (spec.teacher_n, spec.teacher_d) if c]
    k = table.clean_columns(df[~scratch.to_numpy()], [*cols, spec.teacher_loss, *extra])
    for dropped, what in ((s.dropped, "from-scratch"), (k.dropped, "distilled")):
        if dropped:
            notes.append(f"dropped {dropped} {what} row(s) with an empty or non-numeric value")
    for t in (s, k):
        for c, v in t.columns.items():
            table.require_positive(v, c, "distillation")
    sc, kc = s.columns, k.columns
    data = DistillData(sc[spec.n], sc[spec.d], sc[spec.y],
                       kc[spec.n], kc[spec.d], kc[spec.teacher_loss], kc[spec.y])  # fmt: skip
    _require_counts(data, spec)
    teachers = []
    for lt in np.unique(data.l_t):
        i = int(np.flatnonzero(data.l_t == lt)[0])
        n_t = float(kc[spec.teacher_n][i]) if spec.teacher_n else None
        d_t = float(kc[spec.teacher_d][i]) if spec.teacher_d else None
        teachers.append(Teacher(float(lt), n_t, d_t))
    return data, teachers, notes


def _require_counts(data: DistillData, spec: DistillSpec) -> None:
    """Enough teachers, students and runs for the 9 + 6 (or 5) parameters."""
    counts = (
        (len(np.unique(data.l_t)), MIN_TEACHERS, f"teachers (distinct {spec.teacher_loss!r})"),
        (len(np.unique(data.n_s)), MIN_STUDENTS, f"student sizes (distinct {spec.n!r})"),
        (len(np.unique(data.n)), MIN_SCRATCH_SIZES, "sizes among the from-scratch runs"),
        (len(np.unique(data.d)), 2, f"token counts among the from-scratch runs ({spec.d!r})"),
        (len(data.l_s), 9 + 2, "distilled runs (9 parameters of Eq. 8, + 2)"),
        (len(data.loss), 6 + 2 - (spec.gamma is not None), "from-scratch runs (Eq. 1, + 2)"),
    )
    for have, need, what in counts:
        if have < need:
            raise ScalelabError(
                f"too few {what} for the distillation law: {have}, need at least {need}"
            )


def fit_distill_table(df: pd.DataFrame, spec: DistillSpec) -> DistillReport:
    """Fit, bootstrap, holdout, flags and answers for `df` (one row per run)."""
    if spec.holdout_by not in HOLDOUT_BY:
        raise ScalelabError(f"--holdout-by must be student or teacher (got {spec.holdout_by!r})")
    if spec.gamma is not None and not 0.02 <= spec.gamma <= 5:
        raise ScalelabError(f"--supervised-gamma must be in [0.02, 5] (got {spec.gamma:g})")
    _check_answer_options(spec)
    data, teachers, notes = table_data(df, spec)
    hold, held = _holdout(data, spec) if spec.holdout > 0 else (None, "")
    fit = fit_distillation(data, gamma=spec.gamma)
    boot = None
    if spec.bootstrap > 0:
        boot = bootstrap_distillation(data, fit, spec.bootstrap, gamma=spec.gamma, seed=spec.seed)
        notes.extend(boot.notes())
    flags = identify.flags(fit.supervised, boot, None, spec.thresholds)
    flags += identify.spread(data.d, "D of the from-scratch runs")
    flags += identify.flags(fit.distill, boot, hold, spec.thresholds)
    flags += _spread_d_s(data.d_s)
    samples = boot.param_dicts() if boot is not None and not boot.too_few else []
    report_answers = _answers(fit.params, samples, data, teachers, spec)
    return DistillReport(fit, data, teachers, boot, hold, held, flags, tuple(notes), report_answers)


def _check_answer_options(spec: DistillSpec) -> None:
    """Sizes, tokens and losses asked about are positive; D_S is given one way at most."""
    if spec.target_tokens is not None and spec.tokens_per_param is not None:
        raise ScalelabError("give --target-tokens or --tokens-per-param, not both")
    asked = {
        "--student": spec.students,
        "--at-teacher-loss": spec.teacher_losses,
        "--target": () if spec.target is None else (spec.target,),
        "--target-tokens": () if spec.target_tokens is None else (spec.target_tokens,),
        "--tokens-per-param": () if spec.tokens_per_param is None else (spec.tokens_per_param,),
    }
    for opt, values in asked.items():
        bad = [v for v in values if not (np.isfinite(v) and v > 0)]
        if bad:
            raise ScalelabError(f"{opt} must be positive (got {bad[0]:g})")


def _holdout(data: DistillData, spec: DistillSpec) -> tuple[Holdout, str]:
    """The holdout refit, after checking that the rest still meets the minimum counts, and
    what it held out, in words."""
    by, k = spec.holdout_by, spec.holdout
    distinct = len(np.unique(data.n_s if by == "student" else data.l_t))
    need = MIN_STUDENTS if by == "student" else MIN_TEACHERS
    if k > distinct - need:
        what = "student sizes" if by == "student" else "teachers"
        raise ScalelabError(
            f"too few {what} for --holdout {k}: {distinct} in the data, the refit needs {need} left"
        )
    try:
        hold = holdout_distillation(data, by, k, gamma=spec.gamma)
    except ScalelabError as err:
        raise ScalelabError(f"--holdout {k}: {err}") from None
    if by == "student":
        held = ", ".join(f"{v:.3g}" for v in np.unique(data.n_s)[-k:])
        return hold, f"the {k} largest student size(s), N_S {held}"
    held = ", ".join(f"{v:.4g}" for v in np.unique(data.l_t)[:k])
    return hold, f"the {k} strongest teacher(s), L_T {held}"


def _spread_d_s(d_s: np.ndarray) -> tuple[Flag, ...]:
    ratio = float(np.max(d_s) / np.min(d_s))
    if ratio >= identify.MIN_SPREAD:
        return ()
    return (
        Flag(
            "spread",
            f"B' and beta' are not identified by these points: D_S varies only {ratio:.3g}-fold "
            f"across the distilled runs (less than {identify.MIN_SPREAD:g}x)",
            "beta'",
        ),
    )


def _student_tokens(n_s: float, data: DistillData, spec: DistillSpec) -> tuple[float, str]:
    """D_S for a student of n_s parameters, and how it was chosen."""
    if spec.target_tokens is not None:
        return spec.target_tokens, "--target-tokens"
    if spec.tokens_per_param is not None:
        return spec.tokens_per_param * n_s, f"{spec.tokens_per_param:g} tokens per parameter"
    if len(np.unique(data.d_s)) == 1:
        return float(data.d_s[0]), "the distilled runs' D_S"
    ratios = np.unique(np.round(data.d_s / data.n_s, 6))
    if len(ratios) == 1:
        return float(ratios[0] * n_s), f"the distilled runs' {ratios[0]:g} tokens per parameter"
    raise ScalelabError(
        "the distilled runs use several D_S: give --target-tokens D or --tokens-per-param R "
        "for the answers"
    )


def _answers(
    params: dict[str, float],
    samples: list[dict[str, float]],
    data: DistillData,
    teachers: list[Teacher],
    spec: DistillSpec,
) -> dict[str, Any]:
    """(a), (b), (d) for each of `spec.students`; (c) for `spec.target`, per teacher."""
    out: dict[str, Any] = {}
    asked = [(t.label, t.l_t) for t in teachers]
    asked += [(f"L_T {lt:.4g} (given)", lt) for lt in spec.teacher_losses]
    students = []
    for n_s in spec.students:
        d_s, how = _student_tokens(n_s, data, spec)
        gap = answers.gap_answer(params, n_s, d_s, asked, samples).as_dict()
        gap["D_S_from"] = how
        gap["versus_supervised"] = [
            {"teacher": t.label, "rows": answers.versus_supervised(
                params, n_s, d_s, t.l_t, n_t=t.n_t, d_t=t.d_t, samples=samples)}
            for t in teachers
        ]  # fmt: skip
        students.append(gap)
    if students:
        out["students"] = students
    if spec.target is not None:
        out["smallest"] = _smallest(params, samples, data, asked, spec)
    return out


def _smallest(params, samples, data, asked, spec) -> dict[str, Any]:
    """(c): per teacher, the smallest N_S predicted to beat `spec.target`."""
    if spec.target_tokens is not None:
        where, how = {"d_s": spec.target_tokens}, f"D_S = {spec.target_tokens:.4g} tokens"
    elif spec.tokens_per_param is not None:
        where = {"tokens_per_param": spec.tokens_per_param}
        how = f"D_S = {spec.tokens_per_param:g} N_S"
    else:
        d_s, how = _student_tokens(1.0, data, spec)
        fixed = len(np.unique(data.d_s)) == 1
        where = {"d_s": d_s} if fixed else {"tokens_per_param": d_s}
        how = f"D_S = {d_s:.4g} tokens" if fixed else f"D_S = {d_s:g} N_S"
    rows = []
    for label, lt in asked:
        est = answers.estimate(
            lambda p, lt=lt: answers.smallest_student(p, spec.target, lt, **where), params, samples
        )
        rows.append({"teacher": label, "L_T": lt, "N_S": est.as_dict()})
    return {"target": spec.target, "at": how, "rows": rows}
