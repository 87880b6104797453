"""Executors: the registry, one thread rule, identical rows on serial / processes / ray,
killing what is in flight, and a SIGKILLed ray driver leaving no training behind.

Real processes, a real local Ray cluster (one per module) and real SQLite files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import cli, tiny_lm_spec

from scalelab.grid.executors import EXECUTORS, get_executor, pin_threads
from scalelab.grid.executors.base import ATTEMPTS
from scalelab.grid.spec import Runtime, expand, load_spec
from scalelab.grid.store import ResultsStore

# Columns that legitimately differ between two executions of one run.
VOLATILE = ["wall_s", "tokens_per_s", "examples_per_s", "peak_mem_mb", "started_at",
            "finished_at", "git_commit", "versions", "host"]  # fmt: skip
# 300k steps: longer than any test waits. Every user kills or closes it mid-run; 3,000
# steps ended in seconds on a quiet host, before `training_pid` saw a checkpoint.
LONG = {"tokens": 8 * 32 * 300_000, "batch_size": 8, "lr": 3e-3}


def stored_rows(out: Path) -> pd.DataFrame:
    """Every deterministic column of the store (config, status, metrics), by run id."""
    table = ResultsStore(out / "results.sqlite").table()
    table = table.drop(columns=[c for c in VOLATILE if c in table.columns])
    return table.sort_values("run_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def serial_out(tmp_path_factory, corpus):
    """The tiny 3-run grid with `threads` unset, run once on the serial executor."""
    root = tmp_path_factory.mktemp("serial")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALELAB_HOME", str(root / "home"))
        spec = tiny_lm_spec(root / "s.yaml", corpus, root / "out", runtime={})
        assert cli("run", spec, "--quiet", "--executor", "serial")[0] == 0
    return root / "out"


def test_registry_and_unknown_executor_is_a_spec_error(tmp_path, corpus, capsys):
    assert {"serial", "processes", "ray"} <= set(EXECUTORS)
    assert get_executor("processes").name == "processes"
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out")
    code, _, err = cli("run", spec, "--executor", "threads", capsys=capsys)
    assert code == 2 and err.startswith("error: runtime.executor: unknown executor 'threads'")
    assert "known: processes, ray, serial" in err
    bad = tiny_lm_spec(tmp_path / "b.yaml", corpus, tmp_path / "out", runtime={"executor": "x"})
    code, _, err = cli("run", bad, "--dry-run", capsys=capsys)
    assert code == 2 and "runtime.executor: unknown executor 'x'" in err
    assert not (tmp_path / "out").exists()


def test_unset_threads_means_the_same_count_in_every_executor():
    assert pin_threads(Runtime()).threads == 1
    assert pin_threads(Runtime(num_cpus=2.5)).threads == 2
    assert pin_threads(Runtime(num_cpus=0.5)).threads == 1
    assert pin_threads(Runtime(threads=3, num_cpus=1)).threads == 3


def test_serial_and_processes_give_identical_rows_with_threads_unset(tmp_path, corpus, serial_out):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", runtime={})
    assert cli("run", spec, "--quiet", "--executor", "processes", "--workers", "2")[0] == 0
    a, b = stored_rows(serial_out), stored_rows(tmp_path / "out")
    assert len(a) == 3 and set(a["status"]) == {"done"}
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for rid in a["run_id"]:
        (start,) = (tmp_path / "out" / "runs" / rid / ATTEMPTS).read_text().splitlines()
        assert json.loads(start)["executor"] == "processes"


def test_ray_gives_identical_rows(tmp_path, corpus, serial_out, ray_cluster):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", runtime={})
    assert cli("run", spec, "--quiet", "--executor", "ray")[0] == 0
    pd.testing.assert_frame_equal(stored_rows(serial_out), stored_rows(tmp_path / "out"))
    assert ray_cluster.is_initialized()  # the executor left a cluster it did not start


def training_pid(runs_dir: Path, timeout: float = 600) -> int:
    """The pid of the first run that started executing (from its attempt log)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in runs_dir.glob(f"*/{ATTEMPTS}"):
            if (log.parent / "checkpoint").exists() and log.read_text().strip():
                return json.loads(log.read_text().splitlines()[-1])["pid"]
        time.sleep(0.1)
    raise AssertionError("no run started")


def assert_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.2)
    psutil.Process(pid).kill()
    raise AssertionError(f"training process {pid} still alive {timeout} s after")


def one_long_run(tmp_path, corpus):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", models=["gpt-d1"],
                        params=LONG, runtime={"checkpoint_every_steps": 10})  # fmt: skip
    (run,) = expand(load_spec(spec))
    return spec, run


