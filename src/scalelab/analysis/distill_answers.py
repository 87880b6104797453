"""When to distill: answers read off a fitted distillation law (`distill_law`), each with a
bootstrap percentile interval when refits are given.

(a) `predict_student`: the student's loss L_S for (N_S, D_S, L_T);
(b) `capacity_gap` / `gap_answer`: the teacher loss L_T* that gives a student of size N_S
    on D_S tokens its lowest loss (Busbridge et al. 2025, "Distillation Scaling Laws",
    arXiv 2502.08606: the capacity gap of their Eq. 8), and whether given teachers sit
    before it (weaker than L_T*: a stronger teacher would help) or past it (stronger: a
    weaker one would do better);
(c) `smallest_student`: the smallest N_S predicted to beat a reference loss with a teacher;
(d) `versus_supervised`: distillation against training the same student from scratch
    (Eq. 1) at equal compute, counted as in the paper's Eq. 9 with F(N) = 2N FLOPs per token
    forward: 6 N_S D_S to train the student, 2 N_T D_S for the teacher's forward passes on
    the D_S transfer tokens, 6 N_T D_T to train the teacher.

Parameter dicts hold all 15 parameters of `laws.distillation`. Losses in nats per token,
N in non-embedding parameters, D in tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from scalelab.analysis import laws

Params = dict[str, float]
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point answer and its percentile interval over bootstrap refits (NaN without
    refits). `unreached`: share of refits whose answer is infinite (e.g. never reach a
    target), which the upper bound then is."""

    value: float
    lo: float = float("nan")
    hi: float = float("nan")
    unreached: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "unreached": self.unreached}


def estimate(
    answer: Callable[[Params], float], params: Params, samples: Sequence[Params] = ()
) -> Estimate:
    """`answer(params)` with the 95% percentile interval of `answer` over `samples` (refits).
    Infinite answers count towards the upper tail; NaN ones are left out."""
    value = float(answer(params))
    if len(samples) < 2:
        return Estimate(value)
    vals = np.array([answer(p) for p in samples], float)
    vals = vals[~np.isnan(vals)]
    if len(vals) < 2:
        return Estimate(value)
    q = 100 * (1 - LEVEL) / 2
    # Linear percentiles as `Bootstrap.ci`; with infinite answers, interpolating towards
    # inf is undefined, so the nearest ranks outward are taken instead.
    finite = bool(np.isfinite(vals).all())
    lo = np.percentile(vals, q, method="linear" if finite else "lower")
    hi = np.percentile(vals, 100 - q, method="linear" if finite else "higher")
    return Estimate(value, float(lo), float(hi), float(np.mean(np.isinf(vals))))


# --- (a) ------------------------------------------------------------------------------------


def predict_student(
    params: Params, n_s: float, d_s: float, l_t: float, samples: Sequence[Params] = ()
) -> Estimate:
    """L_S(N_S, D_S, L_T) of Eq. 8 with its interval. Scalars > 0."""
    return estimate(lambda p: float(laws.distillation(n_s, d_s, l_t, p)), params, samples)


# --- (b) ------------------------------------------------------------------------------------


def capacity_gap(params: Params, n_s: float, d_s: float, span: float = 20.0) -> float:
    """The teacher loss L_T* > 0 minimising Eq. 8's L_S(N_S, D_S, L_T) at fixed N_S, D_S.

    L_S -> inf as L_T -> 0 (the L_T^-c0 factor) and grows like L_T for large L_T, so a
    minimum exists; it is found on a grid of 801 log-spaced L_T in [L~_S / span, span L~_S]
    (L~_S: the student's supervised loss, Eq. 1), then refined by bounded Brent between the
    grid's neighbours. NaN when the minimum is at an end of that range."""
    l_sup = float(laws.supervised(n_s, d_s, params))
    grid = np.geomspace(l_sup / span, l_sup * span, 801)
    with np.errstate(all="ignore"):
        ls = laws.distillation(n_s, d_s, grid, params)
    if not np.isfinite(ls).any():
        return float("nan")
    i = int(np.nanargmin(ls))
    if i in (0, len(grid) - 1):
        return float("nan")
    res = minimize_scalar(
        lambda lg: float(laws.distillation(n_s, d_s, np.exp(lg), params)),
        bounds=(np.log(grid[i - 1]), np.log(grid[i + 1])),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(np.exp(res.x))


@dataclass(frozen=True)
class GapAnswer:
    """(b) for one student: L_T* and the student's loss there; per teacher (label, L_T):
    predicted L_S and `side`: "past" (L_T below the interval of L_T*: too strong a teacher),
    "before" (above it: a stronger teacher would help), "at" (inside the interval, or equal
    to L_T* without one)."""

    n_s: float
    d_s: float
    l_t_star: Estimate
    l_s_star: Estimate
    teachers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "N_S": self.n_s,
            "D_S": self.d_s,
            "L_T_star": self.l_t_star.as_dict(),
            "L_S_at_L_T_star": self.l_s_star.as_dict(),
            "teachers": self.teachers,
        }


def gap_side(l_t: float, star: Estimate) -> str:
    """before | past | at: where teacher loss `l_t` sits against the capacity gap `star`."""
    lo, hi = (star.lo, star.hi) if np.isfinite(star.lo) else (star.value, star.value)
    if not np.isfinite(star.value):
        return "unknown"
    if l_t > hi:
        return "before"
    if l_t < lo:
        return "past"
    return "at"


