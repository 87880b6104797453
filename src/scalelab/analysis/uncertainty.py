"""How sure a fit is: R², bootstrap percentile intervals, prediction bands, holdout checks.

Everything here is generic over the law: a `Problem` bundles the data with a `fit` callable,
so the same bootstrap and holdout code serves power laws, Chinchilla and loss-to-loss fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from scalelab.errors import ScalelabError

# Failures a single bootstrap resample may hit (e.g. all rows at one x); those draws are skipped.
_REFIT_ERRORS = (ValueError, FloatingPointError, np.linalg.LinAlgError, ScalelabError)

# A percentile interval over fewer refits than this has zero width (one refit) or does not
# exist (none): it is reported as NaN, never as a point that looks certain.
MIN_BOOT_SAMPLES = 2


def resolving_samples(level: float) -> int:
    """Fewest refits whose `level` percentile interval is more than the refits' range:
    1 + 2 / (1 - level), i.e. 41 at 95%.

    np.percentile (linear) puts the lower bound at position (1 - level) / 2 * (n - 1) of the
    sorted refits; below this n that position is under 1, so each bound is interpolated
    between the most extreme refit and the next. Efron & Tibshirani (1993, An Introduction
    to the Bootstrap, ch. 13) recommend at least 1000 refits for percentile intervals.
    """
    return int(np.ceil(1.0 + 2.0 / (1.0 - level) - 1e-9))  # 1e-9: 2 / 0.05 is 40.000...04


def r_squared(y: np.ndarray, yhat: np.ndarray) -> float:
    """1 - SS_res / SS_tot on the original scale of y; NaN when y is constant or empty."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    if len(y) == 0:
        return float("nan")
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot


