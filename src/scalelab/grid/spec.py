"""The experiment spec: one YAML file declaring a grid of runs.

    name: quickstart
    models: [gpt-d1, gpt-d2]          # list -> one axis of the grid
    tasks: {dataset: wikitext2, seq_len: 128, tokenizer: {kind: bpe, vocab_size: 512}}
    methods: pretrain                  # or [full, {name: lora, r: [4, 8]}]
    params: {tokens: 1000000, lr: [1e-3, 3e-3]}   # list -> sweep axis
    seeds: [0, 1]

Models, tasks, methods and seeds may each be one value or a list. Inside `params`, a
method entry and a task entry, a list expands into an axis unless the field itself takes a
list (then write a list of lists to sweep it). The typed models below are the source of
truth; unknown keys and wrong types are errors naming the field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, field_validator

from scalelab.config import Strict, validate
from scalelab.errors import ScalelabError
from scalelab.models.registry import ModelRef


class Runtime(Strict):
    """How runs execute. Not part of a run's identity: changing these reruns nothing."""

    workers: PositiveInt = 1  # parallel local processes (the CLI's --workers overrides)
    threads: PositiveInt | None = None  # torch threads per run (None: num_cpus or 1, any executor)
    compile: bool = False  # torch.compile the model+loss (cold compile costs 8-34 s)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every_s: PositiveFloat = 30.0
    checkpoint_every_steps: int = Field(0, ge=0)  # 0 = time-based only
    # Executor by registered name (serial, processes, ray); None: serial for one worker,
    # else processes. The CLI's --executor overrides.
    executor: str | None = None
    num_cpus: PositiveFloat | None = None  # per run, for executors that place runs (ray)
    num_gpus: float = Field(0.0, ge=0)  # per run (ray)
    nproc_per_node: PositiveInt = 1  # >1: each run is one torchrun job of N DDP processes
    log_to: list[Literal["tensorboard", "mlflow"]] = []  # live scalars, one log per run


STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _listify(v: Any) -> list:
    return v if isinstance(v, list) else [v]


class Stage(Strict):
    """One named stage of a multi-stage spec. Fields left out take the top-level value
    (`params` merge over the top-level params). A model or param value `@name` refers to
    the products of the runs of stage `name` (see grid/dag.py)."""

    models: list[str] | None = None
    tasks: list[Any] | None = None
    methods: list[str | dict[str, Any]] | None = None
    params: dict[str, Any] = {}
    seeds: list[int] | None = None

    @field_validator("models", "tasks", "methods", "seeds", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> list | None:
        if v is None:
            return None
        v = _listify(v)
        if not v:
            raise ValueError("an empty list gives no runs")
        return v


class ExperimentSpec(Strict):
    """A grid of runs (models x tasks x methods x param sweeps x seeds), or with `stages`,
    several such grids whose runs feed later stages' runs (a DAG, grid/dag.py)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    output_dir: str = "scalelab-results"  # store and run folders; relative to the cwd
    models: list[str] | None = None
    tasks: list[Any] | None = None
    methods: list[str | dict[str, Any]] | None = None
    params: dict[str, Any] = {}
    seeds: list[int] = [0]
    stages: dict[str, Stage] | None = None
    runtime: Runtime = Runtime()

    @field_validator("models", "tasks", "methods", "seeds", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> list | None:
        if v is None:
            return None
        v = _listify(v)
        if not v:
            raise ValueError("an empty list gives no runs")
        return v

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, v: dict[str, Stage] | None) -> dict[str, Stage] | None:
        if v is not None:
            if not v:
                raise ValueError("an empty mapping gives no runs")
            for name in v:
                if not STAGE_NAME.match(name):
                    raise ValueError(f"stage name {name!r}: use letters, digits, _ and -")
        return v

    def stage_list(self) -> dict[str, Stage]:
        """Every stage with the top-level defaults filled in (one stage `main` without
        `stages`); raises ScalelabError naming a stage that lacks models, tasks or methods."""
        raw = self.stages or {"main": Stage()}
        out = {}
        for name, st in raw.items():
            where = f"stages.{name}." if self.stages else ""
            filled = Stage(
                models=st.models or self.models,
                tasks=st.tasks or self.tasks,
                methods=st.methods or self.methods,
                params={**self.params, **st.params},
                seeds=st.seeds or self.seeds,
            )
            for key in ("models", "tasks", "methods"):
                if getattr(filled, key) is None:
                    raise ScalelabError(f"{where}{key}: field required")
            out[name] = filled
        return out

    @property
    def store_path(self) -> Path:
        return Path(self.output_dir).expanduser() / "results.sqlite"

    @property
    def runs_dir(self) -> Path:
        return Path(self.output_dir).expanduser() / "runs"


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run. `config` is what the run id hashes and the store records.

    model: the resolved reference (a run product when the spec names `@stage`);
    deps: ids of the runs whose products this run reads (they run first);
    inputs: param name -> resolved reference for params that name other runs' products.
    """

    run_id: str
    experiment: str
    model: ModelRef
    task: Any
    method: str
    params: Any
    seed: int
    config: dict[str, Any]
    stage: str = "main"
    deps: tuple[str, ...] = ()
    inputs: dict[str, ModelRef] = field(default_factory=dict)


def load_spec(path: str | Path) -> ExperimentSpec:
    """Parse and validate a spec file (errors name the file and the field). The caller
    has registered the built-ins (`load_builtins()`, done by every entry point)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ScalelabError(f"cannot read spec file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScalelabError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ScalelabError(f"{path}: expected a mapping of spec fields at the top level")
    try:
        return validate(ExperimentSpec, raw)
    except ScalelabError as err:
        raise ScalelabError(f"{path}: {err}") from None


def _takes_list(model: type[BaseModel], key: str) -> bool:
    field = model.model_fields.get(key)
    if field is None:
        return False
    ann = field.annotation
    kinds = (
        typing.get_args(ann)
        if typing.get_origin(ann) in (typing.Union, types.UnionType)
        else (ann,)
    )
    return any(typing.get_origin(k) in (list, tuple) or k in (list, tuple) for k in kinds)


def expand_axes(section: dict[str, Any], model: type[BaseModel]) -> list[dict[str, Any]]:
    """Every combination of the list-valued keys of `section` (those not typed as lists)."""
    axes = [k for k, v in section.items() if isinstance(v, list) and not _takes_list(model, k)]
    axes += [
        k
        for k, v in section.items()
        if isinstance(v, list) and v and isinstance(v[0], list) and _takes_list(model, k)
    ]
    if not axes:
        return [dict(section)]
    for k in axes:
        if not section[k]:
            raise ScalelabError(f"{k}: an empty list gives no runs")
    return [
        {**section, **dict(zip(axes, combo, strict=True))}
        for combo in itertools.product(*(section[k] for k in axes))
    ]


def run_id_of(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expand(spec: ExperimentSpec) -> list[RunSpec]:
    """All runs of the spec, dependencies before dependents (grid/dag.py)."""
    from scalelab.grid.dag import expand_stages

    return expand_stages(spec)
