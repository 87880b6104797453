"""Fitters for the laws in `laws.py`; each takes clean float arrays and returns a `FitResult`.

Input checks (columns, NaN, non-positive values, too few points) live in `table.py`; the
fitters assume positive, finite inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from scalelab.analysis import laws
from scalelab.analysis.chinchilla_fast import fit_huber_lse
from scalelab.analysis.uncertainty import r_squared
from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class FitResult:
    """A fitted law.

    `params`: name -> value. `residuals`: log(y) - log(y_hat) per point (the fitted scale),
    shape (n_points,). `r2`: coefficient of determination of y_hat against y on the loss scale.
    `objective`: the minimised loss. `notes`: human-readable remarks (e.g. "E_x fitted freely").
    `extras["free"]`: the fitted (not fixed) parameters; `extras["bounds"]`: name -> (lower,
    upper, scale) for bounded parameters, read by `identify.flags` (a value within 1e-3 scale
    of a bound is "on its bound").
    """

    law: str
    params: dict[str, float]
    r2: float
    residuals: np.ndarray
    n_points: int
    objective: float
    notes: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def predict(self, *inputs: np.ndarray) -> np.ndarray:
        """Evaluate the law: (x,) for power laws, (N, D) for chinchilla and supervised, (N_S,
        D_S, L_T) for distillation, (L_x,) for loss-to-loss and loss-to-acc, (x,) or (N, D) for
        task-accuracy (size only: the chain)."""
        return predict(self.law, self.params, *inputs)


def predict(law: str, params: laws.Params, *inputs: np.ndarray) -> np.ndarray:
    """Evaluate `law` with `params` on `inputs` (see `FitResult.predict`)."""
    if law in ("power", "pure-power"):
        return laws.power_law(inputs[0], params)
    if law == "chinchilla":
        return laws.chinchilla(inputs[0], inputs[1], params)
    if law == "supervised":
        return laws.supervised(inputs[0], inputs[1], params)
    if law == "distillation":
        return laws.distillation(inputs[0], inputs[1], inputs[2], params)
    if law == "loss-to-loss":
        return laws.loss_to_loss(inputs[0], params)
    if law == "loss-to-acc":
        return laws.acc_from_loss(inputs[0], params)
    if law == "task-accuracy":
        return laws.task_accuracy(inputs, params)
    raise ValueError(f"unknown law {law!r}")


def _result(
    law: str,
    params: dict[str, float],
    inputs: Sequence[np.ndarray],
    y: np.ndarray,
    objective: float,
    notes: tuple[str, ...] = (),
    **extras: Any,
) -> FitResult:
    yhat = predict(law, params, *inputs)
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.log(y) - np.log(yhat)
    return FitResult(
        law, params, r_squared(y, yhat), resid, len(y), float(objective), notes, extras
    )


# --- power law in one variable --------------------------------------------------------------


def fit_power_law(
    x: np.ndarray, y: np.ndarray, *, offset: bool = True, init: laws.Params | None = None
) -> FitResult:
    """Fit y = E + A x^(-alpha) (or A x^(-alpha) when `offset` is False) by least squares on log y.

    x, y: shape (n,), positive. `init` (e.g. a full-data fit) is tried first, which keeps
    bootstrap refits cheap. E is parameterised as exp(e) so it stays positive.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    # Rescaling x to geometric mean 1 keeps log A of order log y and the problem well conditioned.
    x0 = float(np.exp(np.mean(np.log(x))))
    lx, ly = np.log(x / x0), np.log(y)
    if not offset:
        slope, intercept = np.polyfit(lx, ly, 1)
        params = {"A": float(np.exp(intercept) * x0 ** (-slope)), "alpha": float(-slope)}
        sse = float(np.sum((ly - (intercept + slope * lx)) ** 2))
        return _result("pure-power", params, (x,), y, sse, free=laws.PURE_POWER_PARAMS)

    def resid(th: np.ndarray) -> np.ndarray:
        a, alpha, e = th
        return np.logaddexp(a - alpha * lx, e) - ly

    def jac(th: np.ndarray) -> np.ndarray:
        a, alpha, e = th
        t1 = a - alpha * lx
        w1 = np.exp(t1 - np.logaddexp(t1, e))
        return np.column_stack([w1, -w1 * lx, 1.0 - w1])

    best = None
    for th0 in _power_starts(lx, y, x0, init):
        sol = least_squares(resid, th0, jac=jac, method="lm", xtol=1e-12, ftol=1e-12)
        if best is None or sol.cost < best.cost:
            best = sol
    a, alpha, e = best.x
    params = {"E": float(np.exp(e)), "A": float(np.exp(a) * x0**alpha), "alpha": float(alpha)}
    # E = exp(e) > 0: its bound is 0, on the scale of the smallest y.
    bounds = {"E": (0.0, np.inf, float(y.min()))}
    return _result("power", params, (x,), y, 2.0 * best.cost, free=laws.POWER_PARAMS, bounds=bounds)


