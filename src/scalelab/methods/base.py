"""The method registry and the narrow interface every training method implements.

A method is a params model (pydantic, so the spec is validated before anything runs) plus
an entry point `"module:function"` imported only when a run starts, so listing methods or
validating a spec never imports torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from scalelab.registry import Registry


@dataclass(frozen=True)
class MethodDef:
    name: str
    params: type[BaseModel]
    entry: str  # "package.module:Name": a Recipe subclass, or a function(ctx) -> RunResult
    task_kinds: tuple[str, ...]
    description: str = ""
    # Optional cross-field check of (task, params) at spec time; raises ScalelabError.
    check: Callable[[Any, Any], None] | None = None
    # Optional spec-time check of one resolved run: check_run(task, params, model (a
    # ModelRef), {param: (RunSpec, ...) of the runs whose products it names, and "model":
    # (RunSpec,) of the run whose product is the model, if one is}); raises
    # ScalelabError. For what `check` cannot see: the model, the input runs.
    check_run: Callable[[Any, Any, Any, dict[str, tuple[Any, ...]]], None] | None = None
    # The metrics its runs report (scalelab.metrics.MetricDef): names, direction, format.
    metrics: tuple[Any, ...] = ()
    # What its runs leave in the run folder for later runs (`model`: a from_pretrained
    # folder at runs/<id>/model).
    products: tuple[str, ...] = ("model",)
    # Task kinds served by another definition (its own params, entry and checks; same name
    # and metrics contract), e.g. `distill` of classifiers: {kind: MethodDef}.
    variants: dict[str, MethodDef] = field(default_factory=dict)
    # Its runs pair with one input run and take its seed, so their stage names no seeds:
    # "model" (the run whose product is their model: a cooldown branch continues its
    # stable run's batches) or a param naming one run (`labels: "@weak"`: a weak-to-strong
    # student pairs seed for seed with its weak run). None: the stage's seeds.
    seed_from: str | None = None
    # Optional data_identity(task, params) -> dict: what a run id records of files its
    # params name (a prompt file's fingerprint), so editing them gives new runs.
    data_identity: Callable[[Any, Any], dict[str, Any]] | None = None

    def for_kind(self, kind: str) -> MethodDef:
        """The definition that runs tasks of `kind`: a variant's, else this one."""
        return self.variants.get(kind, self)

    def load(self) -> Any:
        """The entry object: a Recipe subclass (run by the engine) or a function(ctx)."""
        module, _, func = self.entry.partition(":")
        return getattr(importlib.import_module(module), func)


METHODS: Registry[MethodDef] = Registry("method")


def is_run_reference(value: str) -> bool:
    """Whether a param value names other runs: `@stage[...]` as written, or `run:<id>` as
    the grid resolves it (params that take run products validate with this)."""
    return value.startswith(("@", "run:"))


def register_method(method: MethodDef) -> MethodDef:
    """Add a method to the registry. Raises ValueError when its params model would accept
    NaN or infinity (derive it from `config.Strict` or `engine.args.TrainArgs`), or when
    the name is taken."""
    for d in (method, *method.variants.values()):
        if d.params.model_config.get("allow_inf_nan", True):
            raise ValueError(
                f"method {method.name!r}: its params model {d.params.__name__} accepts NaN "
                "and inf; derive it from scalelab.config.Strict or scalelab.engine.args.TrainArgs"
            )
    if not set(method.variants) <= set(method.task_kinds):
        raise ValueError(f"method {method.name!r}: variants for kinds it does not list")
    return METHODS.register(method.name, method)


def register_variant(name: str, kind: str, variant: MethodDef) -> MethodDef:
    """Add the definition that runs tasks of `kind` to the registered method `name` (its
    own params, entry, checks, metrics and products; `for_kind(kind)` returns it), so a
    new kind of task for an existing method is one file ending in this call. Returns the
    updated method. Raises ValueError when `name` is not registered, the method already
    serves `kind`, the variant is named otherwise, or its params model accepts NaN."""
    from dataclasses import replace

    if name not in METHODS:
        raise ValueError(f"method {name!r}: register it before its variants")
    method = METHODS.get(name)
    if kind in method.task_kinds:
        raise ValueError(f"method {name!r} already serves task kind {kind!r}")
    if variant.name != name:
        raise ValueError(f"a variant of {name!r} is named {variant.name!r}")
    if variant.params.model_config.get("allow_inf_nan", True):
        raise ValueError(f"method {name!r}: variant params {variant.params.__name__} accept NaN")
    updated = replace(method, task_kinds=(*method.task_kinds, kind),
                      variants={**method.variants, kind: variant})  # fmt: skip
    return METHODS.replace(name, updated)


def print_warnings(event: dict) -> None:
    """The report of a run started outside a grid: progress is dropped, warnings go to
    stderr (inside a grid the driver's progress display prints them)."""
    if "warning" in event:
        print(f"warning: {event['warning']}", file=sys.stderr, flush=True)


@dataclass
class RunContext:
    """Everything one run needs. `report(event)` sends three kinds of event to whoever
    started the run: optimizer steps ({"step", "total", "loss"}), preparation progress
    without a loss ({"step", "total", "info"}, e.g. tokenizing: step and total in MB) and
    warnings ({"warning": line})."""

    run_id: str
    model: Any  # models.registry.ModelRef, resolved once at spec time
    task: Any  # the validated task model (e.g. LMTask)
    params: Any  # the validated params model of this method
    seed: int
    run_dir: Path
    runtime: Any  # grid.spec.Runtime
    report: Callable[[dict], None] = print_warnings
    config: dict[str, Any] = field(default_factory=dict)  # what the run id hashes
    # param -> the ModelRefs (run products) it names, in the order the spec lists them
    inputs: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass
class RunResult:
    """Metrics (stable names, see README) and an optional learning curve.

    curve: rows of {"step", "tokens", "train_loss", "val_loss"} (val_loss may be None).
    """

    metrics: dict[str, Any]
    curve: list[dict[str, Any]] = field(default_factory=list)


def run_method(method: MethodDef, ctx: RunContext) -> RunResult:
    """Run one method on one context: a Recipe goes through the training engine; a plain
    function (a method that trains nothing) is called as is."""
    from scalelab.engine.recipe import Recipe

    entry = method.for_kind(ctx.task.kind).load()
    if isinstance(entry, type) and issubclass(entry, Recipe):
        from scalelab.engine.loop import train

        return train(entry(ctx), ctx)
    return entry(ctx)
