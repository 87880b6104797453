"""The experiment spec: one YAML file declaring a grid of runs.

    name: quickstart
    models: [gpt-d1, gpt-d2]          # list -> one axis of the grid
    tasks: {dataset: wikitext2, seq_len: 128, tokenizer: {kind: bpe, vocab_size: 512}}
    methods: pretrain                  # or [full, {name: lora, r: [4, 8]}]
    params: {tokens: 1000000, lr: [1e-3, 3e-3]}   # list -> sweep axis
    seeds: [0, 1]

Models, tasks, methods and seeds may each be one value or a list. Inside `params`, a
method entry and a task entry, a list expands into an axis unless the field itself takes a
list (then write a list of lists to sweep it), also inside a nested section such as a
task's `augment: {method: eda, ratio: [0, 0.5, 1.0]}`. The typed models below are the source of
truth; unknown keys and wrong types are errors naming the field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    FiniteFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from scalelab.config import Strict, check_path_text, load_yaml, stat_or_none, validate
from scalelab.errors import ScalelabError, clip, shown
from scalelab.models.registry import ModelRef

# Seeds are 32-bit: numpy's legacy seeding takes no more, and methods derive per-step seeds
# as `seed * 1_000_003 + step`, which must stay inside torch's 64-bit generator seed.
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
MAX_PARALLEL = 4096  # workers, threads, processes per node: beyond any one machine
MAX_SPEC_BYTES = 1_000_000  # a spec is a few hundred bytes; this is not one
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # starts with a letter or digit: never `..`
MAX_NAME_LEN = 100
# Folders of the operating system: an output_dir resolving into one is refused, whatever
# the spelling (`../../etc`, a link). Compared as written and with links resolved (macOS
# keeps /etc in /private/etc).
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin",
               "/sys", "/usr")  # fmt: skip


class Runtime(Strict):
    """How runs execute. Not part of a run's identity: changing these reruns nothing. The
    device, thread count and processes can move results at float-rounding level (a
    reduction split two ways sums in another order), so each store row records the ones it
    ran with (`runtime` column, grid/runner.py `numerics`)."""

    # parallel local processes (the CLI's --workers overrides)
    workers: PositiveInt = Field(1, le=MAX_PARALLEL)
    # torch threads per run (None: num_cpus or 1, any executor)
    threads: PositiveInt | None = Field(None, le=MAX_PARALLEL)
    compile: bool = False  # torch.compile the model+loss (cold compile costs 8-34 s)
    # cuda on a machine that certainly has no GPU is refused when the spec is loaded
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every_s: FiniteFloat = Field(30.0, gt=0)
    checkpoint_every_steps: int = Field(0, ge=0)  # 0 = time-based only
    # Executor by registered name (serial, processes, ray); None: serial for one worker,
    # else processes. The CLI's --executor overrides.
    executor: str | None = Field(None, max_length=MAX_NAME_LEN)
    num_cpus: FiniteFloat | None = Field(None, gt=0)  # per run, for executors that place runs (ray)
    num_gpus: FiniteFloat = Field(0.0, ge=0)  # per run (ray)
    # >1: each run is one torchrun job of N DDP processes
    nproc_per_node: PositiveInt = Field(1, le=MAX_PARALLEL)
    log_to: list[Literal["tensorboard", "mlflow"]] = []  # live scalars, one log per run
    # steps between monitor points (lr per group, grad/weight norms per layer, memory,
    # throughput; engine/monitor.py); None: about 100 per run; 0: off
    monitor_every: int | None = Field(None, ge=0)


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
    seeds: list[Seed] | None = None

    @field_validator("models", "tasks", "methods", "seeds", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> list | None:
        if v is None:
            return None
        v = _listify(v)
        if not v:
            raise ValueError("an empty list gives no runs")
        return v


class ReportOptions(Strict):
    """What `scalelab report` leads with and `scalelab smallest` answers without flags.

    beats: the reference cell, MODEL/METHOD or MODEL/LABEL (a method entry's `label`),
    e.g. `gpt-d6/pretrain`: per method, the smallest model that beats it
    (`analysis/beats.py`); metric: the metric compared (default: the methods' first
    validation quality metric, e.g. val_loss); margin: count models no worse than the
    reference by more than this, in the metric's units (0.01: within 1 point of accuracy;
    a non-inferiority test), default 0 (strictly better); best_over: swept axes
    (`params.lr`, `task.*`), each one that varies in the grid: per model (and every other
    config) only the best setting over them counts, chosen on validation
    (`analysis/envelope.py`), and the scaling section draws that envelope beside the runs
    at each single value. reaches: instead of (or beside) a reference cell, a value of the
    metric to reach (`acc@piqa` 0.6): per method, the smallest model that reaches it and the
    size its fitted law predicts (`analysis/reaches.py`); chance: the accuracy floor of that
    prediction's two-step chain (default: fitted). loss_to_loss: "LX:LY" pairs of columns the report fits and draws
    as loss-to-loss (e.g. `val_loss@wikitext2:val_loss@news2017`, columns that `evaluate`
    runs of the models add; grid/api.py `with_evaluations`)."""

    beats: str | None = Field(None, max_length=MAX_NAME_LEN * 2)
    metric: str | None = Field(None, max_length=MAX_NAME_LEN)
    margin: FiniteFloat = Field(0.0, ge=0)
    reaches: FiniteFloat | None = None
    chance: FiniteFloat | None = Field(None, ge=0, lt=1)
    best_over: list[str] = Field([], max_length=8)
    loss_to_loss: list[str] = Field([], max_length=16)

    @field_validator("loss_to_loss")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        for pair in v:
            if pair.count(":") != 1 or not all(pair.split(":")):
                raise ValueError(f"{shown(pair)}: write LX:LY, e.g. val_loss@a:val_loss@b")
        return v

    @field_validator("best_over", mode="before")
    @classmethod
    def _axes(cls, v: Any) -> Any:
        for axis in _listify(v) if v is not None else []:
            if not (isinstance(axis, str) and re.match(r"^(params|task)\.[A-Za-z0-9_.]+$", axis)):
                raise ValueError(f"{shown(axis)}: write params.NAME or task.NAME, e.g. params.lr")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError("an axis is named twice")
        return _listify(v) if v is not None else []

    @field_validator("beats")
    @classmethod
    def _model_slash_method(cls, v: str | None) -> str | None:
        if v is not None:
            model, slash, method = v.rpartition("/")
            if not (slash and model.strip() and method.strip()):
                raise ValueError("write MODEL/METHOD, e.g. gpt-d6/pretrain")
        return v


class ExperimentSpec(Strict):
    """A grid of runs (models x tasks x methods x param sweeps x seeds), or with `stages`,
    several such grids whose runs feed later stages' runs (a DAG, grid/dag.py)."""

    # letters, digits, . _ - (not first): it names folders (the report's)
    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LEN)
    description: str = ""
    output_dir: str = "scalelab-results"  # store and run folders; relative to the cwd
    models: list[str] | None = None
    tasks: list[Any] | None = None
    methods: list[str | dict[str, Any]] | None = None
    params: dict[str, Any] = {}
    seeds: list[Seed] = [0]
    stages: dict[str, Stage] | None = None
    runtime: Runtime = Runtime()
    report: ReportOptions = ReportOptions()

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
                if not STAGE_NAME.match(name) or len(name) > MAX_NAME_LEN:
                    raise ValueError(
                        f"stage name {shown(name)}: use letters, digits, _ and - "
                        f"(at most {MAX_NAME_LEN})"
                    )
        return v

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, v: str) -> str:
        check_output_dir(v)
        return v

    @model_validator(mode="after")
    def _device_exists(self) -> ExperimentSpec:
        """`device: cuda` where runs execute here (not placed by ray) needs a GPU here."""
        if self.runtime.device == "cuda" and self.runtime.executor in (None, "serial", "processes"):
            from scalelab.engine.devices import missing_cuda_reason

            if reason := missing_cuda_reason():
                raise ValueError(
                    f"runtime.device: 'cuda' but this machine has no CUDA device ({reason}); "
                    "use auto or cpu"
                )
        return self

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
    inputs: param name -> the references it names (other runs' products), in order;
    variant: the method entry's `label` (default: the method's name), for tables only.
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
    inputs: dict[str, tuple[ModelRef, ...]] = field(default_factory=dict)
    variant: str = ""

    @property
    def entry_label(self) -> str:
        """What tables call this run's method: its entry's label, else the method's name."""
        return self.variant or self.method


