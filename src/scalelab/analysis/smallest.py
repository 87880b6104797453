""" "How small": the smallest N predicted to reach a target, by inverting a fitted law.

Loss targets invert a power law L(N). A higher-is-better metric such as accuracy in [0, 1]
is either fitted as its error rate 1 - acc (`to_lower_is_better`), so the same inversion
works, or through the two-step task-accuracy chain (`smallest_for_accuracy`), which inverts
accuracy -> task loss -> N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalelab.analysis import laws
from scalelab.analysis.uncertainty import MIN_BOOT_SAMPLES
from scalelab.errors import ScalelabError

ID_COLUMNS = ("run_id", "Name", "model", "name")


@dataclass(frozen=True)
class SmallestN:
    """Smallest x (usually N, parameters) predicted to reach `target` on the fitted scale.

    `lo`/`hi`: percentile interval over bootstrap refits (`hi` is inf when some refits never
    reach the target), NaN with fewer than two refits; `reachable_fraction`: share of
    refits that can reach it at all, NaN without refits; `data_min`/`data_max`: the range
    of x the fit saw (NaN when unknown), so an answer past it says how far past.
    """

    target: float
    n: float
    lo: float
    hi: float
    reachable_fraction: float
    at: str = ""  # the condition of the answer, e.g. "at D = 3e+11 tokens" (task accuracy)
    data_min: float = float("nan")
    data_max: float = float("nan")

    @property
    def beyond(self) -> float:
        """How many times past the largest x of the data the answer lies (n / data_max);
        below 1 (inside or under the data) or NaN (no data range) otherwise."""
        return self.n / self.data_max if self.data_max > 0 else float("nan")

    def validity(self) -> list[str]:
        """What the answer's position and interval say about it, in words: how far past the
        data it lies, and an interval end the data do not bound."""
        out = []
        if self.beyond > 1:
            out.append(
                f"an extrapolation: {self.beyond:.3g}x beyond the largest size in the data "
                f"({self.data_max:.4g})"
            )
        elif self.n < self.data_min:
            out.append(
                f"below the smallest size in the data ({self.data_min:.4g}): an extrapolation "
                "downwards"
            )
        if np.isinf(self.hi):
            share = 1 - self.reachable_fraction if np.isfinite(self.reachable_fraction) else None
            why = f" ({share:.0%} of bootstrap refits never reach the target)" if share else ""
            out.append(f"the interval's upper end is infinite: the data do not bound it{why}")
        return out

    def as_dict(self) -> dict[str, Any]:
        out = {
            "target": self.target,
            "n": self.n,
            "lo": self.lo,
            "hi": self.hi,
            "reachable_fraction": self.reachable_fraction,
            "data_min": self.data_min,
            "data_max": self.data_max,
            "beyond_data": self.beyond if self.beyond > 1 else None,
            "validity": self.validity(),
        }
        if self.at:
            out["at"] = self.at
        return out


def to_lower_is_better(values: np.ndarray | float, name: str) -> np.ndarray | float:
    """Map an accuracy in [0, 1] to its error rate 1 - acc, which a power law can fit.
    `name` names the values in the error (a column, or a flag such as "--target" for a
    single value). Raises ScalelabError for values outside [0, 1]."""
    arr = np.asarray(values, float)
    if np.ndim(values) == 0 and not 0 <= arr <= 1:
        raise ScalelabError(f"{name} {float(arr):g}: higher is better here, so it must be an "
                            "accuracy in [0, 1]")  # fmt: skip
    if np.any((arr < 0) | (arr > 1)):
        raise ScalelabError(
            f"{name}: higher-is-better values must be accuracies in [0, 1] (got {arr.min():.4g} .. "
            f"{arr.max():.4g})"
        )
    out = 1.0 - arr
    return float(out) if np.ndim(values) == 0 else out


def target_from_row(
    df: pd.DataFrame, y_col: str, row: str, id_cols: Sequence[str] = ID_COLUMNS
) -> float:
    """The `y_col` value of the run named `row` ("as good as model X")."""
    for col in id_cols:
        if col in df.columns:
            hit = df[df[col].astype(str) == row]
            if len(hit):
                value = pd.to_numeric(hit[y_col], errors="coerce").iloc[0]
                if not np.isfinite(value):
                    raise ScalelabError(f"row {row!r} has no value in column {y_col!r}")
                return float(value)
    cols = ", ".join(c for c in id_cols if c in df.columns) or "none of " + ", ".join(id_cols)
    raise ScalelabError(f"no row named {row!r} (looked in columns: {cols})")


def smallest_n(
    params: Mapping[str, float],
    target: float,
    boot_params: Sequence[Mapping[str, float]] = (),
    level: float = 0.95,
) -> SmallestN:
    """Invert L(N) = E + A N^(-alpha) at `target`, with a bootstrap percentile interval.

    Raises ScalelabError when the point fit cannot reach the target (target <= E). With
    fewer than MIN_BOOT_SAMPLES refits the interval is NaN: one refit would give a
    zero-width interval that looks certain.
    """
    n = laws.invert_power_law(target, params)
    if not np.isfinite(n):
        raise ScalelabError(
            f"target {target:.4g} is unreachable: it is at or below the fitted irreducible "
            f"loss E = {params.get('E', 0.0):.4g}"
        )
    if not boot_params:
        return SmallestN(target, n, float("nan"), float("nan"), float("nan"))
    ns = np.array([laws.invert_power_law(target, p) for p in boot_params])
    return _with_interval(target, n, ns, level)


def _with_interval(target: float, n: float, ns: np.ndarray, level: float, at: str = ""):
    """SmallestN with the percentile interval of the refits' answers `ns` (inf = unreachable)."""
    reachable = float(np.mean(np.isfinite(ns)))
    if len(ns) < MIN_BOOT_SAMPLES:
        return SmallestN(target, n, float("nan"), float("nan"), reachable, at)
    q = 100 * (1 - level) / 2
    # inf sorts last, so an upper percentile that lands on unreachable refits is inf: honest.
    lo, hi = np.percentile(ns, [q, 100 - q], method="inverted_cdf")
    return SmallestN(target, n, float(lo), float(hi), reachable, at)


