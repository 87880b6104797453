"""The serial executor: one run at a time, in the driver process.

The simplest and the easiest to debug (breakpoints and tracebacks work); nothing to kill
on close, since a run only executes inside `wait()`.
"""

from __future__ import annotations

import sys
from collections import deque

from scalelab.grid.executors.base import EXECUTORS, Executor, Finished, start_run
from scalelab.grid.spec import RunSpec


class SerialExecutor(Executor):
    """Runs each submitted run to completion inside `wait()`, in submission order."""

    name = "serial"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slots = 1
        self._queue: deque[RunSpec] = deque()

    def submit(self, run: RunSpec) -> None:
        self._queue.append(run)

    def wait(self, timeout: float) -> list[Finished]:
        """Runs the next queued run (however long it takes: `timeout` cannot cut it short)."""
        if not self._queue:
            return []
        run = self._queue.popleft()
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            row, curve = start_run(
                run,
                self.runtime,
                self.runs_dir,
                lambda e, rid=run.run_id: self.on_event(rid, e),
                self.name,
            )
        finally:  # the driver may be a notebook: leave its thread count as it was
            torch = sys.modules.get("torch")
            if torch is not None and before is not None:
                torch.set_num_threads(before)
        return [(run, row, curve)]

    def close(self) -> None:
        self._queue.clear()


EXECUTORS.register("serial", SerialExecutor)
