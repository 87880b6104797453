"""`scalelab eval --models models.yaml --tasks tasks.yaml`: every model on every task at
every shot count, as one experiment of `evaluate` runs.

The two files use the format of "LLMs on the Line" (Mayilvahanan et al. 2025,
github.com/brendel-group/llm-line), read as is:

    # models.yaml                              # tasks.yaml
    models:                                    task_configs:
      - name: smollm2-135m                       piqa: {shots: [0, 5]}
        batch_size: 16                           my_task.yaml: {shots: [0], limit: 200}
        dtype: bfloat16
        revision: null                         validation_configs:   # corpus loss
        dataset: "SmolLM corpus"   # labels        wiki: {path: val.txt, max_seq_len: 128}

A model is any name scalelab resolves (ladder run folder, registered model, local folder,
Hub id, `http://host:port/v1#name`); `revision` is a Hub revision or a run's kept
checkpoint. Each (model, task) pair is one stage of a generated spec, written to
`<output-dir>/<name>.yaml` (so `results`, `report` and `compare` read it like any spec);
a rerun skips the runs already stored, and a local model folder is part of its runs' ids,
so a changed checkpoint under the same name is evaluated again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import Field, NonNegativeInt, PositiveInt

from scalelab.config import Strict, load_yaml, validate
from scalelab.errors import ScalelabError, clip

# Labels llm-line keeps beside a model; recorded in the spec's description, change nothing.
_LABELS = ("architecture", "dataset", "dataset_version", "dataset_size")


class ModelEntry(Strict):
    name: str = Field(min_length=1)
    cls: Literal["hf", "local", "http"] | None = None  # llm-line's lm-eval model class
    revision: str | None = None
    batch_size: PositiveInt = 16
    device: Literal["cpu", "cuda", "auto"] | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    architecture: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    dataset_size: str | None = None


class ModelsFile(Strict):
    models: list[ModelEntry] = Field(min_length=1)


class TaskEntry(Strict):
    shots: list[NonNegativeInt] = Field([0], min_length=1)
    limit: PositiveInt | None = None


class CorpusEntry(Strict):
    path: str
    max_seq_len: PositiveInt = 1024
    batch_size: PositiveInt | None = None  # llm-line's; scoring batches by window here
    max_steps: PositiveInt | None = None  # with batch_size: scores at most that many windows


class TasksFile(Strict):
    task_configs: dict[str, TaskEntry] = {}
    validation_configs: dict[str, CorpusEntry] = {}


def _read(path: Path, model: type[Strict], role: str) -> Any:
    from scalelab.grid.spec import read_spec_text

    raw = load_yaml(read_spec_text(path, role), clip(path))
    try:
        return validate(model, raw if raw is not None else {})
    except ScalelabError as err:
        raise ScalelabError(f"{clip(path)}: {err}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[-24:] or "x"


def build_spec(models: ModelsFile, tasks: TasksFile, name: str, output_dir: Path) -> dict:
    """The experiment spec (a dict) of every (model, task, shots) `evaluate` run."""
    if not tasks.task_configs and not tasks.validation_configs:
        raise ScalelabError("tasks file: task_configs and validation_configs are both empty")
    devices = {m.device for m in models.models if m.device}
    if len(devices) > 1:
        raise ScalelabError(f"models file: one device for all models, not {sorted(devices)}")
    labels = _check_names(models, tasks)
    stages: dict[str, dict] = {}
    for i, m in enumerate(models.models):
        model = f"{m.name}@{m.revision}" if m.revision else m.name
        params = {"batch_size": m.batch_size, **({"dtype": m.dtype} if m.dtype else {})}
        for task, entry in tasks.task_configs.items():
            stage = {"models": [model], "tasks": [{"dataset": ALIASES.get(task, task)}],
                     "params": {**params, "shots": entry.shots,
                                **({"limit": entry.limit} if entry.limit else {})}}  # fmt: skip
            stages[f"m{i}-{_slug(m.name)}__{_slug(labels[task])}"] = stage
        for corpus, c in tasks.validation_configs.items():
            path = Path(c.path).expanduser().absolute()
            # The whole file is scored as validation and test (evaluate reads no train).
            task = {"kind": "lm", "dataset": str(path.parent), "seq_len": c.max_seq_len,
                    "files": dict.fromkeys(("train", "validation", "test"), path.name)}  # fmt: skip
            if c.max_steps and c.batch_size:
                task["eval"] = {"max_tokens": c.max_steps * c.batch_size * c.max_seq_len}
            stages[f"m{i}-{_slug(m.name)}__{_slug(corpus)}"] = {
                "models": [model], "tasks": [task], "params": params}  # fmt: skip
    words = [f"{m.name}: " + ", ".join(f"{k}={getattr(m, k)}" for k in _LABELS
                                       if getattr(m, k)) for m in models.models]  # fmt: skip
    return {
        "name": name,
        "description": "; ".join(x for x in words if not x.endswith(": ")),
        "output_dir": str(output_dir),
        "methods": ["evaluate"],
        "stages": stages,
        "runtime": {"device": devices.pop() if devices else "auto"},
    }


# lm-evaluation-harness task names (as LLMs on the Line's tasks.yaml writes them) of the
# built-in tasks that scalelab names otherwise.
ALIASES = {"social_iqa": "siqa"}


def _check_names(models: ModelsFile, tasks: TasksFile) -> dict[str, str]:
    """Every model and task name resolves (all unknown task names in one line, naming the
    tasks file); returns each task's short name (a task file: its `task:`)."""
    from scalelab.data.multiple_choice import list_mc_tasks, load_mc_task
    from scalelab.models.registry import resolve_model

    for i, m in enumerate(models.models):
        try:
            resolve_model(f"{m.name}@{m.revision}" if m.revision else m.name)
        except ScalelabError as err:
            raise ScalelabError(f"models file: models.{i}.name: {err}") from None
    names, unknown = {}, []
    for task in tasks.task_configs:
        try:
            names[task] = load_mc_task(ALIASES.get(task, task)).name
        except ScalelabError as err:
            if Path(task).suffix in (".yaml", ".yml"):  # a task file: its own error
                raise ScalelabError(f"tasks file: task_configs.{task}: {err}") from None
            unknown.append(task)
    if unknown:
        raise ScalelabError(
            f"tasks file: task_configs: no multiple-choice task {', '.join(map(repr, unknown))} "
            f"(built in: {', '.join(list_mc_tasks())}; or a task YAML file)"
        )
    return names


