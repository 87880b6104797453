"""A rich progress display: runs done / total, and each active run's step and loss.

On a terminal the bars redraw in place. Elsewhere (a log file, CI, `nohup`) a live display
would show nothing until the end, so each run gets plain lines instead: one when it starts
and its step and loss at most every LOG_EVERY_S seconds and at its last step.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LOG_EVERY_S = 30.0


class GridProgress:
    def __init__(self, total_runs: int, labels: dict[str, str], enabled: bool = True) -> None:
        self.console = Console(file=sys.stderr)
        self.labels = labels
        self.plain = enabled and not self.console.is_terminal
        self.logged: dict[str, float] = {}  # run id -> when its last plain line was printed
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            # Off a terminal the plain lines are the display: a live one would only redraw,
            # unseen, 10 times a second (measured: half the driver's CPU time). On a
            # terminal 4 redraws a second are plenty for steps that take ~10-100 ms.
            disable=not enabled or self.plain,
            refresh_per_second=4,
            transient=False,
        )
        self.overall = self.progress.add_task("runs", total=total_runs, info="")
        self.active: dict[str, int] = {}

    def __enter__(self) -> GridProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def on_event(self, run_id: str, event: dict) -> None:
        label = self.labels.get(run_id, run_id[:8])  # a label starts with the short run id
        if "warning" in event:  # printed even when the display is off (--quiet)
            line = f"warning: run {label}: {event['warning']}"
            self.console.print(escape(line), soft_wrap=True)  # one line, even in a log file
            return
        if event.get("start"):
            self.active[run_id] = self.progress.add_task(f"  {label}", total=None, info="starting")
            if self.plain:
                self.logged[run_id] = time.monotonic()
                self._line(f"  start {label}")
            return
        task = self.active.get(run_id)
        if task is not None and "step" in event:
            info = f"loss {event['loss']:.4f}" if event.get("loss") is not None else ""
            info = event.get("info") or info  # e.g. "tokenizing train: 300 MB, 95 MB/s"
            self.progress.update(task, completed=event["step"], total=event.get("total"), info=info)
            if self.plain:
                self._log_step(run_id, label, event, info)

    def _log_step(self, run_id: str, label: str, event: dict, info: str) -> None:
        now, total = time.monotonic(), event.get("total")
        last = event["step"] == total
        if not last and now - self.logged.get(run_id, now) < LOG_EVERY_S:
            return
        self.logged[run_id] = now
        of = f"/{total}" if total else ""
        self._line(f"  step  {label} {event['step']}{of} {info}".rstrip())

    def _line(self, text: str) -> None:
        self.console.print(escape(text), soft_wrap=True, highlight=False)

    def on_done(self, run_id: str, line: str) -> None:
        task = self.active.pop(run_id, None)
        self.logged.pop(run_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.overall)
        self.progress.console.print(line, soft_wrap=True)
