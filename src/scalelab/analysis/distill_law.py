"""Fitting the distillation scaling law of Busbridge et al. (2025, "Distillation Scaling
Laws", arXiv 2502.08606): the student's cross-entropy from its size, its distillation tokens
and its teacher's cross-entropy (`laws.distillation`, their Eq. 8).

Two stages, as in the paper:

1. the supervised law L~(N, D) = E + (A/N^alpha + B/D^beta)^gamma (their Eq. 1) is fitted to
   the from-scratch runs of the same grid (students trained without a teacher, and the
   teachers themselves);
2. the nine distillation coefficients (c0, c1, d1, f1, A', alpha', B', beta', gamma') are
   fitted to the distilled runs with L~_S = L~(N_S, D_S) held at the stage-1 fit.

Why two stages and not one joint fit: Eq. 8 depends on the supervised law only through
L~_S, the loss the same student would reach from scratch, which is a measured quantity of
the from-scratch runs; fitting it there keeps the distilled points from bending the
supervised law to suit the broken power law (15 parameters at once on a small grid would
trade E against d1 and c0). It is also how the paper fits: the supervised coefficients are
fixed before the distillation ones. Its uncertainty is not lost: the bootstrap resamples
both tables and refits both stages.

Both stages minimise the summed Huber loss (delta = 1e-3) of log L_hat - log L, as this
package fits Chinchilla (Hoffmann et al. 2022, Approach 3; `fitting.fit_chinchilla`): a
vectorised scoring of a grid of starts, then L-BFGS-B with analytic gradients from the best
`top_k`. (The paper's own delta and grid could not be checked offline; this follows the
package's Chinchilla fit.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from scalelab.analysis import laws
from scalelab.analysis.chinchilla_fast import default_grid
from scalelab.analysis.fitting import FitResult
from scalelab.analysis.uncertainty import Bootstrap, Holdout, r_squared, refit_samples

DELTA = 1e-3

# Stage-2 box (L-BFGS-B bounds), on theta = (c0, c1, log d1, log f1, a', alpha', b', beta',
# gamma') with A' = e^a', B' = e^b'. Wide enough for any sensible law; a fit that ends on
# one is flagged by `identify.flags` through `extras["bounds"]`.
_BOX = (
    (0.0, 20.0),
    (0.0, 30.0),
    (np.log(0.05), np.log(20.0)),
    (np.log(0.02), np.log(20.0)),
    (-100.0, 100.0),
    (0.0, 3.0),
    (-100.0, 100.0),
    (0.0, 3.0),
    (0.02, 5.0),
)
DISTILL_BOUNDS = {
    "c0": (0.0, 20.0, 1.0),
    "c1": (0.0, 30.0, 1.0),
    "d1": (0.05, 20.0, 0.05),
    "f1": (0.02, 20.0, 0.02),
    "alpha'": (0.0, 3.0, 1.0),
    "beta'": (0.0, 3.0, 1.0),
    "gamma'": (0.02, 5.0, 0.02),
}
_GAMMA_BOX = (0.02, 5.0)


@dataclass(frozen=True)
class DistillData:
    """The two tables, as float arrays (all > 0). From-scratch runs: `n`, `d`, `loss`, shape
    (m,): non-embedding parameters, training tokens, cross-entropy (nats per token).
    Distilled runs: `n_s`, `d_s`, `l_t`, `l_s`, shape (k,): student N_S, distillation tokens
    D_S, teacher cross-entropy L_T and the student's cross-entropy L_S."""

    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    n_s: np.ndarray
    d_s: np.ndarray
    l_t: np.ndarray
    l_s: np.ndarray

    def take(self, scratch: np.ndarray, distilled: np.ndarray) -> DistillData:
        """The rows `scratch` of the first table and `distilled` of the second."""
        return DistillData(
            self.n[scratch], self.d[scratch], self.loss[scratch],
            self.n_s[distilled], self.d_s[distilled], self.l_t[distilled], self.l_s[distilled],
        )  # fmt: skip


@dataclass(frozen=True)
class DistillFit:
    """Both stages. `supervised`: the Eq. 1 fit (law "supervised"); `distill`: the Eq. 8 fit
    (law "distillation"), whose `params` hold all 15 parameters (the supervised ones fixed),
    so `distill.predict(N_S, D_S, L_T)` evaluates Eq. 8."""

    supervised: FitResult
    distill: FitResult

    @property
    def params(self) -> dict[str, float]:
        return dict(self.distill.params)


# --- stage 1: the supervised law (Eq. 1) ----------------------------------------------------


