"""One run as a torchrun job of `runtime.nproc_per_node` DDP processes.

The runner (in the executor's process) calls `launch_ddp`, which writes the run's
description to `run_dir/launch.json` (plain JSON: config, model reference, runtime; no
pickles) and starts `python -m torch.distributed.run --nproc_per_node N -m
scalelab.engine.launch run_dir/launch.json`. Every rank rebuilds the same RunSpec from it
and runs the engine; rank 0 alone writes checkpoints, products and `ddp_result.json`, which
the runner reads back. Resume works as in one process: the ranks load rank 0's checkpoint.

A user can also start a run by hand on a multi-GPU node with the same module, e.g.
`torchrun --nproc_per_node 8 -m scalelab.engine.launch runs/<id>/launch.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from scalelab.errors import ScalelabError
from scalelab.io import atomic_write_json


def launch_ddp(run, runtime, run_dir: Path, report=lambda e: None):
    """Run `run` under torchrun with runtime.nproc_per_node processes; its RunResult."""
    import torch

    from scalelab.methods.base import RunResult

    run_dir = Path(run_dir)
    gpus = torch.cuda.device_count() if runtime.device != "cpu" else 0
    if gpus and runtime.nproc_per_node > gpus:  # NCCL refuses two ranks on one GPU
        raise ScalelabError(
            f"runtime.nproc_per_node ({runtime.nproc_per_node}) exceeds the {gpus} visible "
            "GPU(s): one process per GPU (set runtime.device: cpu for gloo processes)"
        )
    spec = {
        "experiment": run.experiment, "stage": run.stage, "config": run.config,
        "model": dataclasses.asdict(run.model), "deps": list(run.deps),
        "inputs": {k: [dataclasses.asdict(r) for r in v] for k, v in run.inputs.items()},
        "runtime": runtime.model_dump(mode="json"), "run_dir": str(run_dir.resolve()),
    }  # fmt: skip
    atomic_write_json(run_dir / "launch.json", spec)
    result_file = run_dir / "ddp_result.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={runtime.nproc_per_node}", "-m", "scalelab.engine.launch",
           str(run_dir / "launch.json")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(runtime.threads or 1)}
    report({"step": 0, "total": None, "info": f"launching {runtime.nproc_per_node} processes"})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (run_dir / "ddp.log").write_text(proc.stdout + proc.stderr)
    if not result_file.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ScalelabError(f"torchrun exited with {proc.returncode}: {tail[0]} (see ddp.log)")
    out = json.loads(result_file.read_text())
    if out.get("error"):
        raise ScalelabError(out["error"])
    return RunResult(metrics=out["metrics"], curve=out["curve"])


def _rebuild(spec: dict):
    """(RunSpec, Runtime) from launch.json, validated exactly as at spec time."""
    from scalelab.config import validate
    from scalelab.data.tasks import parse_task
    from scalelab.grid.spec import RunSpec, Runtime
    from scalelab.methods.base import METHODS
    from scalelab.models.registry import ModelRef

    c = spec["config"]
    task = parse_task(c["task"], "task")
    run = RunSpec(
        run_id=Path(spec["run_dir"]).name, experiment=spec["experiment"],
        model=ModelRef(**spec["model"]), task=task, method=c["method"],
        params=validate(METHODS.get(c["method"]).for_kind(task.kind).params, c["params"]),
        seed=c["seed"], config=c, stage=spec["stage"], deps=tuple(spec["deps"]),
        inputs={k: tuple(ModelRef(**r) for r in v) for k, v in spec["inputs"].items()},
    )  # fmt: skip
    runtime = validate(Runtime, {**spec["runtime"], "nproc_per_node": 1})
    return run, runtime


def main(path: str) -> None:
    """One rank of a DDP run (started by torchrun)."""
    from scalelab.builtins import load_builtins
    from scalelab.engine import distributed
    from scalelab.methods.base import METHODS, RunContext, run_method

    load_builtins()
    spec = json.loads(Path(path).read_text())
    run, runtime = _rebuild(spec)
    run_dir = Path(spec["run_dir"])
    ctx = RunContext(run_id=run.run_id, model=run.model, task=run.task, params=run.params,
                     seed=run.seed, run_dir=run_dir, runtime=runtime,
                     config={"experiment": run.experiment, **run.config},
                     inputs=run.inputs)  # fmt: skip
    try:
        result = run_method(METHODS.get(run.method), ctx)
        out = None if result is None else {"metrics": result.metrics, "curve": result.curve}
    except Exception as err:  # noqa: BLE001 - rank 0 reports it to the runner
        out = {
            "error": str(err) if isinstance(err, ScalelabError) else f"{type(err).__name__}: {err}"
        }
        if distributed.rank_world()[0] != 0:
            raise
    if out is not None and distributed.rank_world()[0] == 0:
        atomic_write_json(run_dir / "ddp_result.json", out)


if __name__ == "__main__":
    main(sys.argv[1])
