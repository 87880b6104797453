"""Fast Chinchilla Approach 3: the Huber-LSE objective with analytic gradients.

The straightforward fit (Besiroglu et al. 2024) runs scipy L-BFGS-B with finite-difference
gradients from each of 4,500 grid starts: ~4,500 x (hundreds of iterations) x 6 objective
evaluations. Here instead:

1. the objective is evaluated at all 4,500 starts in one vectorised numpy pass (S x n arrays);
2. only the `top_k` best-scoring starts are refined with L-BFGS-B using the exact gradient.

On the Chinchilla data about a third of all starts end in the global optimum, and the best-
scoring starts are among them, so refining 20 recovers the optimum of the full grid (checked in
tests and in benchmarks/fit_speed.py) at a small fraction of the cost.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

# Hoffmann et al. (2022) initialisation grid: a, b in {0..25 step 5}, e in {-1..1 step .5},
# alpha, beta in {0..2 step .5}: 6 * 6 * 5 * 5 * 5 = 4,500 starts over (a, b, e, alpha, beta).
GRID_AXES = (
    np.arange(0.0, 30.0, 5.0),
    np.arange(0.0, 30.0, 5.0),
    np.arange(-1.0, 1.5, 0.5),
    np.arange(0.0, 2.5, 0.5),
    np.arange(0.0, 2.5, 0.5),
)


def default_grid() -> np.ndarray:
    """The 4,500 starts as an array of shape (4500, 5), columns (a, b, e, alpha, beta)."""
    return np.array(np.meshgrid(*GRID_AXES, indexing="ij")).reshape(5, -1).T.copy()


def huber_lse(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Summed Huber loss of log L_hat - log L and its gradient, batched over starts.

    theta: (S, 5) rows (a, b, e, alpha, beta); data arrays: (n,). Returns (S,) objective values
    and (S, 5) gradients.
    """
    theta = np.atleast_2d(theta)
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    t3 = np.broadcast_to(e, t1.shape)
    m = np.maximum(np.maximum(t1, t2), t3)
    w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = w1 + w2 + w3
    r = m + np.log(s) - log_l
    ar = np.abs(r)
    f = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(axis=1)
    # d Huber / d r = clip(r); d LSE / d t_i = softmax weight w_i / s.
    g = np.clip(r, -delta, delta) / s
    g1, g2, g3 = g * w1, g * w2, g * w3
    # einsum, not `@`: a BLAS matvec this small spends more time spinning up threads (10x
    # slower per refit on a busy 2-core machine) than computing.
    grad = np.column_stack(
        [
            g1.sum(1),
            g2.sum(1),
            g3.sum(1),
            -np.einsum("sn,n->s", g1, log_n),
            -np.einsum("sn,n->s", g2, log_d),
        ]
    )
    return f, grad


def _refine(theta0: np.ndarray, data: tuple[np.ndarray, ...], delta: float):
    def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = huber_lse(th[None, :], *data, delta=delta)
        return float(f[0]), g[0]

    # Tight tolerances: with delta = 1e-3 the objective is ~1e-3, so scipy's defaults
    # (relative ftol 2e-9, gtol 1e-5) would stop well short of the optimum.
    return minimize(
        fun,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
    )


def fit_huber_lse(
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_l: np.ndarray,
    *,
    delta: float = 1e-3,
    starts: np.ndarray | None = None,
    top_k: int = 20,
) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Minimise the Huber-LSE objective; returns (objective, theta, distinct local optima).

    `starts` (S, 5) defaults to the 4,500-point grid; at most `top_k` best-scoring starts are
    refined. Local optima are returned best first, deduplicated to 1e-3 in every coordinate.
    """
    data = (log_n, log_d, log_l)
    grid = default_grid() if starts is None else np.atleast_2d(np.asarray(starts, float))
    f0, _ = huber_lse(grid, *data, delta=delta)
    order = np.argsort(f0)[:top_k]
    with threadpool_limits(limits=1, user_api="blas"):
        sols = sorted((_refine(grid[i], data, delta) for i in order), key=lambda s: s.fun)
    optima: list[np.ndarray] = []
    for sol in sols:
        if all(np.max(np.abs(sol.x - o)) > 1e-3 for o in optima):
            optima.append(sol.x)
    return float(sols[0].fun), sols[0].x, optima