@dataclass(frozen=True)
class Problem:
    """Data for one fit. `inputs`: tuple of (n,) arrays; `y`: (n,); `size`: (n,) ordering for
    extrapolation (larger = further out); `fit(inputs, y, warm)` returns a FitResult, where
    `warm` is a previous fit on similar data (or None) to start from."""

    inputs: tuple[np.ndarray, ...]
    y: np.ndarray
    size: np.ndarray
    fit: Callable[[tuple[np.ndarray, ...], np.ndarray, Any], Any]

    def take(self, idx: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        return tuple(v[idx] for v in self.inputs), self.y[idx]


@dataclass(frozen=True)
class Bootstrap:
    """Refits on rows resampled with replacement. `samples[name]`: shape (n_ok,)."""

    samples: dict[str, np.ndarray]
    n_requested: int
    n_failed: int
    seed: int

    @property
    def n_ok(self) -> int:
        """Successful refits (every parameter has one sample per refit)."""
        return min((len(v) for v in self.samples.values()), default=0)

    @property
    def too_few(self) -> bool:
        """True when fewer than MIN_BOOT_SAMPLES refits succeeded: no interval is defined."""
        return self.n_ok < MIN_BOOT_SAMPLES

    def ci(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile interval per parameter; (nan, nan) for every parameter when `too_few`.

        The percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13).
        """
        if self.too_few:
            return {k: (float("nan"), float("nan")) for k in self.samples}
        q = 100 * (1 - level) / 2
        return {
            k: (float(np.percentile(v, q)), float(np.percentile(v, 100 - q)))
            for k, v in self.samples.items()
        }

    def notes(self, level: float = 0.95) -> tuple[str, ...]:
        """Warnings for a reader: no interval at all, or one that is only the refits' range."""
        ok = f"{self.n_ok} of {self.n_requested} bootstrap refits succeeded"
        if self.too_few:
            return (f"{ok}: no confidence intervals (need at least {MIN_BOOT_SAMPLES})",)
        need = resolving_samples(level)
        if self.n_ok < need:
            return (
                f"{ok}: with fewer than {need}, each {level:.0%} bound lies between the "
                "two most extreme refits (1000 or more are recommended)",
            )
        return ()

    def param_dicts(self) -> list[dict[str, float]]:
        """One parameter dict per successful refit."""
        names = list(self.samples)
        n = len(self.samples[names[0]]) if names else 0
        return [{k: float(self.samples[k][i]) for k in names} for i in range(n)]


def refit_samples(n_boot: int, refit: Any) -> tuple[list[dict[str, float]], int]:
    """Call `refit()` (which draws its own resample and fits it) `n_boot` times: the
    parameter dicts of the refits that succeeded with finite values, and how many failed.
    Degenerate resamples (few distinct x) may overflow: they count as failed draws."""
    rows: list[dict[str, float]] = []
    failed = 0
    with np.errstate(all="ignore"):
        for _ in range(n_boot):
            try:
                params = refit()
            except _REFIT_ERRORS:
                failed += 1
                continue
            if all(np.isfinite(v) for v in params.values()):
                rows.append(params)
            else:
                failed += 1
    return rows, failed


def bootstrap(problem: Problem, full_fit: Any, n_boot: int, seed: int = 0) -> Bootstrap:
    """Refit `n_boot` times on rows drawn with replacement (numpy Generator seeded by `seed`).

    Refits warm-start from `full_fit`: resamples stay close to the full data, so its optimum
    (and, for Chinchilla, its other local optima) are good starts and no grid search is needed.
    """
    rng = np.random.default_rng(seed)
    n = len(problem.y)

    def refit() -> dict[str, float]:
        inputs, y = problem.take(rng.integers(0, n, size=n))
        return dict(problem.fit(inputs, y, full_fit).params)

    with threadpool_limits(limits=1, user_api="blas"):
        rows, failed = refit_samples(n_boot, refit)
    names = list(full_fit.params)
    samples = {k: np.array([r[k] for r in rows], dtype=float) for k in names}
    return Bootstrap(samples, n_boot, failed, seed)


def prediction_band(
    predict: Callable[[dict[str, float]], np.ndarray], boot: Bootstrap, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile band of `predict(params)` over the bootstrap refits.

    With one refit the band is NaN (drawn as nothing), not a zero-width line. Raises
    ScalelabError when no refit succeeded: there is nothing to predict with.
    """
    dicts = boot.param_dicts()
    if not dicts:
        raise ScalelabError(f"no bootstrap refit succeeded (of {boot.n_requested}): no band")
    preds = np.array([predict(p) for p in dicts])
    if boot.too_few:
        nan = np.full(preds.shape[1:], np.nan)
        return nan, nan.copy()
    q = 100 * (1 - level) / 2
    with np.errstate(invalid="ignore"):
        return np.nanpercentile(preds, q, axis=0), np.nanpercentile(preds, 100 - q, axis=0)


@dataclass(frozen=True)
class Holdout:
    """Fit on all but the `k` largest points; relative errors (y_hat - y) / y on those k, and
    absolute errors y_hat - y (in y's units; for an error rate 1 - acc, minus the accuracy
    error)."""

    k: int
    rel_errors: np.ndarray
    params: dict[str, float]
    abs_errors: np.ndarray | None = None

    @property
    def n_undefined(self) -> int:
        """Held-out points the refitted law cannot predict (e.g. L_x below a fitted E_x)."""
        return int(np.sum(~np.isfinite(self.rel_errors)))

    @property
    def mean_abs_rel_error(self) -> float:
        ok = np.isfinite(self.rel_errors)
        return float(np.mean(np.abs(self.rel_errors[ok]))) if ok.any() else float("nan")

    @property
    def max_abs_rel_error(self) -> float:
        ok = np.isfinite(self.rel_errors)
        return float(np.max(np.abs(self.rel_errors[ok]))) if ok.any() else float("nan")

    @property
    def mean_abs_error(self) -> float:
        """Mean |y_hat - y| over the predictable held-out points (NaN when none)."""
        if self.abs_errors is None:
            return float("nan")
        ok = np.isfinite(self.abs_errors)
        return float(np.mean(np.abs(self.abs_errors[ok]))) if ok.any() else float("nan")

    def as_dict(self) -> dict[str, Any]:
        out = {
            "k": self.k,
            "rel_errors": [float(v) for v in self.rel_errors],
            "mean_abs_rel_error": self.mean_abs_rel_error,
            "max_abs_rel_error": self.max_abs_rel_error,
            "n_undefined": self.n_undefined,
            "params": self.params,
        }
        if self.abs_errors is not None:
            out["abs_errors"] = [float(v) for v in self.abs_errors]
            out["mean_abs_error"] = self.mean_abs_error
        return out


def holdout_refit(problem: Problem, k: int):
    """(fit on all but the k points of largest `size`, held-out inputs, held-out y, the
    indices of the rows fitted, the indices held out). Raises ScalelabError unless
    0 < k < number of points."""
    n = len(problem.y)
    if not 0 < k < n:
        raise ScalelabError(
            f"--holdout {k} must be between 1 and the number of points - 1 ({n - 1})"
        )
    order = np.argsort(problem.size, kind="stable")
    train, test = order[: n - k], order[n - k :]
    inputs, y = problem.take(train)
    fit = problem.fit(inputs, y, None)
    test_inputs, y_test = problem.take(test)
    return fit, test_inputs, y_test, train, test


def holdout_check(problem: Problem, k: int) -> Holdout:
    """Extrapolation check: refit without the k points of largest `size`, predict them."""
    fit, test_inputs, y_test, _, _ = holdout_refit(problem, k)
    err = fit.predict(*test_inputs) - y_test
    return Holdout(k, err / y_test, dict(fit.params), err)
