"""What the CLI calls: plan, run and read back an experiment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scalelab.grid.spec import ExperimentSpec, RunSpec, expand, load_spec
from scalelab.grid.store import ResultsStore


@dataclass
class Experiment:
    spec: ExperimentSpec
    runs: list[RunSpec]
    store: ResultsStore

    @property
    def runs_dir(self) -> Path:
        return self.spec.runs_dir

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(runs table, curves table) for the runs this spec expands to, in grid order."""
        ids = [r.run_id for r in self.runs]
        return self.store.table(ids), self.store.curves(ids)

    def statuses(self) -> dict[str, str]:
        """run_id -> done | failed | resumable (checkpoint on disk) | pending."""
        stored = self.store.statuses(r.run_id for r in self.runs)
        out = {}
        for r in self.runs:
            if r.run_id in stored:
                out[r.run_id] = stored[r.run_id]
            elif (self.runs_dir / r.run_id / "checkpoint").exists():
                out[r.run_id] = "resumable"
            else:
                out[r.run_id] = "pending"
        return out


def open_experiment(spec_path: str | Path, output_dir: str | Path | None = None) -> Experiment:
    """Load and expand a spec (all validation happens here, before anything is written)."""
    spec = load_spec(spec_path)
    if output_dir is not None:
        spec = spec.model_copy(update={"output_dir": str(output_dir)})
    runs = expand(spec)
    return Experiment(spec=spec, runs=runs, store=ResultsStore(spec.store_path))


def load_experiment_tables(
    spec_path: str | Path, output_dir: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves table) for the runs an experiment spec expands to."""
    return open_experiment(spec_path, output_dir).tables()


def label(run: RunSpec) -> str:
    return f"{run.run_id[:8]} {run.model.name} {run.method} seed={run.seed}"


def run_experiment(
    exp: Experiment, workers: int = 1, force: bool = False, show_progress: bool = True
) -> dict[str, int]:
    """Run every run not yet done (all of them with force); returns counts by final status."""
    from scalelab.grid.executors import run_parallel, run_serial
    from scalelab.grid.progress import GridProgress

    statuses = exp.statuses()
    todo = [r for r in exp.runs if force or statuses[r.run_id] != "done"]
    if force:
        import shutil

        for r in todo:  # a forced rerun starts from scratch, not from an old checkpoint
            shutil.rmtree(exp.runs_dir / r.run_id, ignore_errors=True)
    counts = {"done": 0, "failed": 0, "skipped": len(exp.runs) - len(todo)}
    labels = {r.run_id: label(r) for r in todo}
    with GridProgress(len(todo), labels, enabled=show_progress) as progress:

        def on_done(run: RunSpec, row: dict, curve: list) -> None:
            exp.store.record(row, curve)
            counts[row["status"]] += 1
            m = row.get("metrics") or {}
            detail = (
                f"val_loss={m['val_loss']:.4f}"
                if "val_loss" in m
                else f"val_accuracy={m['val_accuracy']:.4f}"
                if "val_accuracy" in m
                else ""
            )
            if row["status"] == "failed":
                detail = f"FAILED: {row['error']}"
            progress.on_done(
                run.run_id,
                f"{row['status']:>6}  {labels[run.run_id]}  {detail}  "
                f"({row.get('wall_s') or 0:.1f} s)",
            )

        if workers > 1 and len(todo) > 1:
            run_parallel(todo, exp.spec.runtime, exp.runs_dir, workers, progress.on_event, on_done)
        else:
            run_serial(todo, exp.spec.runtime, exp.runs_dir, progress.on_event, on_done)
    return counts