def evaluate(
    models: Path = typer.Option(..., "--models", help="models.yaml (llm-line format)."),
    tasks: Path = typer.Option(
        ..., "--tasks", help="tasks.yaml: task_configs, validation_configs."
    ),
    name: str = typer.Option("eval", "--name", help="Experiment name (the spec and report)."),
    output_dir: Path = typer.Option(Path("scalelab-results"), "--output-dir"),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel local processes."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Run the failed runs again (without it they stay failed)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the runs and their state; score nothing."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Evaluate every model on every task and shot count; skip what is stored; print acc,
    acc_norm and task loss per (model, task, shots). Exits 1 when a run failed (now, or
    before and not retried)."""
    from scalelab.cli.run import _kept_failed, _print_dry_run
    from scalelab.grid.api import experiment_of, run_experiment
    from scalelab.grid.schedule import Rerun
    from scalelab.grid.spec import ExperimentSpec
    from scalelab.io import atomic_write_text

    raw = build_spec(_read(models, ModelsFile, "models"), _read(tasks, TasksFile, "tasks"),
                     name, output_dir)  # fmt: skip
    exp = experiment_of(validate(ExperimentSpec, raw))  # all checks before anything is written
    rerun = Rerun.of(False, retry_failed)
    if dry_run:
        _print_dry_run(exp, rerun)
        return
    path, text = output_dir / f"{name}.yaml", _dump(raw)
    if path.exists() and path.read_text(encoding="utf-8", errors="replace") != text:
        raise ScalelabError(
            f"{clip(path)} holds another evaluation (other models or tasks): give this one "
            "its own --name, or remove that file (its results stay in the store)"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    kept = _kept_failed(exp, rerun)
    counts = run_experiment(exp, workers=workers, retry_failed=retry_failed,
                            show_progress=not quiet)  # fmt: skip
    _print_table(exp)
    before = f", {len(kept)} failed before (kept; --retry-failed reruns)" if kept else ""
    typer.echo(f"{counts['done']} done, {counts['failed']} failed, {counts['already_done']} "
               f"already done{before} -> {exp.spec.store_path} (spec: {path})")  # fmt: skip
    if counts["failed"] or counts["skipped"] or kept:
        raise typer.Exit(1)


def _dump(raw: dict) -> str:
    """The spec as YAML without anchors (`&id001`): every stage spells its own values."""
    import yaml

    class Plain(yaml.SafeDumper):
        def ignore_aliases(self, data):  # noqa: ARG002 - yaml's hook
            return True

    return yaml.dump(raw, Dumper=Plain, sort_keys=False, allow_unicode=True)


def _print_table(exp) -> None:
    from scalelab.cli.common import stored_tables

    runs, _ = stored_tables(exp, exp.spec)
    if runs.empty:
        return
    runs = runs.assign(task=runs["stage"].str.split("__").str[-1])  # as tasks.yaml names it
    cols = [c for c in ("model", "task", "params.shots", "acc", "acc_norm", "acc_bytes",
                        "task_loss", "val_loss", "n_questions", "status") if c in runs]  # fmt: skip
    typer.echo(runs[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
