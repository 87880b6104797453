"""Scaling laws as pure functions `f(x, params) -> prediction`.

Every function takes numpy arrays (or scalars) and a plain `dict[str, float]` of parameters,
so fitted results, bootstrap samples and hand-written parameters all plug in the same way.
Losses are in nats per token (or whatever unit the data uses); sizes in parameters, data in
tokens, compute in FLOP; accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

Params = Mapping[str, float]

POWER_PARAMS = ("E", "A", "alpha")
PURE_POWER_PARAMS = ("A", "alpha")
CHINCHILLA_PARAMS = ("E", "A", "alpha", "B", "beta")
LOSS_TO_LOSS_PARAMS = ("K", "kappa", "E_x", "E_y")
ACC_SIGMOID_PARAMS = ("floor", "ceiling", "k", "L0")
ACC_EXPONENTIAL_PARAMS = ("epsilon", "k", "gamma")
SUPERVISED_PARAMS = ("E", "A", "alpha", "B", "beta", "gamma")
DISTILL_PARAMS = ("c0", "c1", "d1", "f1", "A'", "alpha'", "B'", "beta'", "gamma'")


def power_law(x: ArrayLike, params: Params) -> NDArray[np.float64]:
    """L(x) = E + A * x^(-alpha); `E` defaults to 0 (the pure power law). x > 0, shape (n,)."""
    x = np.asarray(x, dtype=float)
    return params.get("E", 0.0) + params["A"] * x ** (-params["alpha"])


def chinchilla(n: ArrayLike, d: ArrayLike, params: Params) -> NDArray[np.float64]:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022). N, D > 0, shape (n,)."""
    n = np.asarray(n, dtype=float)
    d = np.asarray(d, dtype=float)
    return (
        params["E"] + params["A"] * n ** (-params["alpha"]) + params["B"] * d ** (-params["beta"])
    )


def supervised(n: ArrayLike, d: ArrayLike, params: Params) -> NDArray[np.float64]:
    """L(N, D) = E + (A / N^alpha + B / D^beta)^gamma: Busbridge et al. 2025 ("Distillation
    Scaling Laws", arXiv 2502.08606), Eq. 1, the supervised law their distillation law builds
    on. `gamma` defaults to 1, which is Chinchilla (Hoffmann et al. 2022). N: non-embedding
    parameters, D: training tokens, both > 0, shape (n,); returns nats per token, (n,).
    """
    n = np.asarray(n, dtype=float)
    d = np.asarray(d, dtype=float)
    inner = params["A"] * n ** (-params["alpha"]) + params["B"] * d ** (-params["beta"])
    return params["E"] + inner ** params.get("gamma", 1.0)


def distillation(
    n_s: ArrayLike, d_s: ArrayLike, l_t: ArrayLike, params: Params
) -> NDArray[np.float64]:
    """Student cross-entropy L_S(N_S, D_S, L_T): Busbridge et al. 2025, Eq. 8,

        L_S = L_T + L_T^(-c0) (1 + (L_T / (L~_S d1))^(1/f1))^(-c1 f1)
                  * (A' / N_S^alpha' + B' / D_S^beta')^gamma'

    with L~_S = `supervised`(N_S, D_S) (Eq. 1), the loss the same student reaches trained
    from scratch on D_S tokens. `params` holds both sets: E, A, alpha, B, beta, gamma (Eq. 1)
    and c0, c1, d1, f1, A', alpha', B', beta', gamma' (Eq. 8). N_S: the student's
    non-embedding parameters, D_S: its distillation tokens, L_T: the teacher's cross-entropy
    (nats per token), all > 0 and broadcastable to one shape (n,); returns L_S, (n,).
    The broken power law is evaluated in logs, so a sharp break (small f1) cannot overflow.
    """
    n_s, d_s, l_t = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n_s, d_s, l_t)))
    p = params
    log_sup = np.log(supervised(n_s, d_s, p))
    z = (np.log(l_t) - log_sup - np.log(p["d1"])) / p["f1"]
    log_gap = (
        -p["c0"] * np.log(l_t)
        - p["c1"] * p["f1"] * np.logaddexp(0.0, z)
        + p["gamma'"] * np.log(p["A'"] * n_s ** (-p["alpha'"]) + p["B'"] * d_s ** (-p["beta'"]))
    )
    return l_t + np.exp(log_gap)


def loss_to_loss(lx: ArrayLike, params: Params) -> NDArray[np.float64]:
    """L_y = K * (L_x - E_x)^kappa + E_y (Brandfonbrener et al. 2024). Needs L_x > E_x."""
    gap = np.asarray(lx, dtype=float) - params["E_x"]
    # Below E_x the law is undefined: NaN there, without a warning (holdout points can be).
    with np.errstate(invalid="ignore", divide="ignore"):
        out = params["K"] * np.where(gap > 0, gap, np.nan) ** params["kappa"] + params["E_y"]
    return out


