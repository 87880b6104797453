"""Metric declarations: the names a method's runs report, which way is better, how to print.

A method lists its metrics in `MethodDef(metrics=(...))`; everything that reads results (the
`results` table, the line printed when a run ends, `compare`, `sweep`, the report) asks this
module instead of keeping a list of its own. Shared definitions (parameter counts, wall time,
memory, throughput, the two losses) are module constants so methods reuse one meaning.

Light on purpose: no torch, no pandas. The method registry is imported inside functions
(methods import this module for the shared constants).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# What a metric measures. Only "quality" metrics have a direction and can be a default metric;
# "info" metrics (step counts, vocabulary size) are kept in the store but left out of the
# at-a-glance `results` table.
KINDS = ("quality", "size", "cost", "info")
# Held-out splits, by metric-name prefix (`val_loss`, `test_accuracy`): the naming convention
# that lets readers tell a selection metric (validation) from a reported one (test).
SPLITS = ("val", "test")


@dataclass(frozen=True)
class MetricDef:
    """One metric a method's runs report.

    name: the key in the run's metrics (and the results-table column).
    higher_is_better: True/False for quality metrics; None for everything else (sizes, costs).
    fmt: a format spec for display (".4f", ",d", ".1f", ".2%"); integers given to a "d" spec
        may arrive as floats (pandas columns with gaps) and are printed as integers.
    description: one line, with the unit.
    kind: one of KINDS.
    bounds: (low, high) the metric cannot leave (accuracies and F1 scores: (0, 1)), or None;
        `compare` and the report keep their intervals inside it.
    Raises ValueError on an unknown kind, a quality metric without a direction, a direction on
    a non-quality metric, a format spec that cannot format a number, or bounds with
    low >= high.
    """

    name: str
    higher_is_better: bool | None
    fmt: str = ".4f"
    description: str = ""
    kind: str = "quality"
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"metric name must be non-empty without spaces (got {self.name!r})")
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {KINDS} ({self.kind!r})")
        if (self.kind == "quality") != (self.higher_is_better is not None):
            raise ValueError(
                f"metric {self.name!r}: quality metrics need higher_is_better True/False and "
                f"other kinds None (kind={self.kind!r}, higher_is_better={self.higher_is_better})"
            )
        try:
            format(1 if self.fmt.endswith("d") else 1.0, self.fmt)
        except (ValueError, TypeError) as err:
            raise ValueError(f"metric {self.name!r}: bad format spec {self.fmt!r}: {err}") from None
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"metric {self.name!r}: bounds must be (low, high) with low < high")

    @property
    def is_quality(self) -> bool:
        return self.higher_is_better is not None

    @property
    def direction(self) -> str:
        """The direction in words: "higher is better", "lower is better", or "" (non-quality)."""
        if self.higher_is_better is None:
            return ""
        return "higher is better" if self.higher_is_better else "lower is better"


def _size(name: str, description: str, fmt: str = ",d") -> MetricDef:
    return MetricDef(name, None, fmt, description, "size")


def _cost(name: str, description: str, fmt: str = ".1f") -> MetricDef:
    return MetricDef(name, None, fmt, description, "cost")


def _info(name: str, description: str, fmt: str = ",d") -> MetricDef:
    return MetricDef(name, None, fmt, description, "info")


# Shared definitions: several methods report these with the same meaning.
NON_EMBEDDING_PARAMS = _size(
    "non_embedding_params", "parameters outside token/position embeddings (N of scaling laws)"
)
TOTAL_PARAMS = _size("total_params", "all parameters of the model, embeddings included")
TRAINABLE_PARAMS = _size("trainable_params", "parameters updated by training")
TRAINABLE_FRAC = _size("trainable_frac", "trainable_params / total_params", ".2%")
TOKENS = _size("tokens", "training tokens processed (steps x batch x sequence length)")
TRAIN_EXAMPLES = _size(
    "train_examples", "labelled examples trained on (augmented copies not counted: train_augmented)"
)
TRAIN_AUGMENTED = _size("train_augmented", "augmented copies trained on beside train_examples")
TRAIN_LOSS = MetricDef(
    "train_loss", False, ".4f", "mean training cross-entropy (nats) over the last steps"
)
VAL_LOSS = MetricDef(
    "val_loss", False, ".4f", "validation cross-entropy in nats (per token for LMs, else example)"
)
TEST_LOSS = MetricDef(
    "test_loss", False, ".4f", "test cross-entropy in nats (per token for LMs, else per example)"
)
TOKENS_PER_S = _cost("tokens_per_s", "training throughput, tokens per second", ",.0f")
EXAMPLES_PER_S = _cost("examples_per_s", "training throughput, examples per second")
PEAK_MEM_MB = _cost("peak_mem_mb", "peak memory in MiB (accelerator allocations, else RSS)")
WALL_S = _cost("wall_s", "wall-clock seconds of the run, loading and evaluation included")
STEPS = _info("steps", "optimizer steps taken")
LOSS_SPIKES = _info("loss_spikes", "training-loss spikes (events.json; engine/monitor.py)")
NONFINITE_GRAD_NORMS = _info(
    "nonfinite_grad_norms", "steps with a NaN or infinite gradient norm (events.json)"
)
EVENT_COUNTS = (LOSS_SPIKES, NONFINITE_GRAD_NORMS)  # every run of the training engine

SHARED: tuple[MetricDef, ...] = (
    NON_EMBEDDING_PARAMS,
    TOTAL_PARAMS,
    TRAINABLE_PARAMS,
    TRAINABLE_FRAC,
    TOKENS,
    TRAIN_EXAMPLES,
    TRAIN_LOSS,
    VAL_LOSS,
    TEST_LOSS,
    TOKENS_PER_S,
    EXAMPLES_PER_S,
    PEAK_MEM_MB,
    WALL_S,
    STEPS,
    LOSS_SPIKES,
    NONFINITE_GRAD_NORMS,
)


def metrics_for(method_names: Iterable[Any], *, skip_unknown: bool = False) -> list[MetricDef]:
    """The metrics the named methods declare, their task-kind variants' included: their
    union, in declaration order (methods in the order given, duplicates once, the first
    declaration of a name wins).

    skip_unknown: ignore names that are not registered methods (and non-strings such as the
    NaN of a CSV cell) instead of raising ScalelabError; readers of old stores use it.
    Raises ValueError when two of the methods declare one name with different directions.
    """
    from scalelab.methods.base import METHODS

    seen: dict[str, tuple[str, MetricDef]] = {}
    for method in dict.fromkeys(method_names):
        if skip_unknown and (not isinstance(method, str) or method not in METHODS):
            continue
        defn = METHODS.get(method)  # and its variants' (evaluate on math: test_exact_match)
        for d in [*defn.metrics, *(d for v in defn.variants.values() for d in v.metrics)]:
            if d.name not in seen:
                seen[d.name] = (method, d)
            elif seen[d.name][1].higher_is_better != d.higher_is_better:
                first, other = seen[d.name]
                raise ValueError(
                    f"metric {d.name!r} is declared {other.direction or 'without a direction'} "
                    f"by method {first!r} but {d.direction or 'without a direction'} by "
                    f"{method!r}: give one of them another name"
                )
    return [d for _, d in seen.values()]


def metric_def(name: str, method_names: Iterable[Any] | None = None) -> MetricDef | None:
    """The declaration of `name`: from `method_names` first (the methods of a results table;
    unregistered ones skipped), then any registered method (registry order), then a shared
    constant; None when nothing declares it. An evaluation column `<metric>@<task>` (an
    `evaluate` run's result on the evaluated run's row) is declared as its metric."""
    from dataclasses import replace

    from scalelab.methods.base import METHODS

    base, at, task = name.partition("@")
    if at and task:
        found = metric_def(base, ["evaluate"])
        return replace(found, name=name) if found is not None else None

    if method_names is not None:
        found = [d for d in metrics_for(method_names, skip_unknown=True) if d.name == name]
        if found:
            return found[0]
    for _, method in METHODS.items():
        for d in method.metrics:
            if d.name == name:
                return d
    return next((d for d in SHARED if d.name == name), None)


def split_of(name: str) -> str | None:
    """The split from the name prefix: `val_loss` -> "val", `test_ppl` -> "test", else None."""
    head = name.split("_", 1)[0]
    return head if head in SPLITS and "_" in name else None


def _quality(
    defs: Iterable[MetricDef], split: str | None, available: Collection[str] | None
) -> list[MetricDef]:
    return [
        d
        for d in defs
        if d.is_quality
        and (split is None or split_of(d.name) == split)
        and (available is None or d.name in available)
    ]


def default_metric(
    method_names: Iterable[Any],
    split: str | None = None,
    *,
    available: Collection[str] | None = None,
    lower_is_better: bool | None = None,
) -> str | None:
    """The metric to use when the user names none: the first declared quality metric of the
    methods on `split` ("val" for selection, "test" for reporting); without a split, on
    validation, else test (a training loss is never a good default); else the first one.

    available: only names in it count (the columns a table has values for).
    lower_is_better: True keeps only losses/error rates (what a power law can fit).
    Unregistered method names are skipped; None when nothing qualifies.
    """
    defs = metrics_for(method_names, skip_unknown=True)
    if lower_is_better is not None:
        defs = [d for d in defs if d.higher_is_better is (not lower_is_better)]
    for s in (split,) if split else SPLITS:
        picks = _quality(defs, s, available)
        if picks:
            return picks[0].name
    picks = _quality(defs, None, available)
    return picks[0].name if picks else None


def format_value(defn: MetricDef | None, v: Any) -> str:
    """`v` in the declared format; "n/a" for None/NaN; ".4g" (floats) or str without a
    declaration. An integer-valued float goes through a "d" spec as an integer."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()  # numpy scalars
    if defn is None:
        return format(v, ".4g") if isinstance(v, float) else str(v)
    try:
        if defn.fmt.endswith("d") and isinstance(v, float) and v.is_integer():
            v = int(v)
        return format(v, defn.fmt)
    except (ValueError, TypeError):  # a value of another type than declared: show it as is
        return str(v)


