"""Identifiability flags: say, in plain words, when the data do not constrain a fit.

A least-squares optimum always exists; whether the points determine it is another matter.
Every fit `api.fit_table` returns is checked for five signs that they do not:

- `few_points`: fewer points than fitted parameters + 2 (each step of a chain on its own);
- `bound`: a fitted parameter sits on a bound of its fitter (e.g. E = 6e-16 > 0);
- `interval`: its bootstrap 95% interval spans more than `Thresholds.ci_factor`, reaches 0,
  or has zero width (no refit moved it from the fitter's start);
- `holdout`: refitted without the largest points, the law misses them by more than a stated
  error (relative for losses, absolute for accuracies);
- `flat`: accuracy does not change with the task loss (an F-test against a constant), so
  no curve is identified and the fitter returned the constant instead;
- `spread`: the second size variable (D of L(N, D)) varies less than `MIN_SPREAD`-fold
  across the points, so its term (B, beta) is not identified, bootstrap or not;
- `sign`: a power or Chinchilla exponent (alpha, beta) fitted at or below 0: the loss does
  not fall with that size in these points.

Bounds and free parameters come from each fitter (`FitResult.extras["bounds"]`, `["free"]`,
and `["steps"]` for a chain); nothing here refits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scalelab.analysis import laws

# Parameters of the accuracy-from-loss step: not judged one by one once that step is flat.
_STEP2_PARAMS = frozenset(laws.ACC_SIGMOID_PARAMS + laws.ACC_EXPONENTIAL_PARAMS)


@dataclass(frozen=True)
class Thresholds:
    """When a flag is raised. `ci_factor`: largest hi / lo of a 95% interval; `holdout_rel`:
    largest mean |relative error| on held-out losses; `holdout_abs`: largest mean |error| on
    held-out accuracies (fractions, 0.03 = 3 points); `bound_rtol`: distance to a bound, in
    units of the parameter's scale, that counts as on it."""

    ci_factor: float = 10.0
    holdout_rel: float = 0.05
    holdout_abs: float = 0.03
    bound_rtol: float = 1e-3


@dataclass(frozen=True)
class Flag:
    """One reason to distrust a fit. `kind`: few_points | bound | interval | holdout | flat |
    spread | sign."""

    kind: str
    message: str
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "param": self.param, "message": self.message}


def flags(
    fit: Any,
    boot: Any = None,
    holdout: Any = None,
    thresholds: Thresholds | None = None,
    *,
    absolute_holdout: bool = False,
    level: float = 0.95,
) -> tuple[Flag, ...]:
    """All flags for `fit` (a FitResult), its bootstrap and its holdout check, if any.

    `absolute_holdout`: judge the holdout by its mean absolute error against
    `thresholds.holdout_abs` (accuracies), else by its mean relative error.
    """
    th = thresholds or Thresholds()
    flat = "flat" in fit.extras
    out = list(_few_points(fit))
    if flat:
        level = _fitted_constant(fit)
        out.append(
            Flag(
                "flat",
                "accuracy does not change with the task loss in these points (F-test against a "
                f"constant accuracy: p = {fit.extras['flat']:.2g}): no curve is identified; "
                f"predictions are a constant accuracy {level:.4g} (the mean, or chance if higher)",
            )
        )
    skip = _STEP2_PARAMS if flat else frozenset()
    out.extend(_on_bound(fit, th.bound_rtol, skip))
    out.extend(_wrong_sign(fit))
    if boot is not None and not boot.too_few:
        out.extend(_wide(fit, boot.ci(level), th.ci_factor, skip, level))
    if holdout is not None:
        out.extend(_holdout(holdout, th, absolute_holdout))
    return tuple(out)


def _fitted_constant(fit: Any) -> float:
    """The constant accuracy a flat step 2 predicts."""
    p = fit.params
    return p["floor"] if "L0" in p else 1.0 - p["epsilon"]


def _free_groups(fit: Any) -> tuple[tuple[str | None, tuple[str, ...]], ...]:
    steps = fit.extras.get("steps")
    if steps:
        return tuple((label, tuple(free)) for label, free in steps)
    return ((None, tuple(fit.extras.get("free", fit.params))),)


def free_params(fit: Any) -> frozenset[str]:
    """The parameters `fit` estimated (all of them where its fitter does not say)."""
    return frozenset(n for _, names in _free_groups(fit) for n in names)


