"""Executors: run pending grid cells serially in this process, or in N local processes.

Workers never touch the store: they return (row, curve) and the parent writes, so SQLite
sees one writer. Progress events travel back through a queue.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from scalelab.grid.runner import base_row, execute
from scalelab.grid.spec import RunSpec, Runtime

OnEvent = Callable[[str, dict], None]  # (run_id, {"step", "total", "loss"})
OnDone = Callable[[RunSpec, dict, list], None]


def run_serial(
    runs: list[RunSpec], runtime: Runtime, runs_dir: Path, on_event: OnEvent, on_done: OnDone
) -> None:
    for run in runs:
        on_event(run.run_id, {"start": True})
        row, curve = execute(run, runtime, runs_dir, lambda e, rid=run.run_id: on_event(rid, e))
        on_done(run, row, curve)


_EVENTS = None  # the progress queue, set in each worker process by _init_worker
_PARENT = 0


def _init_worker(events, parent: int) -> None:
    global _EVENTS, _PARENT
    _EVENTS, _PARENT = events, parent


def _worker(run: RunSpec, runtime: Runtime, runs_dir: Path) -> tuple[dict, list]:
    def report(event: dict) -> None:
        # A parent killed with SIGKILL cannot stop its pool: orphaned workers would train on
        # and race a resumed run for the same checkpoint folder. Progress events come every
        # step, so checking here bounds an orphan's life to one step.
        if os.getppid() != _PARENT:
            os._exit(1)
        _EVENTS.put((run.run_id, event))

    report({"start": True})
    return execute(run, runtime, runs_dir, report)


def run_parallel(
    runs: list[RunSpec],
    runtime: Runtime,
    runs_dir: Path,
    workers: int,
    on_event: OnEvent,
    on_done: OnDone,
) -> None:
    """Run in `workers` spawned processes (one torch thread each unless runtime.threads says)."""
    if runtime.threads is None:
        runtime = runtime.model_copy(update={"threads": 1})
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    # A plain queue handed over at spawn time: a Manager would add a server process that
    # outlives a killed parent.
    events = ctx.Queue()
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(events, os.getpid())
    )
    with pool:
        futures = {pool.submit(_worker, run, runtime, runs_dir): run for run in runs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(events, on_event)
            for fut in done:
                run = futures[fut]
                try:
                    row, curve = fut.result()
                except Exception as err:  # the worker process itself died
                    row, curve = _crashed_row(run, err), []
                on_done(run, row, curve)
        _drain(events, on_event)


def _drain(events, on_event: OnEvent) -> None:
    while True:
        try:
            run_id, event = events.get_nowait()
        except queue_mod.Empty:
            return
        on_event(run_id, event)


def _crashed_row(run: RunSpec, err: BaseException) -> dict:
    error = f"worker process died: {type(err).__name__}: {err}"
    return {**base_row(run), "status": "failed", "metrics": {}, "error": error}