def _power_starts(
    lx: np.ndarray, y: np.ndarray, x0: float, init: laws.Params | None
) -> list[np.ndarray]:
    """Starting points (log A', alpha, log E): `init` first, then a small grid over E and alpha."""
    starts = []
    if init is not None and init.get("E", 0) > 0:
        a = np.log(init["A"]) - init["alpha"] * np.log(x0)
        starts.append(np.array([a, init["alpha"], np.log(init["E"])]))
    fractions = (0.5, 0.9) if init is not None else (0.01, 0.3, 0.6, 0.9)
    alphas = (0.3,) if init is not None else (0.1, 0.3, 0.7, 1.5)
    for frac in fractions:
        e = frac * y.min()
        for alpha in alphas:
            a = float(np.mean(np.log(np.maximum(y - e, 1e-12 * y.min())) + alpha * lx))
            starts.append(np.array([a, alpha, np.log(e)]))
    return starts


# --- Chinchilla L(N, D), Approach 3 ---------------------------------------------------------


def fit_chinchilla(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = 1e-3,
    init: Sequence[laws.Params] | None = None,
    top_k: int = 20,
) -> FitResult:
    """Chinchilla Approach 3: Huber(delta) on log L with the log-sum-exp parameterisation.

    log L_hat = LSE(a - alpha log N, b - beta log D, e); A = e^a, B = e^b, E = e^e; objective is
    the SUM of Huber losses. Without `init`, all 4,500 grid starts of Hoffmann et al. are scored
    at once and the best `top_k` are refined with analytic-gradient L-BFGS-B (see
    `chinchilla_fast`). With `init` (bootstrap refits), only those starts are refined.
    n, d, loss: shape (m,), positive; N in parameters, D in tokens.
    """
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    starts = None
    if init is not None:
        starts = np.array(
            [[np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]] for p in init]
        )
    fun, theta, optima = fit_huber_lse(
        np.log(n), np.log(d), np.log(loss), delta=delta, starts=starts, top_k=top_k
    )
    a, b, e, alpha, beta = theta
    params = {
        "E": float(np.exp(e)),
        "A": float(np.exp(a)),
        "alpha": float(alpha),
        "B": float(np.exp(b)),
        "beta": float(beta),
    }
    # Distinct local optima, best first: good warm starts for bootstrap refits.
    local = [_theta_params(t) for t in optima]
    bounds = {"E": (0.0, np.inf, float(loss.min()))}  # E = exp(e) > 0
    return _result(
        "chinchilla",
        params,
        (n, d),
        loss,
        fun,
        local_optima=local,
        free=laws.CHINCHILLA_PARAMS,
        bounds=bounds,
    )


