"""A rich progress display: runs done / total, and each active run's step and loss."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class GridProgress:
    def __init__(self, total_runs: int, labels: dict[str, str], enabled: bool = True) -> None:
        self.console = Console(file=sys.stderr)
        self.labels = labels
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
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
        if "warning" in event:  # printed even when the display is off (--quiet)
            line = f"warning: run {run_id[:8]} {self.labels.get(run_id, '')}: {event['warning']}"
            self.console.print(escape(line), soft_wrap=True)  # one line, even in a log file
            return
        if event.get("start"):
            self.active[run_id] = self.progress.add_task(
                f"  {self.labels.get(run_id, run_id)}", total=None, info="starting"
            )
            return
        task = self.active.get(run_id)
        if task is not None and "step" in event:
            info = f"loss {event['loss']:.4f}" if event.get("loss") is not None else ""
            info = event.get("info") or info  # e.g. "tokenizing train: 300 MB, 95 MB/s"
            self.progress.update(task, completed=event["step"], total=event.get("total"), info=info)

    def on_done(self, run_id: str, line: str) -> None:
        task = self.active.pop(run_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.overall)
        self.progress.console.print(line, soft_wrap=True)