def _sup_objective(theta: np.ndarray, ln: np.ndarray, ld: np.ndarray, ll: np.ndarray, delta):
    """Huber of log L_hat - log L, log L_hat = LSE(e, gamma LSE(a - alpha ln, b - beta ld)),
    and its gradient, batched: theta (S, 6) rows (a, b, e, alpha, beta, gamma)."""
    theta = np.atleast_2d(theta)
    a, b, e, alpha, beta, gam = (theta[:, i : i + 1] for i in range(6))
    t1, t2 = a - alpha * ln, b - beta * ld
    p = np.logaddexp(t1, t2)
    w1 = np.exp(t1 - p)
    gp = gam * p
    logl = np.logaddexp(e, gp)
    q = np.exp(gp - logl)  # share of the reducible term
    r = logl - ll
    ar = np.abs(r)
    f = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(axis=1)
    h = np.clip(r, -delta, delta)
    hq = h * q
    grad = np.column_stack(
        [
            (hq * gam * w1).sum(1),
            (hq * gam * (1 - w1)).sum(1),
            (h * (1 - q)).sum(1),
            -(hq * gam * w1 * ln).sum(1),
            -(hq * gam * (1 - w1) * ld).sum(1),
            (hq * p).sum(1),
        ]
    )
    return f, grad


def _refine(objective, theta0: np.ndarray, bounds) -> object:
    def fun(th: np.ndarray):
        f, g = objective(th[None, :])
        return float(f[0]), g[0]

    # Tight tolerances: the Huber objective is ~1e-3, far below scipy's default stopping scale.
    return minimize(
        fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12},
    )  # fmt: skip


def _best(objective, starts: np.ndarray, bounds, top_k: int):
    """Score every start, refine the best `top_k`; (best solution, distinct optima)."""
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    starts = np.clip(starts, lo, hi)
    f0, _ = objective(starts)
    f0 = np.where(np.isfinite(f0), f0, np.inf)
    order = np.argsort(f0)[:top_k]
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(all="ignore"):
        sols = sorted((_refine(objective, starts[i], bounds) for i in order), key=lambda s: s.fun)
    optima: list[np.ndarray] = []
    for s in sols:
        if np.isfinite(s.fun) and all(np.max(np.abs(s.x - o)) > 1e-3 for o in optima):
            optima.append(s.x)
    return sols[0], optima


def fit_supervised(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    gamma: float | None = None,
    init: list[dict[str, float]] | None = None,
    top_k: int = 20,
) -> FitResult:
    """Fit Eq. 1 of Busbridge et al. (2025), E + (A/N^alpha + B/D^beta)^gamma, by Huber
    (delta 1e-3) on log L from the Hoffmann et al. grid of 4,500 starts times gamma in {0.5,
    1} (or from `init`, for bootstrap refits). `gamma` given: held there (1 is Chinchilla).
    n, d, loss: shape (m,), positive (parameters, tokens, nats per token)."""
    ln, ld, ll = (np.log(np.asarray(v, float)) for v in (n, d, loss))
    gammas = (gamma,) if gamma is not None else (0.5, 1.0)
    if init is not None:
        starts = np.array(
            [[np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"],
              p["gamma"]] for p in init]
        )  # fmt: skip
    else:
        grid = default_grid()
        starts = np.vstack([np.column_stack([grid, np.full(len(grid), g)]) for g in gammas])
    if gamma is not None:
        starts[:, 5] = gamma
    g_box = (gamma, gamma) if gamma is not None else _GAMMA_BOX
    bounds = [(None, None)] * 3 + [(0.0, None), (0.0, None), g_box]

    def objective(th):
        return _sup_objective(th, ln, ld, ll, DELTA)

    sol, optima = _best(objective, starts, bounds, top_k)
    params = _sup_params(sol.x)
    yhat = laws.supervised(n, d, params)
    free = laws.SUPERVISED_PARAMS if gamma is None else laws.SUPERVISED_PARAMS[:5]
    bounds_out = {"E": (0.0, np.inf, float(np.min(loss)))}
    if gamma is None:
        bounds_out["gamma"] = (*_GAMMA_BOX, _GAMMA_BOX[0])
    notes = () if gamma is None else (f"gamma of Eq. 1 held at {gamma:g}",)
    return FitResult(
        "supervised", params, r_squared(loss, yhat), np.log(loss) - np.log(yhat), len(loss),
        float(sol.fun), notes,
        {"free": free, "bounds": bounds_out, "local_optima": [_sup_params(o) for o in optima]},
    )  # fmt: skip