def _theta_params(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = (float(v) for v in theta)
    return {"E": np.exp(e), "A": np.exp(a), "alpha": alpha, "B": np.exp(b), "beta": beta}


# --- loss-to-loss ---------------------------------------------------------------------------


def fit_loss_to_loss(
    lx: np.ndarray, ly: np.ndarray, *, e_x: float | None = None, e_y: float | None = None
) -> FitResult:
    """Fit L_y = K (L_x - E_x)^kappa + E_y by least squares on log L_y.

    With E_x and E_y given (irreducible losses from each metric's own scaling fit) this is a
    straight line in log-log space. Any E not given is fitted as a free parameter constrained
    to 0 <= E < min(L) and the result says so in `notes`. lx, ly: shape (n,), positive.
    """
    lx, ly = np.asarray(lx, float), np.asarray(ly, float)
    for name, val, data in (("E_x", e_x, lx), ("E_y", e_y, ly)):
        if val is not None and not (0 <= val < data.min()):
            raise ScalelabError(
                f"{name}={val:.4g} must satisfy 0 <= {name} < min loss ({data.min():.4g})"
            )
    if e_x is not None and e_y is not None:
        gx, gy = np.log(lx - e_x), np.log(ly - e_y)
        with warnings.catch_warnings():  # a bootstrap draw of few points may repeat one x
            warnings.simplefilter("ignore", np.exceptions.RankWarning)
            kappa, log_k = np.polyfit(gx, gy, 1)
        params = {"K": float(np.exp(log_k)), "kappa": float(kappa), "E_x": e_x, "E_y": e_y}
        sse = float(np.sum((gy - (log_k + kappa * gx)) ** 2))
        return _result("loss-to-loss", params, (lx,), ly, sse, free=("K", "kappa"))
    return _fit_l2l_free(lx, ly, e_x, e_y)


def _fit_l2l_free(
    lx: np.ndarray, ly: np.ndarray, e_x: float | None, e_y: float | None
) -> FitResult:
    """Loss-to-loss with E_x and/or E_y as bounded free parameters (multi-start least squares)."""
    free = [name for name, v in (("E_x", e_x), ("E_y", e_y)) if v is None]
    upper = {"E_x": lx.min() * (1 - 1e-6), "E_y": ly.min() * (1 - 1e-6)}

    def unpack(th: np.ndarray) -> dict[str, float]:
        p = {"K": float(np.exp(th[0])), "kappa": float(th[1]), "E_x": e_x, "E_y": e_y}
        p.update({name: float(v) for name, v in zip(free, th[2:], strict=True)})
        return p

    def resid(th: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            r = np.log(laws.loss_to_loss(lx, unpack(th))) - np.log(ly)
        return np.nan_to_num(r, nan=1e3, posinf=1e3, neginf=-1e3)

    lo = [-np.inf, -np.inf] + [0.0] * len(free)
    hi = [np.inf, np.inf] + [upper[f] for f in free]
    best = None
    for frac in (0.0, 0.5, 0.9):
        guess = {"E_x": frac * lx.min(), "E_y": frac * ly.min()}
        ex = e_x if e_x is not None else guess["E_x"]
        ey = e_y if e_y is not None else guess["E_y"]
        kappa, log_k = np.polyfit(np.log(lx - ex), np.log(ly - ey), 1)
        th0 = np.array([log_k, kappa] + [guess[f] for f in free])
        sol = least_squares(resid, th0, bounds=(lo, hi), xtol=1e-12, ftol=1e-12)
        if best is None or sol.cost < best.cost:
            best = sol
    notes = tuple(f"{f} fitted as a free parameter (0 <= {f} < min loss)" for f in free)
    bounds = {f: (0.0, float(upper[f]), float(upper[f])) for f in free}
    return _result(
        "loss-to-loss",
        unpack(best.x),
        (lx,),
        ly,
        2.0 * best.cost,
        notes,
        free=("K", "kappa", *free),
        bounds=bounds,
    )


# --- irreducible loss of one metric ---------------------------------------------------------


def irreducible_loss(n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> tuple[float, str] | None:
    """E of a metric's own scaling fit, and how it was obtained; None when N and D cannot say.

    Both N and D vary (>= 3 distinct values each): Chinchilla L(N, D). Only one varies: a power
    law in it (E then includes the constant term of the other, which is the asymptote that
    group actually approaches). The estimate must lie in (0.01 min(loss), min(loss)) to be usable.
    """
    ok = np.isfinite(n) & np.isfinite(d) & np.isfinite(loss) & (n > 0) & (d > 0) & (loss > 0)
    n, d, loss = n[ok], d[ok], loss[ok]
    n_vary, d_vary = len(np.unique(n)) >= 3, len(np.unique(d)) >= 3
    try:
        if n_vary and d_vary and len(loss) >= 6:
            e, how = fit_chinchilla(n, d, loss, top_k=10).params["E"], "L(N, D) fit"
        elif (n_vary or d_vary) and len(loss) >= 4:
            x, name = (n, "N") if n_vary else (d, "D")
            e, how = fit_power_law(x, loss).params["E"], f"L({name}) fit"
        else:
            return None
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    # E at the bound 0 means the data could not pin it down (e.g. D nearly constant): unusable.
    if not (0.01 * loss.min() < e < loss.min()):
        return None
    return float(e), how