def _present(metrics: Mapping[str, Any], name: str) -> bool:
    v = metrics.get(name)
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def headline_metrics(method: str, metrics: Mapping[str, Any], n: int = 2) -> list[MetricDef]:
    """Up to `n` quality metrics of `method` that `metrics` has values for: the first
    validation one, the first test one, then the others in declaration order."""
    from scalelab.methods.base import METHODS

    if method not in METHODS:
        return []
    have = [d for d in _kind_metrics(METHODS.get(method), metrics)
            if d.is_quality and _present(metrics, d.name)]  # fmt: skip
    first_per_split = [next((d for d in have if split_of(d.name) == s), None) for s in SPLITS]
    ranked = [d for d in first_per_split if d is not None]
    ranked += [d for d in have if d not in ranked]
    return ranked[:n]


def _kind_metrics(method: Any, metrics: Mapping[str, Any]) -> tuple[MetricDef, ...]:
    """The metric list of the method's definition that this run's metrics match best (a
    method with per-kind variants, like `distill`, declares the union; a classifier run
    leads with accuracy, a language-model run with loss): the most quality metrics
    present, the fewest absent; ties go to the method's own list."""

    def score(defn: Any) -> int:
        names = [d.name for d in defn.metrics if d.is_quality]
        return sum(1 if _present(metrics, n) else -1 for n in names)

    defs = [method, *getattr(method, "variants", {}).values()]
    return max(defs, key=score).metrics or method.metrics


def summary_line(method: str, metrics: Mapping[str, Any], n: int = 2) -> str:
    """A finished run's headline metrics (see `headline_metrics`) in their declared formats,
    e.g. "val_loss=3.2101  test_loss=3.2533"; "" for an undeclared method."""
    return "  ".join(
        f"{d.name}={format_value(d, metrics[d.name])}" for d in headline_metrics(method, metrics, n)
    )
