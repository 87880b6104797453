"""Scaling laws as pure functions `f(x, params) -> prediction`.

Every function takes numpy arrays (or scalars) and a plain `dict[str, float]` of parameters,
so fitted results, bootstrap samples and hand-written parameters all plug in the same way.
Losses are in nats per token (or whatever unit the data uses); sizes in parameters, data in
tokens, compute in FLOP.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

Params = Mapping[str, float]

POWER_PARAMS = ("E", "A", "alpha")
PURE_POWER_PARAMS = ("A", "alpha")
CHINCHILLA_PARAMS = ("E", "A", "alpha", "B", "beta")
LOSS_TO_LOSS_PARAMS = ("K", "kappa", "E_x", "E_y")


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
    return float((params["A"] / gap) ** (1.0 / params["alpha"]))


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
