"""The processes executor: N spawned local worker processes.

Workers never touch the store: they return (row, curve) and the driver writes, so SQLite
sees one writer. Progress events travel back through a plain multiprocessing queue.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path

from scalelab.grid.executors.base import (
    EXECUTORS,
    Executor,
    Finished,
    OnEvent,
    crashed_row,
    start_run_in_worker,
)
from scalelab.grid.spec import RunSpec, Runtime

_EVENTS = None  # the progress queue, set in each worker process by _init_worker
_PARENT = 0


def _init_worker(events, parent: int) -> None:
    global _EVENTS, _PARENT
    _EVENTS, _PARENT = events, parent
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """On Linux, ask the kernel to SIGKILL this worker when the driver dies: a worker still
    importing torch or preparing data sends no progress event for a long while, so the check
    in `report` alone leaves it alive that long after a `kill -9` of the driver (seen: over
    60 s on a loaded host). Elsewhere the check in `report` is what there is."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the driver died before the request was made
        os._exit(1)


def _worker(run: RunSpec, runtime: Runtime, runs_dir: Path) -> tuple[dict, list]:
    def report(event: dict) -> None:
        # A parent killed with SIGKILL cannot stop its pool: orphaned workers would train on
        # and race a resumed run for the same checkpoint folder. Progress events come every
        # step, so checking here bounds an orphan's life to one step.
        if os.getppid() != _PARENT:
            os._exit(1)
        _EVENTS.put((run.run_id, event))

    return start_run_in_worker(run, runtime, runs_dir, report, "processes")


class ProcessesExecutor(Executor):
    """`workers` spawned processes (spawn, not fork: fork after torch started threads can
    deadlock). A worker that dies (OOM kill, segfault) gives its run a failed row."""

    name = "processes"

    def __init__(
        self, runtime: Runtime, runs_dir: Path, on_event: OnEvent, workers: int = 1
    ) -> None:
        super().__init__(runtime, runs_dir, on_event, workers)
        self.slots = max(1, workers)
        ctx = mp.get_context("spawn")
        # A plain queue handed over at spawn time: a Manager would add a server process
        # that outlives a killed parent.
        self._events = ctx.Queue()
        self._pool = ProcessPoolExecutor(
            self.slots,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self._events, os.getpid()),
        )
        self._futures: dict[Future, RunSpec] = {}

    def submit(self, run: RunSpec) -> None:
        fut = self._pool.submit(_worker, run, self.runtime, self.runs_dir)
        self._futures[fut] = run

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            done, _ = wait_futures(
                list(self._futures), timeout=max(0.0, min(0.25, left)), return_when=FIRST_COMPLETED
            )
            self._drain()
            if done or left <= 0 or not self._futures:
                break
        out = []
        for fut in done:
            run = self._futures.pop(fut)
            try:
                row, curve = fut.result()
            except Exception as err:  # the worker process itself died
                row, curve = crashed_row(run, err, self.runs_dir), []
            out.append((run, row, curve))
        return out

    def _drain(self) -> None:
        while True:
            try:
                run_id, event = self._events.get_nowait()
            except queue_mod.Empty:
                return
            self.on_event(run_id, event)

    def close(self) -> None:
        """Kill the workers, then shut the pool down. Workers still running belong to an
        interrupted grid; idle ones have returned every result, and a clean exit of a
        process that imported torch took 10-50 s on a loaded host (the driver sat there
        after its last run)."""
        for f in self._futures:
            f.cancel()
        kill = getattr(self._pool, "kill_workers", None)  # public from Python 3.14
        if kill is not None:
            kill()
        else:
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()
        self._events.close()
        self._events.cancel_join_thread()


EXECUTORS.register("processes", ProcessesExecutor)