def _few_points(fit: Any) -> list[Flag]:
    out = []
    for label, free in _free_groups(fit):
        need = len(free) + 2
        if fit.n_points < need:
            where = f" in {label}" if label else ""
            out.append(
                Flag(
                    "few_points",
                    f"{fit.n_points} points for {len(free)} fitted parameters{where}: too few to "
                    f"tell whether the points constrain the fit (need parameters + 2 = {need})",
                )
            )
    return out


# Exponents of laws in which the loss falls with scale (Kaplan et al. 2020; Hoffmann et al.
# 2022, Eq. 2): a fitted value at or below 0 says these points do not fall with that size.
_FALLING = {"power": ("alpha",), "chinchilla": ("alpha", "beta")}


def _wrong_sign(fit: Any) -> list[Flag]:
    out = []
    for name in _FALLING.get(fit.law, ()):
        v = fit.params.get(name)
        if v is not None and v <= 0:
            size = "N" if name == "alpha" else "D"
            out.append(Flag(
                "sign",
                f"{name} = {v:.4g} <= 0: in these points the loss does not fall with {size}; "
                "the law (and any compute-optimal allocation from it) describes nothing",
                name,
            ))  # fmt: skip
    return out


def _on_bound(fit: Any, rtol: float, skip: frozenset[str]) -> list[Flag]:
    out = []
    for name, (lo, hi, scale) in fit.extras.get("bounds", {}).items():
        if name in skip or name not in fit.params:
            continue
        v = fit.params[name]
        tol = rtol * abs(scale) if scale else rtol
        for b in (lo, hi):
            if np.isfinite(b) and abs(v - b) <= tol:
                out.append(
                    Flag(
                        "bound",
                        f"{name} is not identified by these points: it sits on its bound "
                        f"{b:.4g} ({name} = {v:.4g})",
                        name,
                    )
                )
                break
    return out


def _wide(
    fit: Any,
    ci: dict[str, tuple[float, float]],
    factor: float,
    skip: frozenset[str],
    level: float,
) -> list[Flag]:
    out = []
    free = free_params(fit)
    for name in fit.params:
        if name in skip or name not in free or name not in ci:
            continue
        lo, hi = ci[name]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        head = f"{name} is not identified by these points: its {level:.0%} interval "
        span = f"[{lo:.4g}, {hi:.4g}]"
        if hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1e-300):
            # A free parameter no refit moved: the data give it no gradient (e.g. B and beta
            # of L(N, D) when every model saw the same D); its value is the fitter's start.
            out.append(Flag("interval", f"{name} is not identified by these points: every "
                            f"bootstrap refit left it at {fit.params[name]:.6g} (a zero-width "
                            "interval here means no information, not certainty)", name))  # fmt: skip
            continue
        if lo <= 0 <= hi and hi > lo:
            out.append(Flag("interval", f"{head}{span} reaches 0", name))
            continue
        ratio = hi / lo if lo > 0 else lo / hi
        if ratio > factor:
            out.append(
                Flag(
                    "interval",
                    f"{head}{span} spans a factor of {ratio:.3g} (more than {factor:g})",
                    name,
                )
            )
    return out


def _holdout(holdout: Any, th: Thresholds, absolute: bool) -> list[Flag]:
    if absolute:
        value, limit, what = holdout.mean_abs_error, th.holdout_abs, "|error|"
    else:
        value, limit, what = holdout.mean_abs_rel_error, th.holdout_rel, "|relative error|"
    if not np.isfinite(value):
        return [
            Flag(
                "holdout",
                f"the law cannot predict the {holdout.k} held-out points from the rest "
                "(undefined there)",
            )
        ]
    if value <= limit:
        return []
    return [
        Flag(
            "holdout",
            f"the law does not extrapolate: refitted without the {holdout.k} largest points, "
            f"it misses them by a mean {what} of {value:.3g} (more than {limit:g})",
        )
    ]


MIN_SPREAD = 2.0  # max / min of D below which B and beta of L(N, D) are not identified


def spread(values: np.ndarray, name: str) -> tuple[Flag, ...]:
    """A `spread` flag when the second size input `values` (> 0) of a two-variable law
    varies less than MIN_SPREAD-fold: the law's D term is then fixed by the fitter's start
    and the grid of starts, not by the points."""
    ratio = float(np.max(values) / np.min(values))
    if ratio >= MIN_SPREAD:
        return ()
    return (
        Flag(
            "spread",
            f"B and beta are not identified by these points: {name} varies only "
            f"{ratio:.3g}-fold across them (less than {MIN_SPREAD:g}x); fit without --x2, or "
            f"add points at other {name}",
            "beta",
        ),
    )
