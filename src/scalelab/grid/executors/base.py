"""The executor interface and registry: where and how many runs execute at once.

An executor only runs what the scheduler hands it (`grid/schedule.py` decides order,
dependencies and claims). Runs never write the store: `wait()` returns (run, row, curve)
and the driver records it, so SQLite has one writer whatever the executor.

A new executor is one module with a subclass of `Executor` and one
`EXECUTORS.register(name, cls)` line, imported by `grid/executors/__init__.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from scalelab.errors import ScalelabError
from scalelab.grid.spec import RunSpec, Runtime
from scalelab.registry import Registry

OnEvent = Callable[[str, dict], None]  # (run_id, {"start"} | {"step", "total", "loss"})
Finished = tuple[RunSpec, dict, list]  # (run, store row, learning curve)
ATTEMPTS = "attempts.jsonl"  # one line per time a run started executing, in its folder


class Executor(ABC):
    """Runs submitted runs, up to `slots` at a time, and hands back the finished ones.

    Created with the spec's runtime, the run folders and a progress callback (called in the
    driver, from `wait()`). `submit` must not be called with `slots` runs in flight.
    `close()` cancels or kills whatever is still running; it is also what `with` calls.
    """

    name: ClassVar[str] = ""

    def __init__(
        self, runtime: Runtime, runs_dir: Path, on_event: OnEvent, workers: int = 1
    ) -> None:
        self.runtime = pin_threads(runtime)
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        self.on_event = on_event
        self.workers = workers
        self.slots = 1

    @classmethod
    def check(cls, runtime: Runtime) -> None:
        """Raise ScalelabError if this executor cannot run here (cheap: no heavy imports).
        The default: it can run anywhere."""
        return None

    @abstractmethod
    def submit(self, run: RunSpec) -> None:
        """Start (or queue) one run."""

    @abstractmethod
    def wait(self, timeout: float) -> list[Finished]:
        """Runs finished since the last call; waits up to `timeout` s for at least one."""

    @abstractmethod
    def close(self) -> None:
        """Cancel or kill runs still in flight and free the executor's resources."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS: Registry[type[Executor]] = Registry("executor")


def pin_threads(runtime: Runtime) -> Runtime:
    """The one place the torch thread count of a run is decided.

    `runtime.threads` unset means max(1, int(num_cpus or 1)) in every executor: a run's
    floating-point results (reductions split across threads) must not depend on whether it
    ran in-process, in a pool or on Ray, and a run's resource request says what it may use.
    """
    if runtime.threads is not None:
        return runtime
    return runtime.model_copy(update={"threads": max(1, int(runtime.num_cpus or 1))})


def executor_name(runtime: Runtime, workers: int) -> str:
    """`runtime.executor`, else serial for one worker and processes for more."""
    return runtime.executor or ("processes" if workers > 1 else "serial")


def get_executor(name: str | None, runtime: Runtime | None = None) -> type[Executor]:
    """The executor class registered as `name`; raises ScalelabError naming
    `runtime.executor` when it is unknown or cannot run here (e.g. ray not installed)."""
    import scalelab.grid.executors  # noqa: F401  (registers the built-in executors)

    try:
        cls = EXECUTORS.get(name or "serial")
    except ScalelabError as err:
        raise ScalelabError(f"runtime.executor: {err}") from None
    if runtime is not None:
        cls.check(runtime)
    return cls


def check_executor(runtime: Runtime) -> None:
    """Spec-time validation of `runtime.executor` (None is fine: chosen from workers)."""
    if runtime.executor is not None:
        get_executor(runtime.executor, runtime)


def start_run(
    run: RunSpec, runtime: Runtime, runs_dir: Path, report: Callable[[dict], None], where: str
) -> tuple[dict, list]:
    """What every executor calls where a run executes: log the attempt, then train.

    The attempt log (`runs/<id>/attempts.jsonl`) says how often and where a run started,
    which is how a resumed or contested run can be audited (and how tests count starts).
    """
    from scalelab.engine.devices import release_freed_memory
    from scalelab.grid.runner import execute

    release_freed_memory()  # a reused worker: earlier runs' freed memory is not this run's
    run_dir = Path(runs_dir) / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    line = {
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        "executor": where,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    with open(run_dir / ATTEMPTS, "a") as f:  # one short O_APPEND write: atomic enough
        f.write(json.dumps(line) + "\n")
    report({"start": True})
    return execute(run, runtime, runs_dir, report)


def start_run_in_worker(
    run: RunSpec, runtime: Runtime, runs_dir: Path, report: Callable[[dict], None], where: str
) -> tuple[dict, list]:
    """`start_run` in a worker process that outlives its runs (processes, ray). After the
    run, what is still alive (torch, transformers and their caches, which live as long as
    the worker) is moved out of the garbage collector's view, so the full collection that
    opens each later run (`release_freed_memory`) scans only what that run creates: about
    0.3 s a run. Not for the serial executor: the driver's objects are not all long-lived."""
    import gc

    try:
        return start_run(run, runtime, runs_dir, report, where)
    finally:
        gc.collect()
        gc.freeze()


def crashed_row(
    run: RunSpec, err: BaseException, runs_dir: Path, what: str = "worker process"
) -> dict:
    """The failed row of a run whose executing process died before returning one. Its
    `runs/<id>/error.txt` holds what the driver knows (the process left no traceback)."""
    import traceback

    from scalelab.grid.runner import ERROR_FILE, base_row
    from scalelab.io import atomic_write_text

    error = f"{what} died: {type(err).__name__}: {err}".splitlines()[0]
    run_dir = Path(runs_dir) / run.run_id
    if run_dir.is_dir():  # the run started: say so beside its checkpoint
        details = "".join(traceback.format_exception(err))
        atomic_write_text(run_dir / ERROR_FILE, f"{error}\n\n{CRASH_HINT}\n\n{details}")
        error += f" (see {Path(runs_dir).name}/{run.run_id}/{ERROR_FILE})"
    return {**base_row(run), "status": "failed", "metrics": {}, "error": error}


CRASH_HINT = (
    "The process running this run ended without reporting: killed by a signal (SIGKILL from "
    "the kernel's out-of-memory killer is the usual cause: see `dmesg` or the system log), "
    "a crash in native code, or its node was lost. `scalelab run --retry-failed` resumes it "
    "from its last good checkpoint."
)