def gap_answer(
    params: Params,
    n_s: float,
    d_s: float,
    teachers: Sequence[tuple[str, float]],
    samples: Sequence[Params] = (),
) -> GapAnswer:
    """(b): the capacity gap of a student of `n_s` parameters distilled on `d_s` tokens,
    and where each (label, L_T) of `teachers` sits against it."""
    star = estimate(lambda p: capacity_gap(p, n_s, d_s), params, samples)

    def best_loss(p: Params) -> float:
        lt = capacity_gap(p, n_s, d_s)
        return float(laws.distillation(n_s, d_s, lt, p)) if np.isfinite(lt) else float("nan")

    rows = [
        {
            "teacher": label,
            "L_T": float(l_t),
            "L_S": predict_student(params, n_s, d_s, l_t, samples).as_dict(),
            "side": gap_side(float(l_t), star),
        }
        for label, l_t in teachers
    ]
    return GapAnswer(n_s, d_s, star, estimate(best_loss, params, samples), rows)


# --- (c) ------------------------------------------------------------------------------------


def smallest_student(
    params: Params,
    target: float,
    l_t: float,
    *,
    d_s: float | None = None,
    tokens_per_param: float | None = None,
    n_range: tuple[float, float] = (1.0, 1e18),
) -> float:
    """Smallest N_S with L_S(N_S, D_S, L_T) <= `target` (Eq. 8), D_S fixed (`d_s`) or
    D_S = `tokens_per_param` * N_S (exactly one is given). L_S falls with N_S (L~_S and
    the reducible term both fall), so the root is found by Brent on log N_S within
    `n_range`; inf when even the largest N_S stays above the target, the lower end of
    `n_range` when the smallest is already below. Raises ValueError unless one of d_s,
    tokens_per_param is given."""
    if (d_s is None) == (tokens_per_param is None):
        raise ValueError("give exactly one of d_s, tokens_per_param")

    def gap(log_n: float) -> float:
        n = float(np.exp(log_n))
        d = d_s if d_s is not None else tokens_per_param * n
        return float(laws.distillation(n, d, l_t, params)) - target

    lo, hi = np.log(n_range[0]), np.log(n_range[1])
    with np.errstate(all="ignore"):
        f_hi, f_lo = gap(hi), gap(lo)
    if not f_hi <= 0:
        return float("inf")
    if f_lo <= 0:
        return float(n_range[0])
    return float(np.exp(brentq(gap, lo, hi, xtol=1e-10)))


# --- (d) ------------------------------------------------------------------------------------


def flops(n_s: float, d_s: float, n_t: float | None = None, d_t: float | None = None):
    """Compute of one distillation, FLOP (Busbridge et al. 2025, Eq. 9 with F(N) = 2N):
    (student training 6 N_S D_S, + teacher forward passes 2 N_T D_S, + teacher training
    6 N_T D_T); the last two NaN when N_T (or D_T) is not given."""
    student = 6.0 * n_s * d_s
    logits = 2.0 * n_t * d_s if n_t is not None else float("nan")
    teacher = 6.0 * n_t * d_t if n_t is not None and d_t is not None else float("nan")
    return student, logits, teacher


def versus_supervised(
    params: Params,
    n_s: float,
    d_s: float,
    l_t: float,
    *,
    n_t: float | None = None,
    d_t: float | None = None,
    samples: Sequence[Params] = (),
) -> list[dict[str, Any]]:
    """(d): distilling a student (N_S, D_S) from a teacher (L_T; N_T, D_T) against training
    the same N_S from scratch (Eq. 1) on the tokens that the same compute buys, D = C / 6 N_S:

    - "student compute": C = 6 N_S D_S (the supervised student sees D_S tokens);
    - "+ teacher forward": C adds 2 N_T D_S (an existing teacher labels the transfer set);
    - "+ teacher training": C also adds 6 N_T D_T (the teacher is trained for this student).

    One dict per comparison that the given N_T, D_T allow: `compute` (FLOP), `D_supervised`,
    `L_supervised` and `L_distilled` (Estimates as dicts), `advantage` = L_supervised -
    L_distilled (paired over refits; > 0: distillation better) and `verdict`: "distill",
    "train from scratch" or "undecided" (the advantage's interval contains 0)."""
    student, logits, teacher = flops(n_s, d_s, n_t, d_t)
    budgets = [("student compute", student)]
    if np.isfinite(logits):
        budgets.append(("+ teacher forward", student + logits))
    if np.isfinite(teacher):
        budgets.append(("+ teacher training", student + logits + teacher))
    dist = predict_student(params, n_s, d_s, l_t, samples)
    out = []
    for name, c in budgets:
        d_sup = c / (6.0 * n_s)

        def sup(p: Params, d_sup: float = d_sup) -> float:
            return float(laws.supervised(n_s, d_sup, p))

        def adv(p: Params, sup=sup) -> float:
            return sup(p) - float(laws.distillation(n_s, d_s, l_t, p))

        a = estimate(adv, params, samples)
        lo, hi = (a.lo, a.hi) if np.isfinite(a.lo) else (a.value, a.value)
        verdict = "distill" if lo > 0 else "train from scratch" if hi < 0 else "undecided"
        out.append(
            {
                "budget": name,
                "compute": c,
                "D_supervised": d_sup,
                "L_supervised": estimate(sup, params, samples).as_dict(),
                "L_distilled": dist.as_dict(),
                "advantage": a.as_dict(),
                "verdict": verdict,
            }
        )
    return out
