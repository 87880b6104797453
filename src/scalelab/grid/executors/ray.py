"""The ray executor: each run is one Ray task, on a local or a remote cluster.

Cluster: with `RAY_ADDRESS` set the driver connects to that cluster; otherwise it starts a
local one for itself (`ray.init(address="local")`, all cores, no dashboard) and shuts it
down when the grid ends. A driver that finds Ray already initialized (a notebook, a test)
uses that cluster and leaves it running.

Resources: each task asks for `runtime.num_cpus` CPUs (default 1) and `runtime.num_gpus`
GPUs; Ray places it on a node that has them. `slots` is how many such tasks the cluster
holds at once, so runs the driver claims are runs that start.

Store and products: a task returns (row, curve) and the driver records it, so the driver
stays the only store writer. Products (model folders, label files) are written to the run
folders under `output_dir`, and a dependent run reads its dependencies' products from
there: on a cluster of several nodes, `output_dir` must be a shared filesystem mounted at
the same path on every node (paths are made absolute in the driver). Every node needs the
same scalelab installed; the driver's `SCALELAB_HOME`, when set, is passed to tasks.

Progress: a `ray.util.queue.Queue` actor owned by the driver; tasks send at most a few
events per second and the driver drains it in `wait()`.

A killed driver leaves no training behind: a local cluster started by `ray.init` shares
the driver's fate (its raylet and workers exit within seconds of a SIGKILL); on a remote
cluster, the workers of a job are killed when its driver disconnects, and the queue actor
dies with the driver, so a task that can no longer report exits. Both are tested with a
real SIGKILL in tests/grid/test_executors.py. Tasks are not retried (`max_retries=0`): a
dead task is a failed row; rerunning resumes it from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from pathlib import Path

from scalelab.errors import ScalelabError
from scalelab.grid.executors.base import (
    EXECUTORS,
    Executor,
    Finished,
    OnEvent,
    crashed_row,
    start_run_in_worker,
)
from scalelab.grid.spec import RunSpec, Runtime

FORWARDED_ENV = ("SCALELAB_HOME",)
EVENT_EVERY_S = 0.25  # progress events are throttled to this interval in the task


def scalelab_run(
    run: RunSpec, runtime: Runtime, runs_dir: Path, events
) -> tuple[dict, list]:  # pragma: no cover - runs in a Ray worker
    """The Ray task: one run, with progress sent to the driver's queue."""
    import ray

    last = 0.0

    def report(event: dict) -> None:
        nonlocal last
        now = time.monotonic()
        if "step" in event and event.get("step") != event.get("total"):
            if now - last < EVENT_EVERY_S:
                return
        last = now
        try:
            events.put_nowait((run.run_id, event))
        except ray.exceptions.RayError:
            os._exit(1)  # the driver and its queue are gone: nobody will record this run

    return start_run_in_worker(run, runtime, runs_dir, report, "ray")


def _absolute(run: RunSpec) -> RunSpec:
    """Model references with relative paths, made absolute (workers have another cwd)."""

    def fix(ref):
        if ref.kind in ("local", "run") and ref.path and not Path(ref.path).is_absolute():
            return dataclasses.replace(ref, path=str(Path(ref.path).resolve()))
        return ref

    return dataclasses.replace(
        run, model=fix(run.model), inputs={k: tuple(map(fix, v)) for k, v in run.inputs.items()}
    )


def _slots(resources: dict, cpus: float, gpus: float) -> int:
    fits = [resources.get("CPU", 0.0) // cpus]
    if gpus > 0:
        fits.append(resources.get("GPU", 0.0) // gpus)
    return int(min(fits))


class RayExecutor(Executor):
    """Runs as Ray tasks; see the module docstring for cluster, resources and products."""

    name = "ray"

    @classmethod
    def check(cls, runtime: Runtime) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ScalelabError(
                "runtime.executor is 'ray' but ray is not installed (pip install 'scalelab[ray]')"
            )

    def __init__(
        self, runtime: Runtime, runs_dir: Path, on_event: OnEvent, workers: int = 1
    ) -> None:
        super().__init__(runtime, runs_dir, on_event, workers)
        import ray
        from ray.util.queue import Queue

        self._started, self._events, self._refs = False, None, {}  # ObjectRef -> RunSpec
        address = os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            self._init(address)
        cpus, gpus = float(runtime.num_cpus or 1), float(runtime.num_gpus)
        self.slots = _slots(ray.cluster_resources(), cpus, gpus)
        if self.slots < 1:
            if not address:
                self.close()
                raise ScalelabError(
                    f"the local Ray cluster ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
                    f"{ray.cluster_resources().get('GPU', 0):g} GPUs) cannot fit one run "
                    f"(runtime.num_cpus={cpus:g}, runtime.num_gpus={gpus:g})"
                )
            self.slots = 1  # a remote cluster may autoscale: let Ray queue the task
        self._events = Queue(actor_options={"num_cpus": 0})
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        self._task = ray.remote(scalelab_run).options(
            num_cpus=cpus,
            num_gpus=gpus,
            max_retries=0,
            runtime_env={"env_vars": env} if env else None,
        )

    def _init(self, address: str | None) -> None:
        import logging

        import ray

        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(
                    address="local",
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
                self._started = True
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
            raise ScalelabError(f"cannot start or reach {where}: {err}") from None

    def submit(self, run: RunSpec) -> None:
        ref = self._task.remote(_absolute(run), self.runtime, self.runs_dir, self._events)
        self._refs[ref] = run

    def wait(self, timeout: float) -> list[Finished]:
        import ray

        deadline = time.monotonic() + timeout
        ready: list = []
        while self._refs:
            left = deadline - time.monotonic()
            refs = list(self._refs)
            ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, min(0.25, left)))
            self._drain()
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                break
            if left <= 0:
                break
        out = []
        for ref in ready:
            run = self._refs.pop(ref)
            try:
                row, curve = ray.get(ref)
            except ray.exceptions.RayError as err:  # the task or its worker died
                row, curve = crashed_row(run, err, self.runs_dir, "ray task"), []
            out.append((run, row, curve))
        return out

    def _drain(self) -> None:
        n = self._events.qsize()
        if n:
            for run_id, event in self._events.get_nowait_batch(n):
                self.on_event(run_id, event)

    def close(self) -> None:
        """Cancel (force-kill) tasks still running; stop the cluster if this driver started
        it."""
        import ray

        if not ray.is_initialized():
            return
        for ref in self._refs:
            ray.cancel(ref, force=True)
        self._refs.clear()
        if self._events is not None:
            ray.kill(self._events.actor)
            self._events = None
        if self._started:
            ray.shutdown()
            self._started = False


EXECUTORS.register("ray", RayExecutor)
