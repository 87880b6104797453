""" "How small": the smallest N predicted to reach a target, by inverting a fitted power law.

Targets are losses (lower is better). A higher-is-better metric such as accuracy in [0, 1] is
handled by fitting its error rate 1 - acc (`to_lower_is_better`), so the same inversion works.
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
    refits that can reach it at all, NaN without refits.
    """

    target: float
    n: float
    lo: float
    hi: float
    reachable_fraction: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "n": self.n,
            "lo": self.lo,
            "hi": self.hi,
            "reachable_fraction": self.reachable_fraction,
        }


def to_lower_is_better(values: np.ndarray | float, name: str) -> np.ndarray | float:
    """Map an accuracy in [0, 1] to its error rate 1 - acc, which a power law can fit."""
    arr = np.asarray(values, float)
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
    reachable = float(np.mean(np.isfinite(ns)))
    if len(ns) < MIN_BOOT_SAMPLES:
        return SmallestN(target, n, float("nan"), float("nan"), reachable)
    q = 100 * (1 - level) / 2
    # inf sorts last, so an upper percentile that lands on unreachable refits is inf: honest.
    lo, hi = np.percentile(ns, [q, 100 - q], method="inverted_cdf")
    return SmallestN(target, n, float(lo), float(hi), reachable)
