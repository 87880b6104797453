"""Run one grid cell: build its context, call its method, turn the outcome into a store row.

Failures are data, not crashes: an exception inside a run becomes a `failed` row with the
error message, and the other runs go on.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from pathlib import Path

from scalelab.errors import ScalelabError
from scalelab.grid.provenance import git_commit, host, versions
from scalelab.grid.spec import RunSpec, Runtime
from scalelab.io import atomic_write_json
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


def execute(
    run: RunSpec, runtime: Runtime, runs_dir: Path, report=lambda e: None
) -> tuple[dict, list]:
    """Train and evaluate one run; returns (store row, learning curve). Never raises for a
    failure inside the run: the row then has status 'failed' and the error."""
    from scalelab.builtins import load_builtins

    load_builtins()
    run_dir = Path(runs_dir) / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", {"experiment": run.experiment, **run.config})
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
        products = {p: f"runs/{run.run_id}/{p}" for p in method.products if (run_dir / p).exists()}
        row.update(status="done", metrics=result.metrics, error=None, products=products)
        curve = result.curve
    except Exception as err:  # noqa: BLE001 - recorded, then the grid goes on
        message = str(err) if isinstance(err, ScalelabError) else f"{type(err).__name__}: {err}"
        row.update(status="failed", metrics={}, error=message.splitlines()[0] if message else "")
        (run_dir / "error.txt").write_text(traceback.format_exc())
    row.update(
        finished_at=_now(), wall_s=row.get("metrics", {}).get("wall_s") or time.perf_counter() - t0
    )
    return row, curve
