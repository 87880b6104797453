"""Run one grid cell: build its context, call its method, turn the outcome into a store row.

Failures are data, not crashes: an exception inside a run becomes a `failed` row with the
error message (which names `runs/<id>/error.txt`, where the traceback is), and the other runs
go on. A result holding a NaN or infinite metric or curve value is a failure too: a
diverged run is never stored as done.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from pathlib import Path

from scalelab.errors import ScalelabError
from scalelab.grid.provenance import git_commit, host, versions
from scalelab.grid.spec import RunSpec, Runtime
from scalelab.io import atomic_write_json, atomic_write_text
from scalelab.methods.base import METHODS, RunContext, run_method


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def base_row(run: RunSpec) -> dict:
    """The store row of a run before its outcome: identity, config and provenance."""
    return {
        "run_id": run.run_id,
        "experiment": run.experiment,
        "stage": run.stage,
        "deps": list(run.deps),
        "config": run.config,
        "seed": run.seed,
        "started_at": _now(),
        "git_commit": git_commit(),
        "versions": versions(),
        "host": host(),
    }


def numerics(runtime: Runtime) -> dict:
    """What a run's floating-point results depend on beyond its config (stored in the row,
    not hashed into the run id): the device, torch intra-op threads (reductions split
    differently; runtime.threads as pinned by the executor) and DDP processes."""
    import torch

    from scalelab.engine.devices import device_name

    return {
        "device": device_name(runtime),
        "threads": runtime.threads or torch.get_num_threads(),
        "processes": runtime.nproc_per_node,
    }


ERROR_FILE = "error.txt"  # in the run folder: the traceback of its last failure


def execute(
    run: RunSpec, runtime: Runtime, runs_dir: Path, report=lambda e: None
) -> tuple[dict, list]:
    """Train and evaluate one run; returns (store row, learning curve). Never raises for a
    failure inside the run: the row then has status 'failed' and a one-line error naming
    the file with the details (`runs/<id>/error.txt`)."""
    from scalelab.builtins import load_builtins
    from scalelab.engine.loop import first_nonfinite
    from scalelab.engine.monitor import EVENTS_FILE

    load_builtins()
    run_dir = Path(runs_dir) / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", {"experiment": run.experiment, **run.config})
    if not (run_dir / "checkpoint").exists():  # a fresh start: no events of an old attempt
        (run_dir / EVENTS_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    row = base_row(run)
    ctx = RunContext(
        run_id=run.run_id,
        model=run.model,
        task=run.task,
        params=run.params,
        seed=run.seed,
        run_dir=run_dir,
        runtime=runtime,
        report=report,
        config={"experiment": run.experiment, **run.config},
        inputs=run.inputs,
    )
    curve: list = []
    try:
        method = METHODS.get(run.method)
        if runtime.nproc_per_node > 1:
            from scalelab.engine.launch import launch_ddp

            result = launch_ddp(run, runtime, run_dir, report)
        else:
            result = run_method(method, ctx)
        bad = first_nonfinite(result.metrics, result.curve)  # whatever the method or launcher
        if bad is not None:
            raise ScalelabError(f"non-finite result: {bad}")
        # The products of the definition that ran (a variant's for its task kind);
        # events.json: the engine's, when any.
        kept = (*method.for_kind(run.task.kind).products, EVENTS_FILE)
        products = {p: f"runs/{run.run_id}/{p}" for p in kept if (run_dir / p).exists()}
        row.update(status="done", metrics=result.metrics, error=None, products=products)
        curve = result.curve
        (run_dir / ERROR_FILE).unlink(missing_ok=True)  # an earlier attempt's, now stale
    except Exception as err:  # noqa: BLE001 - recorded, then the grid goes on
        message = str(err) if isinstance(err, ScalelabError) else f"{type(err).__name__}: {err}"
        line = message.splitlines()[0] if message else type(err).__name__
        atomic_write_text(run_dir / ERROR_FILE, traceback.format_exc())
        where = f"{Path(runs_dir).name}/{run.run_id}/{ERROR_FILE}"
        row.update(status="failed", metrics={}, error=f"{line} (see {where})")
        curve = list(getattr(err, "curve", None) or [])  # the engine's, up to the fault
    row.update(
        runtime=numerics(runtime),
        finished_at=_now(),
        wall_s=row.get("metrics", {}).get("wall_s") or time.perf_counter() - t0,
    )
    return row, curve