def load_spec(path: str | Path) -> ExperimentSpec:
    """Parse and validate a spec file (errors name the file and the field). The caller
    has registered the built-ins (`load_builtins()`, done by every entry point).

    Raises ScalelabError for a file that cannot be read, is not a regular file, is larger
    than MAX_SPEC_BYTES or not UTF-8 text, for invalid YAML (see `config.load_yaml`: depth,
    alias expansion and duplicate keys are limited too) and for an invalid spec.
    """
    shown_path = clip(path)
    raw = load_yaml(read_spec_text(path), shown_path)
    if not isinstance(raw, dict):
        raise ScalelabError(f"{shown_path}: expected a mapping of spec fields at the top level")
    try:
        return validate(ExperimentSpec, raw)
    except ScalelabError as err:
        raise ScalelabError(f"{shown_path}: {err}") from None


def read_spec_text(path: str | Path, role: str = "spec") -> str:
    """The text of a spec file (or another small YAML file: `role` names it in errors,
    e.g. "models"), refusing anything but a regular UTF-8 file of at most MAX_SPEC_BYTES
    (a FIFO would block forever, a device never end). Raises ScalelabError naming the
    file."""
    where = f"{role} file {clip(path)}"
    try:
        checked = check_path_text(str(path))
        info = stat_or_none(checked)
    except ValueError as err:
        raise ScalelabError(f"cannot read {where}: {err}") from None
    if info is None:
        raise ScalelabError(f"cannot read {where}: No such file or directory")
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ScalelabError(f"cannot read {where}: it is {what}")
    if info.st_size > MAX_SPEC_BYTES:
        raise ScalelabError(f"{where} is larger than {MAX_SPEC_BYTES:,} bytes")
    try:
        with open(checked, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)  # it may have grown since the stat
    except OSError as err:
        raise ScalelabError(f"cannot read {where}: {err.strerror or err}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise ScalelabError(f"{where} is larger than {MAX_SPEC_BYTES:,} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ScalelabError(
            f"{where} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None


def _under_system_dir(path: Path) -> str | None:
    """The system folder `path` (absolute, resolved) is or lies in; None if none."""
    if path == Path(path.anchor):
        return path.anchor
    for name in SYSTEM_DIRS:
        for system in {Path(name), Path(os.path.realpath(name))}:
            if path == system or system in path.parents:
                return name
    return None


def check_output_dir(text: str) -> Path:
    """The output folder `text` names (relative to the cwd), if results can go there.

    Raises ValueError (for the `output_dir` field: pydantic names it and echoes the value)
    for a path the OS cannot take (NUL, too long), one that resolves to `/` or into a
    system folder (SYSTEM_DIRS; `..` and links resolved first), one that is, or lies under,
    something other than a folder (a file), and a folder (or the nearest existing parent)
    that is not writable.
    """
    path = check_path_text(text)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as err:  # a loop of links
        raise ValueError(f"cannot resolve the path: {err}") from None
    if (system := _under_system_dir(resolved)) is not None:
        raise ValueError(f"resolves to {clip(resolved, 60)}, in the system folder {system}")
    existing = resolved
    while (info := stat_or_none(existing)) is None and existing != existing.parent:
        existing = existing.parent
    if info is None or not stat.S_ISDIR(info.st_mode):
        what = "is" if existing == resolved else f"lies under {clip(existing, 60)}, which is"
        raise ValueError(f"{what} not a folder")
    if not _writable(existing):
        what = "" if existing == resolved else f" ({clip(existing, 60)})"
        raise ValueError(f"the folder{what} is not writable")
    return resolved


def _writable(folder: Path) -> bool:
    """Whether files can be created in `folder`: permissions, and not a read-only mount
    (root passes every permission check, never a read-only file system)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        return not os.statvfs(folder).f_flag & os.ST_RDONLY
    except (OSError, AttributeError):  # no statvfs (Windows): permissions decide
        return True


def _kinds(ann: Any) -> tuple:
    """The types an annotation admits: a union's members, Annotated unwrapped."""
    if typing.get_origin(ann) is Annotated:
        return _kinds(typing.get_args(ann)[0])
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return tuple(k for a in typing.get_args(ann) for k in _kinds(a))
    return (ann,)


def _takes_list(models: type[BaseModel] | tuple[type[BaseModel], ...], key: str) -> bool:
    """Whether field `key` of the model (of any of the models) is typed as a list."""
    for model in models if isinstance(models, tuple) else (models,):
        field = model.model_fields.get(key)
        if field is not None and any(
            typing.get_origin(k) in (list, tuple) or k in (list, tuple)
            for k in _kinds(field.annotation)
        ):
            return True
    return False


def _sub_models(models: type[BaseModel] | tuple[type[BaseModel], ...], key: str) -> tuple:
    """The pydantic models field `key` takes (a nested section, e.g. a task's `augment`)."""
    out = []
    for model in models if isinstance(models, tuple) else (models,):
        field = model.model_fields.get(key)
        if field is not None:
            out += [k for k in _kinds(field.annotation)
                    if isinstance(k, type) and issubclass(k, BaseModel)]  # fmt: skip
    return tuple(dict.fromkeys(out))


def expand_axes(
    section: dict[str, Any],
    model: type[BaseModel] | tuple[type[BaseModel], ...],
    where: str = "",
) -> list[dict[str, Any]]:
    """Every combination of the list-valued keys of `section` (those not typed as lists),
    also inside a nested section typed as a model (`augment: {ratio: [0, 0.5]}` sweeps
    `augment.ratio`).

    Raises ScalelabError `where.key: an empty list gives no runs` for an empty axis."""
    axes = [k for k, v in section.items() if isinstance(v, list) and not _takes_list(model, k)]
    axes += [
        k
        for k, v in section.items()
        if isinstance(v, list) and v and isinstance(v[0], list) and _takes_list(model, k)
    ]
    values = {k: section[k] for k in axes}
    for k in axes:
        if not section[k]:
            field = f"{where}.{clip(k, 40)}" if where else clip(k, 40)
            raise ScalelabError(f"{field}: an empty list gives no runs")
    for k, v in section.items():  # nested sections with axes of their own
        if isinstance(v, dict) and (subs := _sub_models(model, k)):
            inner = expand_axes(v, subs, f"{where}.{clip(k, 40)}" if where else clip(k, 40))
            if len(inner) > 1:
                axes.append(k)
                values[k] = inner
    if not axes:
        return [dict(section)]
    return [
        {**section, **dict(zip(axes, combo, strict=True))}
        for combo in itertools.product(*(values[k] for k in axes))
    ]


def run_id_of(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expand(spec: ExperimentSpec) -> list[RunSpec]:
    """All runs of the spec, dependencies before dependents (grid/dag.py)."""
    from scalelab.grid.dag import expand_stages

    return expand_stages(spec)
