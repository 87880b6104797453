"""Live run logging: scalars written by each backend read back with that backend's reader."""

from __future__ import annotations

import pytest

from scalelab.engine.logging import RUN_ID_TAG, RunLogger, open_run_logger
from scalelab.errors import ScalelabError
from scalelab.grid.store import ResultsStore

CONFIG = {
    "experiment": "tiny",
    "model": "gpt-d1",
    "method": "pretrain",
    "seed": 0,
    "params": {"lr": 3e-3, "batch_size": 8},
    "task": {"dataset": "wikitext2", "seq_len": 32, "eval": {"window": None}},
}


def _run_dir(tmp_path, run_id: str = "0123456789abcdef"):
    d = tmp_path / "out" / "runs" / run_id
    d.mkdir(parents=True)
    return d


def _write(logger: RunLogger) -> None:
    for step in (1, 2, 3):
        logger.log(step, {"train_loss": 4.0 - step, "lr": 1e-3 * step, "val_loss": None})
    logger.log(3, {"val_loss": 2.5})


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = _run_dir(tmp_path)
    (run_dir / "tensorboard").mkdir()
    (run_dir / "tensorboard" / "events.out.tfevents.stale").write_bytes(b"old attempt")
    with open_run_logger(["tensorboard"], run_dir, run_dir.name, CONFIG) as logger:
        assert logger.active
        _write(logger)
    files = list((run_dir / "tensorboard").iterdir())
    assert len(files) == 1 and "stale" not in files[0].name  # a fresh start clears old logs

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train_loss", "lr", "val_loss"}
    train = acc.Scalars("train_loss")
    assert [e.step for e in train] == [1, 2, 3]
    assert [e.value for e in train] == pytest.approx([3.0, 2.0, 1.0])
    assert [(e.step, e.value) for e in acc.Scalars("val_loss")] == [(3, 2.5)]

    # Resuming from a checkpoint at step 2: events from step 2 on are replaced, not doubled.
    with open_run_logger(["tensorboard"], run_dir, run_dir.name, CONFIG, resume_step=2) as lg:
        lg.log(2, {"train_loss": 1.75})
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train_loss")] == [(1, 3.0), (2, 1.75)]


def test_mlflow_run_is_tagged_and_holds_params_and_metric_history(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_dir = _run_dir(tmp_path)
    store = (tmp_path / "out" / "mlruns").resolve().as_uri()
    with open_run_logger(["mlflow", "mlflow"], run_dir, run_dir.name, CONFIG) as logger:
        _write(logger)
    with pytest.raises(RuntimeError), open_run_logger(["mlflow"], run_dir, "f" * 16, CONFIG) as lg:
        lg.log(1, {"train_loss": 9.0})
        raise RuntimeError("the run crashed")

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("tiny")  # the spec's name from the config
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_dir.name}'"
    )
    assert len(runs) == 1  # "mlflow" named twice still logs once
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags[RUN_ID_TAG] == run_dir.name
    assert run.data.params["params.lr"] == "0.003" and run.data.params["task.seq_len"] == "32"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_loss")] == [
        (3, 2.5)
    ]
    (crashed,) = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{'f' * 16}'"
    )
    assert crashed.info.status == "FAILED"

    # A resumed run continues the same MLflow run; a fresh start replaces it.
    with open_run_logger(["mlflow"], run_dir, run_dir.name, CONFIG, resume_step=3) as logger:
        logger.log(4, {"train_loss": 0.5})
    again = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_dir.name}'"
    )
    assert [r.info.run_id for r in again] == [run.info.run_id]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    with open_run_logger(["mlflow"], run_dir, run_dir.name, CONFIG) as logger:
        logger.log(1, {"train_loss": 3.5})
    fresh = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_dir.name}'"
    )
    assert len(fresh) == 1 and fresh[0].info.run_id != run.info.run_id


def test_no_backends_is_a_no_op_and_unknown_names_are_user_errors(tmp_path):
    run_dir = _run_dir(tmp_path)
    with open_run_logger([], run_dir, run_dir.name, CONFIG) as logger:
        assert not logger.active
        logger.log(1, {"train_loss": "not even checked"})
    assert list(run_dir.iterdir()) == [] and not (tmp_path / "out" / "mlruns").exists()
    with pytest.raises(ScalelabError, match="unknown logger 'wandb'.*tensorboard, mlflow"):
        open_run_logger(["tensorboard", "wandb"], run_dir, run_dir.name, CONFIG)
    assert not (run_dir / "tensorboard").exists()  # nothing opened before the check


def test_a_non_numeric_scalar_is_a_clear_error(tmp_path):
    run_dir = _run_dir(tmp_path)
    with open_run_logger(["tensorboard"], run_dir, run_dir.name, CONFIG) as logger:
        with pytest.raises(ValueError, match="lr='fast' at step 7 is not a number"):
            logger.log(7, {"lr": "fast"})


def test_mlflow_collects_system_metrics_with_its_own_monitor(tmp_path, monkeypatch):
    """MLflow's SystemMetricsMonitor runs beside the run: `system/*` metrics appear."""
    import time

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    run_dir = _run_dir(tmp_path)
    with open_run_logger(["mlflow"], run_dir, run_dir.name, CONFIG) as logger:
        logger.log(1, {"train_loss": 3.0})
        time.sleep(1.0)
    client = MlflowClient(tracking_uri=(tmp_path / "out" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id])
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/disk_usage_percentage" in run.data.metrics


def test_a_run_sends_its_monitor_points_to_tensorboard(tmp_path, corpus, capsys):
    from helpers import cli, tiny_lm_spec
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", models=["gpt-d1"],
                        params={"tokens": 8 * 32 * 6, "batch_size": 8},
                        runtime={"threads": 1, "monitor_every": 3,
                                 "log_to": ["tensorboard"]})  # fmt: skip
    assert cli("run", spec, "--quiet", capsys=capsys)[0] == 0
    (folder,) = (tmp_path / "out" / "runs").glob("*/tensorboard")
    acc = EventAccumulator(str(folder))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"grad_norm", "grad_norm/block.0", "weight_norm/head", "lr/0", "mem/rss_mb"} <= tags
    assert [e.step for e in acc.Scalars("grad_norm/block.0")] == [3, 6]
    # the live logs end on the table's numbers: the final evaluation, not the periodic one
    row = ResultsStore(tmp_path / "out" / "results.sqlite").table().iloc[0]
    for name in ("val_loss", "test_loss"):
        last = acc.Scalars(name)[-1]
        assert last.step == 6 and last.value == pytest.approx(row[name], rel=1e-6), name
    assert acc.Scalars("val_loss_periodic")[-1].step == 6