def _sup_params(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta, gam = (float(v) for v in theta)
    return {"E": np.exp(e), "A": np.exp(a), "alpha": alpha, "B": np.exp(b), "beta": beta,
            "gamma": gam}  # fmt: skip


# --- stage 2: the distillation coefficients (Eq. 8) ----------------------------------------


def _dist_objective(theta, lt, ls_sup, ln, ld, ll, delta):
    """Huber of log L_hat_S - log L_S and its gradient, batched over theta (S, 9) rows
    (c0, c1, log d1, log f1, a', alpha', b', beta', gamma'); ls_sup = log L~_S."""
    theta = np.atleast_2d(theta)
    c0, c1, ld1, lf1, a, alpha, b, beta, gam = (theta[:, i : i + 1] for i in range(9))
    f1 = np.exp(lf1)
    u = lt - ls_sup - ld1
    z = u / f1
    sp = np.logaddexp(0.0, z)
    sig = np.exp(z - sp)  # sigmoid(z)
    t1, t2 = a - alpha * ln, b - beta * ld
    p = np.logaddexp(t1, t2)
    w1 = np.exp(t1 - p)
    big_r = -c0 * lt - c1 * f1 * sp + gam * p  # log of the second term of Eq. 8
    logl = np.logaddexp(lt, big_r)
    q = np.exp(big_r - logl)
    r = logl - ll
    ar = np.abs(r)
    f = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(axis=1)
    hq = np.clip(r, -delta, delta) * q
    grad = np.column_stack(
        [
            -(hq * lt).sum(1),
            -(hq * f1 * sp).sum(1),
            (hq * c1 * sig).sum(1),
            -(hq * c1 * f1 * (sp - z * sig)).sum(1),
            (hq * gam * w1).sum(1),
            -(hq * gam * w1 * ln).sum(1),
            (hq * gam * (1 - w1)).sum(1),
            -(hq * gam * (1 - w1) * ld).sum(1),
            (hq * p).sum(1),
        ]
    )
    return f, grad


def _dist_starts(lt, ls_sup, ln, ld, ll) -> np.ndarray:
    """A grid over (c0, c1, d1, f1, alpha', beta', gamma', b' - a' offset), each start's
    level (a', b' shifted together) matched to the mean of log(L_S - L_T)."""
    axes = np.meshgrid(
        [0.5, 2.0, 4.0], [1.0, 4.0, 10.0], np.log([0.7, 1.0, 1.4]), np.log([0.2, 0.7]),
        [0.2, 0.5], [0.2, 0.5], [0.5, 1.0], [-2.0, 0.0, 2.0], indexing="ij",
    )  # fmt: skip
    c0, c1, ld1, lf1, alpha, beta, gam, off = (v.ravel()[:, None] for v in axes)
    a0 = alpha * ln.mean()
    b0 = beta * ld.mean() + off
    f1 = np.exp(lf1)
    sp = np.logaddexp(0.0, (lt - ls_sup - ld1) / f1)
    p0 = np.logaddexp(a0 - alpha * ln, b0 - beta * ld)
    r0 = -c0 * lt - c1 * f1 * sp + gam * p0
    target = np.log(np.maximum(np.exp(ll) - np.exp(lt), 0.02 * np.exp(ll)))
    k = (target - r0).mean(axis=1, keepdims=True) / gam
    cols = [c0, c1, ld1, lf1, a0 + k, alpha, b0 + k, beta, gam]
    return np.hstack([np.broadcast_to(c, c0.shape) for c in cols])


def fit_distill_coeffs(
    n_s: np.ndarray,
    d_s: np.ndarray,
    l_t: np.ndarray,
    l_s: np.ndarray,
    sup_params: dict[str, float],
    *,
    init: list[dict[str, float]] | None = None,
    top_k: int = 20,
) -> FitResult:
    """Stage 2: the nine coefficients of Eq. 8 with L~_S from `sup_params` (Eq. 1) held.

    Huber (delta 1e-3) on log L_S; a grid of 2,592 starts (see `_dist_starts`) scored at once,
    the best `top_k` refined by L-BFGS-B within the box `_BOX`; with `init` (bootstrap refits)
    only those starts. Arrays shape (k,), positive. Returns law "distillation" whose params
    hold the six supervised ones too (fixed here: `extras["free"]` lists the nine)."""
    n_s, d_s, l_t, l_s = (np.asarray(v, float) for v in (n_s, d_s, l_t, l_s))
    lt, ln, ld, ll = np.log(l_t), np.log(n_s), np.log(d_s), np.log(l_s)
    ls_sup = np.log(laws.supervised(n_s, d_s, sup_params))
    if init is not None:
        starts = np.array([_dist_theta(p) for p in init])
    else:
        starts = _dist_starts(lt, ls_sup, ln, ld, ll)

    def objective(th):
        return _dist_objective(th, lt, ls_sup, ln, ld, ll, DELTA)

    sol, optima = _best(objective, starts, _BOX, top_k)
    params = {**sup_params, **_dist_params(sol.x)}
    yhat = laws.distillation(n_s, d_s, l_t, params)
    return FitResult(
        "distillation", params, r_squared(l_s, yhat), np.log(l_s) - np.log(yhat), len(l_s),
        float(sol.fun), (),
        {"free": laws.DISTILL_PARAMS, "bounds": dict(DISTILL_BOUNDS),
         "local_optima": [{**sup_params, **_dist_params(o)} for o in optima]},
    )  # fmt: skip


def _dist_params(theta: np.ndarray) -> dict[str, float]:
    c0, c1, ld1, lf1, a, alpha, b, beta, gam = (float(v) for v in theta)
    return {"c0": c0, "c1": c1, "d1": np.exp(ld1), "f1": np.exp(lf1), "A'": np.exp(a),
            "alpha'": alpha, "B'": np.exp(b), "beta'": beta, "gamma'": gam}  # fmt: skip


def _dist_theta(p: dict[str, float]) -> list[float]:
    return [p["c0"], p["c1"], np.log(p["d1"]), np.log(p["f1"]), np.log(p["A'"]), p["alpha'"],
            np.log(p["B'"]), p["beta'"], p["gamma'"]]  # fmt: skip


# --- both stages, bootstrap, holdout ---------------------------------------------------------


def fit_distillation(
    data: DistillData, *, gamma: float | None = None, warm: DistillFit | None = None
) -> DistillFit:
    """Stage 1 on the from-scratch table, then stage 2 on the distilled table. `warm` (a fit
    on similar data) replaces both grids by its optimum: how bootstrap refits stay cheap."""
    sup_init = [dict(warm.supervised.params)] if warm is not None else None
    sup = fit_supervised(data.n, data.d, data.loss, gamma=gamma, init=sup_init)
    dist_init = None
    if warm is not None:
        dist_init = [warm.params, *warm.distill.extras.get("local_optima", [])[1:2]]
    dist = fit_distill_coeffs(
        data.n_s, data.d_s, data.l_t, data.l_s, sup.params, init=dist_init,
        top_k=10 if warm is None else 2,
    )  # fmt: skip
    return DistillFit(sup, dist)


def bootstrap_distillation(
    data: DistillData, full: DistillFit, n_boot: int, *, gamma: float | None = None, seed: int = 0
) -> Bootstrap:
    """`n_boot` refits of both stages, each on both tables resampled with replacement (each
    table on its own: a resample keeps its numbers of from-scratch and distilled runs).
    Seeded numpy Generator; failed or non-finite refits are counted, not kept. Samples of
    all 15 parameters: `Bootstrap.samples[name]`, shape (n_ok,)."""
    rng = np.random.default_rng(seed)
    m, k = len(data.loss), len(data.l_s)

    def refit() -> dict[str, float]:
        sample = data.take(rng.integers(0, m, m), rng.integers(0, k, k))
        return fit_distillation(sample, gamma=gamma, warm=full).params

    rows, failed = refit_samples(n_boot, refit)
    samples = {name: np.array([r[name] for r in rows], float) for name in full.params}
    return Bootstrap(samples, n_boot, failed, seed)


HOLDOUT_BY = ("student", "teacher")


def holdout_split(data: DistillData, by: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scratch rows kept, distilled rows held out) for a holdout of the `k` largest student
    sizes (`by` "student": from-scratch runs of those sizes go too, so L~_S is extrapolated
    as well) or the `k` strongest teachers (lowest L_T; `by` "teacher")."""
    if by == "student":
        held = np.unique(data.n_s)[-k:]
        return ~np.isin(data.n, held), np.isin(data.n_s, held)
    teachers = np.unique(data.l_t)
    return np.ones(len(data.n), bool), data.l_t <= teachers[k - 1]


def holdout_distillation(
    data: DistillData, by: str = "student", k: int = 1, *, gamma: float | None = None
) -> Holdout:
    """Refit both stages without the `k` largest students (or strongest teachers, see
    `holdout_split`) and predict the held-out distilled runs: relative errors (L_hat - L)/L
    and absolute errors (nats per token), one per held-out run, in `Holdout`."""
    keep_scratch, test = holdout_split(data, by, k)
    train = data.take(np.flatnonzero(keep_scratch), np.flatnonzero(~test))
    fit = fit_distillation(train, gamma=gamma)
    pred = laws.distillation(data.n_s[test], data.d_s[test], data.l_t[test], fit.params)
    err = pred - data.l_s[test]
    return Holdout(int(test.sum()), err / data.l_s[test], fit.params, err)