# --- accuracy targets through the two-step chain --------------------------------------------

LOG_N_MAX = 69.0  # e^69 ~ 1e30 parameters: beyond it a target counts as unreachable


def size_for_task_loss(
    loss: float, params: Mapping[str, float], *, d: float | None = None, ratio: float | None = None
) -> float:
    """Smallest size whose step-1 task loss is `loss`; inf when no size reaches it.

    One-variable step 1 (no B in `params`): `invert_power_law`. L(N, D): at fixed tokens `d`,
    N = (A / (loss - E - B d^-beta))^(1/alpha); at `ratio` tokens per parameter (D = ratio N),
    the root of L(N, ratio N) = loss in N (L falls with N when alpha, beta > 0).
    """
    if not np.isfinite(loss):
        return float("inf")
    if "B" not in params:
        return laws.invert_power_law(loss, params)
    e, a, alpha, b, beta = (params[k] for k in ("E", "A", "alpha", "B", "beta"))
    if alpha <= 0:
        return float("inf")
    if d is not None:
        # At fixed D the law in N is a power law with offset E + B D^-beta.
        return laws.invert_power_law(loss, {"E": e + b * d ** (-beta), "A": a, "alpha": alpha})
    if ratio is None:
        raise ValueError("size_for_task_loss needs d or ratio for an L(N, D) step 1")
    from scipy.optimize import brentq

    def f(log_n: float | np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        with np.errstate(over="ignore"):
            return laws.chinchilla(n, ratio * n, params) - loss

    # The first N on a log grid whose loss reaches the target, refined between grid points
    # (a fitted beta < 0 makes L(N, ratio N) non-monotone, so no single bracket is assumed).
    grid = np.linspace(0.0, LOG_N_MAX, 277)
    below = np.nonzero(f(grid) <= 0)[0]
    if not len(below):
        return float("inf")
    i = int(below[0])
    if i == 0:
        return 1.0
    return float(np.exp(brentq(lambda t: float(f(t)), grid[i - 1], grid[i], xtol=1e-12)))


def smallest_for_accuracy(
    params: Mapping[str, float],
    target: float,
    boot_params: Sequence[Mapping[str, float]] = (),
    *,
    d: float | None = None,
    ratio: float | None = None,
    at: str = "",
    level: float = 0.95,
) -> SmallestN:
    """Smallest size the two-step chain predicts to reach accuracy `target`, with an interval.

    Step 2 is inverted for the task loss the target needs (`laws.invert_acc_from_loss`), step
    1 for the size giving that loss (`size_for_task_loss`, at tokens `d` or `ratio` tokens per
    parameter for an L(N, D) step 1). The interval is the percentile interval of the same
    answer over the bootstrap refits (inf where a refit cannot reach the target). Raises
    ScalelabError when the point fit cannot reach it.
    """
    loss = laws.invert_acc_from_loss(target, params)
    if not np.isfinite(loss) and target <= (low := _lowest_accuracy(params)):
        raise ScalelabError(
            f"target accuracy {target:.4g} is at or below the fitted curve's lowest value "
            f"{low:.4g}: every size reaches it, so there is no smallest size to predict"
        )
    if not np.isfinite(loss):
        raise ScalelabError(f"target accuracy {target:.4g} is unreachable: {_acc_range(params)}")
    n = size_for_task_loss(loss, params, d=d, ratio=ratio)
    if not np.isfinite(n):
        raise ScalelabError(
            f"target accuracy {target:.4g} is unreachable: it needs a task loss of {loss:.4g}, "
            f"which no size reaches under the fitted step 1 (E = {params['E']:.4g}{at_clause(at)})"
        )
    if not boot_params:
        return SmallestN(target, n, float("nan"), float("nan"), float("nan"), at)
    ns = np.array(
        [
            size_for_task_loss(laws.invert_acc_from_loss(target, p), p, d=d, ratio=ratio)
            for p in boot_params
        ]
    )
    return _with_interval(target, n, ns, level, at)


def at_clause(at: str) -> str:
    """', at ...' from a SmallestN `at` phrase such as "smallest N at 20 tokens per parameter"."""
    return f", {at[at.index(' at ') + 1 :]}" if " at " in at else ""


def _lowest_accuracy(params: Mapping[str, float]) -> float:
    """The lowest accuracy the fitted step 2 gives at any task loss: its floor (the value as
    the loss grows), or its one value where the fit is flat."""
    if "L0" in params:
        if params["k"] <= 0:
            return float(params["floor"])
        return float(min(params["floor"], params["ceiling"]))
    if params["k"] <= 0 or params["gamma"] <= 0:
        return float(1 - params["epsilon"] + params["k"])
    return float(1 - params["epsilon"])


def _acc_range(params: Mapping[str, float]) -> str:
    if "L0" in params:
        if params["k"] <= 0:
            return f"the fitted accuracy is flat at {params['floor']:.4g}"
        return f"the fitted curve stays between {params['floor']:.4g} and {params['ceiling']:.4g}"
    if params["k"] <= 0 or params["gamma"] <= 0:
        return f"the fitted accuracy is flat at {1 - params['epsilon'] + params['k']:.4g}"
    return f"targets must lie above the fitted floor 1 - epsilon = {1 - params['epsilon']:.4g}"