# What an executor built by hand gets: the spec's checkpoint every 10 steps, so `training_pid`
# sees a checkpoint within seconds (a bare Runtime() checkpoints every 30 s: 30 s a test).
RUNTIME = Runtime(checkpoint_every_steps=10)


@pytest.mark.parametrize(
    "name", ["processes", pytest.param("ray", marks=pytest.mark.slow)]
)  # the same closing code; Ray's kill path is proved by the driver-SIGKILL test
def test_close_kills_runs_in_flight_and_progress_comes_back(tmp_path, corpus, name, request):
    if name == "ray":
        request.getfixturevalue("ray_cluster")
    _, run = one_long_run(tmp_path, corpus)
    events = []
    runs_dir = tmp_path / "out" / "runs"
    executor = get_executor(name)(RUNTIME, runs_dir, lambda rid, e: events.append(e))
    executor.submit(run)
    deadline = time.time() + 240
    while not any("step" in e for e in events) and time.time() < deadline:
        assert executor.wait(0.5) == []
    assert events[0] == {"start": True} and any("step" in e for e in events)
    pid = training_pid(runs_dir)
    executor.close()
    assert_gone(pid)


def test_a_worker_killed_mid_run_gives_a_failed_row_and_an_error_file(tmp_path, corpus):
    _, run = one_long_run(tmp_path, corpus)
    runs_dir = tmp_path / "out" / "runs"
    executor = get_executor("processes")(RUNTIME, runs_dir, lambda rid, e: None)
    with executor:
        executor.submit(run)
        os.kill(training_pid(runs_dir), signal.SIGKILL)  # what the OOM killer does
        deadline, finished = time.time() + 120, []
        while not finished and time.time() < deadline:
            finished = executor.wait(0.5)
    ((got, row, curve),) = finished
    assert got.run_id == run.run_id and row["status"] == "failed" and curve == []
    assert row["error"].startswith("worker process died: ")
    assert row["error"].endswith(f"(see runs/{run.run_id}/error.txt)")
    text = (runs_dir / run.run_id / "error.txt").read_text()
    assert "out-of-memory killer" in text and "--retry-failed" in text


def test_sigkill_of_a_ray_driver_with_its_own_cluster_leaves_no_training(tmp_path, corpus):
    pytest.importorskip("ray")
    spec, _ = one_long_run(tmp_path, corpus)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    kill_driver_and_check(spec, tmp_path / "out" / "runs", env)


@pytest.fixture
def ray_head(tmp_path):
    """A separate Ray cluster (`ray start --head --block`): what RAY_ADDRESS points at."""
    pytest.importorskip("ray")

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    gcs = port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: unix socket paths are capped
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
           f"--port={gcs}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
           f"--ray-client-server-port={port()}", f"--dashboard-agent-listen-port={port()}",
           f"--dashboard-agent-grpc-port={port()}", f"--runtime-env-agent-port={port()}",
           f"--metrics-export-port={port()}"]  # fmt: skip
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env["RAY_ADDRESS"] = f"127.0.0.1:{gcs}"
    yield env
    procs = psutil.Process(head.pid).children(recursive=True)
    head.send_signal(signal.SIGTERM)  # --block: stopping it stops the processes it started
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        head.kill()
    _, alive = psutil.wait_procs(procs, timeout=30)
    for p in alive:
        p.kill()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow  # the own-cluster case above is the proof; this adds a head process
def test_sigkill_of_a_ray_driver_on_a_remote_cluster_leaves_no_training(tmp_path, corpus, ray_head):
    spec, _ = one_long_run(tmp_path, corpus)
    kill_driver_and_check(spec, tmp_path / "out" / "runs", ray_head)


def kill_driver_and_check(spec: Path, runs_dir: Path, env: dict) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-m", "scalelab.cli", "run", str(spec), "--quiet", "--executor", "ray"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pid = training_pid(runs_dir)
        assert driver.poll() is None, "the run finished before the driver could be killed"
        assert psutil.Process(pid).is_running() and pid != driver.pid
    finally:
        family = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert_gone(pid)
    state = next(runs_dir.glob("*/checkpoint/state.json"))
    before = state.stat().st_mtime_ns
    time.sleep(3)
    assert state.stat().st_mtime_ns == before  # nothing writes checkpoints any more
    _, alive = psutil.wait_procs(family, timeout=5)  # Ray's agents may linger, idle: clean up
    for p in alive:
        p.kill()
