"""Live scalars of a run (loss, learning rate, validation metrics, monitor points) to
TensorBoard and MLflow (which also collects system metrics, `system/*`, itself).

`runtime.log_to` names the backends; the training loop opens one logger per run and calls
`logger.log(step, {"train_loss": ..., "lr": ...})` as it goes. What the store keeps (the final
metrics and the curve) does not depend on these logs: they are for watching runs live.

- "tensorboard": event files in `<run_dir>/tensorboard` (`tensorboard --logdir OUTPUT_DIR/runs`).
- "mlflow": a local file store in `<output_dir>/mlruns`, one MLflow run per scalelab run, tagged
  `scalelab.run_id`, params = the flattened run config, experiment = the spec's name
  (`MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri OUTPUT_DIR/mlruns`).

Only one process per run may log (rank 0 under DDP: the others pass `log_to=[]`). The
backends' packages are imported when a logger opens, so listing and validating never pay
for them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from scalelab.config import flatten
from scalelab.errors import ScalelabError

BACKENDS = ("tensorboard", "mlflow")
RUN_ID_TAG = "scalelab.run_id"
MAX_PARAM_CHARS = 500  # MLflow's limit on a param value in its older 2.x releases
SYSTEM_SAMPLING_S = 10.0  # MLflow system metrics: seconds between samples


class _Backend(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self, failed: bool) -> None: ...


class RunLogger:
    """Sends scalars to every opened backend; with none it does nothing. A context manager:
    leaving it closes the backends (an exception marks the MLflow run FAILED)."""

    def __init__(self, backends: list[_Backend] | None = None) -> None:
        self._backends = list(backends or [])
        self._closed = False

    @property
    def active(self) -> bool:
        """True when at least one backend is open (the caller may skip computing scalars)."""
        return bool(self._backends) and not self._closed

    def log(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Record `scalars` (name -> number; None = not measured, skipped) at optimizer step
        `step`. Raises ValueError for a value that is not a number."""
        if not self.active:
            return
        clean = {}
        for k, v in scalars.items():
            if v is None:
                continue
            try:
                clean[str(k)] = float(v)
            except (TypeError, ValueError):
                raise ValueError(
                    f"logged scalar {k}={v!r} at step {step} is not a number"
                ) from None
        if clean:
            for b in self._backends:
                b.log(int(step), clean)

    def close(self, *, failed: bool = False) -> None:
        """Flush and close every backend (idempotent); `failed` marks the MLflow run FAILED."""
        if self._closed:
            return
        self._closed = True
        for b in self._backends:
            b.close(failed)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def open_run_logger(
    log_to: list[str],
    run_dir: Path,
    run_id: str,
    config: Mapping[str, Any],
    *,
    resume_step: int | None = None,
) -> RunLogger:
    """A logger for one run writing to each backend named in `log_to` (duplicates once).

    run_dir: the run's folder, `<output_dir>/runs/<run_id>` (MLflow's store goes two levels up).
    config: the run's config as the store records it; its "experiment" key (if present)
        names the MLflow experiment, and the whole of it, flattened, becomes the params.
    resume_step: None for a fresh start, which clears this run's earlier logs (a TensorBoard
        folder left by a failed attempt, an MLflow run of the same scalelab run id); the
        checkpoint's step when resuming, which keeps them and continues (TensorBoard drops
        its events at steps >= resume_step, since they are logged again).
    Raises ScalelabError for an unknown backend name or a backend whose package is missing.
    """
    unknown = [n for n in log_to if n not in BACKENDS]
    if unknown:
        raise ScalelabError(
            f"runtime.log_to: unknown logger {unknown[0]!r} (known: {', '.join(BACKENDS)})"
        )
    opened: list[_Backend] = []
    try:
        for name in dict.fromkeys(log_to):
            opener = _TensorBoard if name == "tensorboard" else _MLflow
            opened.append(opener(Path(run_dir), run_id, dict(config), resume_step))
    except BaseException:
        for b in opened:
            b.close(True)
        raise
    return RunLogger(opened)


def _missing(package: str) -> ScalelabError:
    return ScalelabError(
        f"runtime.log_to: {package} is not installed (pip install 'scalelab[log]')"
    )


class _TensorBoard:
    """Event files under `run_dir/tensorboard`, one scalar tag per metric name."""

    def __init__(
        self, run_dir: Path, run_id: str, config: dict[str, Any], resume_step: int | None
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        folder = run_dir / "tensorboard"
        if resume_step is None:
            shutil.rmtree(folder, ignore_errors=True)  # a fresh start: no stale curves
        # flush_secs: the default (120 s) is too slow to watch a run live.
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=resume_step, flush_secs=10)
        if resume_step is None:
            blob = json.dumps({"run_id": run_id, **config}, indent=2, sort_keys=True, default=str)
            self.writer.add_text("config", f"```\n{blob}\n```", global_step=0)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, global_step=step)

    def close(self, failed: bool) -> None:
        self.writer.close()


class _MLflow:
    """One MLflow run in the file store `<output_dir>/mlruns`, found again by its tag."""

    def __init__(
        self, run_dir: Path, run_id: str, config: dict[str, Any], resume_step: int | None
    ) -> None:
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow") from None
        # MLflow 3 refuses file stores unless asked; a folder next to the results is what
        # keeps logging free of servers and safe for parallel worker processes.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        store = (run_dir.parent.parent / "mlruns").resolve()
        self.client = MlflowClient(tracking_uri=store.as_uri())
        exp_id = self._experiment(str(config.get("experiment") or "scalelab"))
        previous = self.client.search_runs(
            [exp_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'"
        )
        if resume_step is not None and previous:
            self.run_id = previous[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self._start_system_metrics(store, resume=True)
            return
        for old in previous:  # a fresh start replaces earlier attempts (soft delete)
            self.client.delete_run(old.info.run_id)
        model, method = config.get("model"), config.get("method")
        name = " ".join(str(p) for p in (run_id[:8], model, method) if p)
        run = self.client.create_run(exp_id, run_name=name, tags={RUN_ID_TAG: run_id})
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self._start_system_metrics(store, resume=False)

    def _start_system_metrics(self, store: Path, resume: bool) -> None:
        """MLflow's own system-metrics collector (a thread: CPU, memory, disk, network; GPU
        when pynvml is installed) as `system/*` metrics of this run, every
        SYSTEM_SAMPLING_S seconds (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides)."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.system = SystemMetricsMonitor(
            self.run_id, sampling_interval=SYSTEM_SAMPLING_S, resume_logging=resume,
            tracking_uri=store.as_uri(),
        )  # fmt: skip
        self.system.start()

    def _experiment(self, name: str) -> str:
        """The id of experiment `name`, created (or restored) as needed; two processes may
        race to create it, and the loser reads the winner's."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException:
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def log(self, step: int, scalars: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, failed: bool) -> None:
        self.system.finish()
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