def invert_power_law(target: float, params: Params) -> float:
    """The x at which E + A x^(-alpha) equals `target`; `inf` when target <= E (unreachable)."""
    gap = target - params.get("E", 0.0)
    if gap <= 0 or params["alpha"] <= 0:
        return float("inf")
    if params["A"] <= 0:  # the law never rises above E < target: every size reaches it
        return 0.0
    # In logs: (A / gap)^(1/alpha) overflows a float for a tiny alpha (a flat fit).
    log_x = (math.log(params["A"]) - math.log(gap)) / params["alpha"]
    return math.exp(log_x) if log_x < 709.0 else float("inf")


def compute_optimal(compute: ArrayLike, params: Params) -> tuple[NDArray, NDArray]:
    """Compute-optimal (N_opt, D_opt) for C = 6 N D under the Chinchilla law.

    Minimising L(N, C / 6N) gives N_opt = G (C/6)^a, D_opt = (C/6)^b / G with
    G = (alpha A / (beta B))^(1 / (alpha + beta)), a = beta / (alpha + beta), b = 1 - a.
    """
    c6 = np.asarray(compute, dtype=float) / 6.0
    alpha, beta = params["alpha"], params["beta"]
    g = (alpha * params["A"] / (beta * params["B"])) ** (1.0 / (alpha + beta))
    a = beta / (alpha + beta)
    return g * c6**a, c6 ** (1.0 - a) / g


# --- task accuracy from task loss -----------------------------------------------------------


def acc_sigmoid(loss: ArrayLike, params: Params) -> NDArray[np.float64]:
    """Accuracy from task loss: floor + (ceiling - floor) / (1 + exp(k (L - L0))).

    Bhagia et al. 2024 ("Establishing Task Scaling Laws via Compute-Efficient Model Ladders",
    arXiv 2412.04403), step 2, Eq. (2): Acc(L) = a / (1 + exp(-k (L - L0))) + b. Their fit
    bounds a in [-1, 0] and b in [0, 1] (allenai/OLMo-ladder `fitting_functions.sigmoid`), so
    b is the upper asymptote (the ceiling, as L falls) and a + b the lower one as L -> inf
    (the floor: chance for a multiple-choice task; the paper fits it, scalelab can fix it at
    1 / number of choices). Here a = floor - ceiling, b = ceiling, and `k` >= 0 is the paper's
    k (accuracy falls as the loss rises). loss: shape (n,), any unit; returns (n,).
    """
    z = np.asarray(loss, dtype=float) - params["L0"]
    with np.errstate(over="ignore"):
        s = 1.0 / (1.0 + np.exp(params["k"] * z))
    return params["floor"] + (params["ceiling"] - params["floor"]) * s


def acc_exponential(loss: ArrayLike, params: Params) -> NDArray[np.float64]:
    """Accuracy from loss as 1 - Err(L) with Err(L) = epsilon - k exp(-gamma L).

    Gadre et al. 2024 ("Language models scale reliably with over-training and on downstream
    tasks", arXiv 2403.08540): their law relating a model's loss to its average top-1 error,
    Err(L) = epsilon - k exp(-gamma L) (the form is the paper's; its equation number could not
    be checked offline). As L -> inf the error tends to epsilon, the error of random
    guessing, so the accuracy floor is 1 - epsilon. loss: shape (n,); returns (n,).
    """
    loss = np.asarray(loss, dtype=float)
    return 1.0 - params["epsilon"] + params["k"] * np.exp(-params["gamma"] * loss)


def acc_from_loss(loss: ArrayLike, params: Params) -> NDArray[np.float64]:
    """`acc_sigmoid` when `params` has L0, else `acc_exponential` (the form is in the names)."""
    return acc_sigmoid(loss, params) if "L0" in params else acc_exponential(loss, params)


def invert_acc_from_loss(target: float, params: Params) -> float:
    """The task loss at which `acc_from_loss` equals `target`; NaN when it never does.

    Sigmoid: L0 + log((ceiling - t) / (t - floor)) / k, defined for floor < t < ceiling and
    k > 0. Exponential: -log((t - 1 + epsilon) / k) / gamma, for t > 1 - epsilon, k, gamma > 0.
    """
    if "L0" in params:
        lo, hi, k = params["floor"], params["ceiling"], params["k"]
        if k <= 0 or not (min(lo, hi) < target < max(lo, hi)) or hi <= lo:
            return float("nan")
        return float(params["L0"] + np.log((hi - target) / (target - lo)) / k)
    gap = target - 1.0 + params["epsilon"]
    if gap <= 0 or params["k"] <= 0 or params["gamma"] <= 0:
        return float("nan")
    return float(-np.log(gap / params["k"]) / params["gamma"])


def task_accuracy(inputs: tuple[ArrayLike, ...], params: Params) -> NDArray[np.float64]:
    """The two-step chain of Bhagia et al. 2024: (N[, D]) -> task loss -> accuracy.

    Step 1 (their Eq. (1), L(N, D) = A / N^alpha + B / D^beta + E): `chinchilla(N, D)` when
    `params` has B, else `power_law(x)` in the one size variable given. Step 2: `acc_from_loss`.
    inputs: (x,) or (N, D), each shape (n,); returns accuracies, shape (n,).
    """
    loss = (
        chinchilla(inputs[0], inputs[1], params) if "B" in params else power_law(inputs[0], params)
    )
    return acc_from_loss(loss, params)
