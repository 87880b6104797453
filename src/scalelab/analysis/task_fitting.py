"""Fitters for task accuracy: accuracy from task loss (step 2), and the two-step chain.

Step 2 maps a model's loss on a task to its accuracy on it, with a floor at chance:
`acc_sigmoid` (Bhagia et al. 2024, Eq. 2) or `acc_exponential` (Gadre et al. 2024). The chain
(Bhagia et al.'s two-step prediction) first fits the task loss from size (`power_law` in one
variable, or `chinchilla` in N and D, their Eq. 1), then step 2, and predicts accuracy from
size alone. Step 1 with N and D uses this package's Chinchilla Approach 3 fitter (Huber on
log L); the paper's own code (allenai/OLMo-ladder) also fits step 1 with a Huber loss and
step 2 by least squares with the bounds used here (a <= 0 <= b <= 1, k >= 0).
Each step is fitted on its own points, as in the paper; the bootstrap carries both through
(`uncertainty.bootstrap` resamples rows once and calls `fit_task_accuracy`, which refits both).

Inputs are clean float arrays (checks live in `table.py` and `api.py`); accuracies are
fractions in [0, 1]; a chance level, when given, fixes the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from scalelab.analysis import laws
from scalelab.analysis.fitting import FitResult, fit_chinchilla, fit_power_law
from scalelab.analysis.uncertainty import r_squared
from scalelab.errors import ScalelabError

K_MAX = 200.0  # sigmoid slope bound, per unit of the task-loss range: a step beyond it
L0_REACH = 10.0  # L0 may sit this many task-loss ranges outside the data
FLAT_P = 0.05  # F-test level below which accuracy is taken to change with the task loss
ACC_FORMS = ("sigmoid", "exponential")


def _acc_result(
    law: str,
    params: dict[str, float],
    loss: np.ndarray,
    acc: np.ndarray,
    free: Sequence[str],
    bounds: dict[str, tuple[float, float, float]],
    notes: tuple[str, ...] = (),
    **extras: Any,
) -> FitResult:
    """A FitResult on the accuracy scale: residuals acc - acc_hat, R² of acc."""
    pred = laws.acc_from_loss(loss, params)
    sse = float(np.sum((acc - pred) ** 2))
    extras.update(free=tuple(free), bounds=bounds)
    return FitResult(law, params, r_squared(acc, pred), acc - pred, len(acc), sse, notes, extras)


def _flat_p_value(acc: np.ndarray, sse: float, n_free: int) -> float:
    """F-test of the fitted law against a constant accuracy; NaN when it cannot be run."""
    from scipy.stats import f as f_dist

    n = len(acc)
    sse0 = float(np.sum((acc - acc.mean()) ** 2))
    if n <= n_free or n_free < 2 or sse0 <= 0:
        return float("nan") if sse0 > 0 else 1.0
    if sse <= 1e-15 * sse0:
        return 0.0
    stat = ((sse0 - sse) / (n_free - 1)) / (sse / (n - n_free))
    return float(f_dist.sf(max(stat, 0.0), n_free - 1, n - n_free))


def _flat_level(acc: np.ndarray, chance: float | None) -> float:
    """What a flat task is predicted at: its mean accuracy, never below a given chance."""
    mean = float(acc.mean())
    return mean if chance is None else max(mean, chance)


# --- step 2: the sigmoid of Bhagia et al. ---------------------------------------------------


def fit_acc_sigmoid(
    loss: np.ndarray,
    acc: np.ndarray,
    *,
    floor: float | None = None,
    ceiling: float | None = None,
    init: laws.Params | None = None,
) -> FitResult:
    """Fit acc = floor + (ceiling - floor) / (1 + exp(k (L - L0))) by least squares on acc.

    Bhagia et al. 2024, Eq. (2) (see `laws.acc_sigmoid`). `floor` given (chance, 1 / number of
    choices) is held fixed, else fitted in [0, max acc]; `ceiling` likewise (e.g. 1), else
    fitted in [min acc, 1]; k in [0, K_MAX / range(L)], L0 within L0_REACH ranges of the data.
    Starts: a grid over (k, L0) with the floor and ceiling solved linearly at each, the best
    three (and `init`) refined with bounded least squares. When an F-test cannot tell the
    fit from a constant (p > FLAT_P) the result is that constant, not a curve through noise:
    floor = ceiling = the mean accuracy (or the given floor, if higher), k = 0, and
    extras["flat"] holds the p-value (the identifiability flags say so). loss, acc: (n,).
    """
    loss, acc = np.asarray(loss, float), np.asarray(acc, float)
    span = float(np.ptp(loss))
    if span <= 0:
        raise ScalelabError("the task loss takes a single value: no curve can be fitted")
    free = [n for n, v in (("floor", floor), ("ceiling", ceiling)) if v is None] + ["k", "L0"]
    bounds = {
        "floor": (0.0, float(acc.max()), 1.0),
        "ceiling": (float(acc.min()), 1.0, 1.0),
        "k": (0.0, K_MAX / span, K_MAX / span),
        "L0": (float(loss.min() - L0_REACH * span), float(loss.max() + L0_REACH * span), span),
    }
    bounds = {k: v for k, v in bounds.items() if k in free}
    lo = np.array([bounds[n][0] for n in free])
    hi = np.array([bounds[n][1] for n in free])

    def unpack(th: np.ndarray) -> dict[str, float]:
        p = dict(zip(free, (float(v) for v in th), strict=True))
        p.setdefault("floor", floor)
        p.setdefault("ceiling", ceiling)
        return {k: p[k] for k in laws.ACC_SIGMOID_PARAMS}

    def resid(th: np.ndarray) -> np.ndarray:
        return laws.acc_sigmoid(loss, unpack(th)) - acc

    starts = _sigmoid_starts(loss, acc, floor, ceiling, free, lo, hi)
    if init is not None and "L0" in init and init.get("k", 0) > 0:
        # A refit (bootstrap) starts from the full-data optimum and the best grid point only.
        starts = [np.clip([init[n] for n in free], lo, hi), starts[0]]
    best = None
    for th0 in starts:
        margin = 1e-9 * (hi - lo)
        th0 = np.clip(th0, lo + margin, hi - margin)
        sol = least_squares(resid, th0, bounds=(lo, hi), xtol=1e-12, ftol=1e-12)
        if best is None or sol.cost < best.cost:
            best = sol
    params = unpack(best.x)
    p_flat = _flat_p_value(acc, 2.0 * best.cost, len(free))
    if p_flat > FLAT_P:
        level = _flat_level(acc, floor)
        params = {"floor": level, "ceiling": level, "k": 0.0, "L0": float(np.median(loss))}
        return _acc_result("loss-to-acc", params, loss, acc, free, bounds, flat=p_flat)
    return _acc_result("loss-to-acc", params, loss, acc, free, bounds, flat_p=p_flat)


def _sigmoid_starts(
    loss: np.ndarray,
    acc: np.ndarray,
    floor: float | None,
    ceiling: float | None,
    free: list[str],
    lo: np.ndarray,
    hi: np.ndarray,
) -> list[np.ndarray]:
    """The three best (k, L0) grid points, with floor and ceiling solved linearly there."""
    span = float(np.ptp(loss))
    scored = []
    for k in np.array([1.0, 3.0, 10.0, 30.0]) / span:
        for l0 in (loss.min() - span, loss.min(), np.median(loss), loss.max(), loss.max() + span):
            s = 1.0 / (1.0 + np.exp(np.clip(k * (loss - l0), -700, 700)))
            # acc = floor (1 - s) + ceiling s: linear in whichever of the two is free.
            cols, target = [], acc.copy()
            for val, basis in ((floor, 1.0 - s), (ceiling, s)):
                if val is None:
                    cols.append(basis)
                else:
                    target = target - val * basis
            coef = np.linalg.lstsq(np.column_stack(cols), target, rcond=None)[0] if cols else []
            th = np.array([*coef, k, l0], dtype=float)
            th = np.clip(th, lo, hi)
            p = dict(zip(free, th, strict=True))
            p.setdefault("floor", floor)
            p.setdefault("ceiling", ceiling)
            sse = float(np.sum((laws.acc_sigmoid(loss, p) - acc) ** 2))
            scored.append((sse, th))
    scored.sort(key=lambda t: t[0])
    return [th for _, th in scored[:3]]


# --- step 2: the exponential of Gadre et al. ------------------------------------------------


def fit_acc_exponential(
    loss: np.ndarray,
    acc: np.ndarray,
    *,
    chance: float | None = None,
    init: laws.Params | None = None,
) -> FitResult:
    """Fit acc = 1 - epsilon + k exp(-gamma L) (Gadre et al. 2024) by least squares on acc.

    With `chance` given, epsilon = 1 - chance is held fixed (the error of guessing), else it is
    fitted in [0, 1]. k >= 0, gamma in [0, K_MAX / range(L)]. Starts: a grid over gamma with
    epsilon and k solved linearly at each. A fit an F-test cannot tell from a constant is
    replaced by the constant (k = 0, 1 - epsilon = the mean accuracy, or chance if higher;
    extras["flat"] = p).
    loss, acc: shape (n,).
    """
    loss, acc = np.asarray(loss, float), np.asarray(acc, float)
    span = float(np.ptp(loss))
    if span <= 0:
        raise ScalelabError("the task loss takes a single value: no curve can be fitted")
    lmin = float(loss.min())
    free = (["epsilon"] if chance is None else []) + ["k", "gamma"]
    g_max = K_MAX / span
    # Fitted as (c0 = 1 - epsilon, k' = k exp(-gamma lmin), gamma): well scaled whatever lmin.
    lo = np.array(([0.0] if chance is None else []) + [0.0, 0.0])
    hi = np.array(([1.0] if chance is None else []) + [np.inf, g_max])

    def unpack(th: np.ndarray) -> dict[str, float]:
        c0 = float(th[0]) if chance is None else chance
        kp, gamma = float(th[-2]), float(th[-1])
        return {"epsilon": 1.0 - c0, "k": kp * float(np.exp(gamma * lmin)), "gamma": gamma}

    def resid(th: np.ndarray) -> np.ndarray:
        c0 = th[0] if chance is None else chance
        return c0 + th[-2] * np.exp(-th[-1] * (loss - lmin)) - acc

    starts = []
    for gamma in np.array([0.1, 0.3, 1.0, 3.0, 10.0, 30.0]) / span:
        basis = np.exp(-gamma * (loss - lmin))
        if chance is None:
            c0, kp = np.linalg.lstsq(
                np.column_stack([np.ones_like(basis), basis]), acc, rcond=None
            )[0]
            th = np.array([c0, kp, gamma])
        else:
            kp = float(np.dot(basis, acc - chance) / np.dot(basis, basis))
            th = np.array([kp, gamma])
        th = np.clip(th, lo, np.where(np.isfinite(hi), hi, 1e12))
        starts.append((float(np.sum(resid(th) ** 2)), th))
    starts = [th for _, th in sorted(starts, key=lambda t: t[0])[:3]]
    if init is not None and "gamma" in init and init.get("k", 0) > 0:
        g = init["gamma"]
        th = [init["k"] * np.exp(-g * lmin), g]
        th = np.array(([1.0 - init["epsilon"]] if chance is None else []) + th)
        starts = [th, starts[0]]
    best = None
    for th0 in starts:
        margin = 1e-9 * np.where(np.isfinite(hi), hi - lo, 1.0)
        th0 = np.clip(th0, lo + margin, hi - margin)
        sol = least_squares(resid, th0, bounds=(lo, hi), xtol=1e-12, ftol=1e-12)
        if best is None or sol.cost < best.cost:
            best = sol
    params = unpack(best.x)
    bounds = {"k": (0.0, np.inf, 1.0), "gamma": (0.0, g_max, g_max)}
    if chance is None:
        bounds["epsilon"] = (0.0, 1.0, 1.0)
    p_flat = _flat_p_value(acc, 2.0 * best.cost, len(free))
    if p_flat > FLAT_P:
        level = _flat_level(acc, chance)
        params = {"epsilon": 1.0 - level, "k": 0.0, "gamma": params["gamma"]}
        return _acc_result("loss-to-acc", params, loss, acc, free, bounds, flat=p_flat)
    return _acc_result("loss-to-acc", params, loss, acc, free, bounds, flat_p=p_flat)


def fit_loss_to_acc(
    loss: np.ndarray,
    acc: np.ndarray,
    *,
    form: str = "sigmoid",
    chance: float | None = None,
    ceiling: float | None = None,
    init: laws.Params | None = None,
) -> FitResult:
    """Step 2 in the chosen `form` ("sigmoid" or "exponential"); `chance` fixes the floor.

    The exponential form has no separate ceiling: `ceiling` must be None for it.
    """
    if form == "sigmoid":
        return fit_acc_sigmoid(loss, acc, floor=chance, ceiling=ceiling, init=init)
    if form == "exponential":
        if ceiling is not None:
            raise ScalelabError("--ceiling applies to the sigmoid form only")
        return fit_acc_exponential(loss, acc, chance=chance, init=init)
    raise ScalelabError(f"unknown accuracy form {form!r} (known: {', '.join(ACC_FORMS)})")


# --- the two-step chain ---------------------------------------------------------------------


def fit_task_accuracy(
    size_inputs: Sequence[np.ndarray],
    loss: np.ndarray,
    acc: np.ndarray,
    *,
    form: str = "sigmoid",
    chance: float | None = None,
    ceiling: float | None = None,
    warm: FitResult | None = None,
) -> FitResult:
    """Bhagia et al. 2024 two-step chain: step 1 task loss from size, step 2 accuracy from loss.

    size_inputs: (x,) for step 1 L(x) = E + A x^(-alpha) (x = N, D or compute), or (N, D) for
    L(N, D) = E + A / N^alpha + B / D^beta (their Eq. 1; Chinchilla Approach 3 fitter);
    loss: the task loss per model, shape (n,), positive; acc: accuracies, shape (n,). Step 2
    as `fit_loss_to_acc`. `warm`: a previous chain fit to start both steps from (bootstrap).
    Returns law "task-accuracy" with the steps' parameters merged; extras["step1"] and
    extras["step2"] hold each step's own FitResult.
    """
    size_inputs = tuple(np.asarray(v, float) for v in size_inputs)
    loss, acc = np.asarray(loss, float), np.asarray(acc, float)
    w1 = warm.extras["step1"] if warm is not None else None
    w2 = warm.extras["step2"] if warm is not None else None
    if len(size_inputs) == 1:
        step1 = fit_power_law(size_inputs[0], loss, init=w1.params if w1 is not None else None)
    else:
        init = w1.extras["local_optima"][:1] if w1 is not None else None
        step1 = fit_chinchilla(size_inputs[0], size_inputs[1], loss, init=init)
    step2 = fit_loss_to_acc(
        loss, acc, form=form, chance=chance, ceiling=ceiling, init=w2.params if w2 else None
    )
    params = {**step1.params, **step2.params}
    pred = laws.task_accuracy(size_inputs, params)
    extras = {
        "step1": step1,
        "step2": step2,
        "bounds": {**step1.extras.get("bounds", {}), **step2.extras.get("bounds", {})},
        "steps": (
            ("step 1 (task loss from size)", step1.extras.get("free", tuple(step1.params))),
            ("step 2 (accuracy from task loss)", step2.extras["free"]),
        ),
    }
    if "flat" in step2.extras:
        extras["flat"] = step2.extras["flat"]
    sse = float(np.sum((acc - pred) ** 2))
    r2 = r_squared(acc, pred)
    return FitResult("task-accuracy", params, r2, acc - pred, len(acc), sse, (), extras)
