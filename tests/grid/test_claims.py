"""Claims: a run held by another live driver is waited for, adopted, or taken over when that
driver dies; two concurrent `scalelab run` on one output folder train each run once.

The "other driver" is a real process holding a real flock; the store is a real SQLite file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import tiny_lm_spec
from test_schedule import FakeExecutor

from scalelab.grid.claims import claim_path, holder, is_claimed, try_claim
from scalelab.grid.executors.base import ATTEMPTS
from scalelab.grid.runner import base_row
from scalelab.grid.schedule import Scheduler, plan
from scalelab.grid.spec import expand, load_spec
from scalelab.grid.store import ResultsStore

OTHER_DRIVER = """
import datetime as dt, json, sys, time
from pathlib import Path
from scalelab.grid.claims import try_claim
from scalelab.grid.store import ResultsStore
runs_dir, run_id, store_path, row, hold_s = sys.argv[1:]
claim = try_claim(Path(runs_dir), run_id)
assert claim is not None
print("claimed", flush=True)
time.sleep(float(hold_s))
if row != "-":
    row = json.loads(row)
    row["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    ResultsStore(store_path).record(row, [])
claim.release()
"""


def other_driver(runs_dir: Path, run_id: str, store: Path, row: dict | None, hold_s: float):
    proc = subprocess.Popen(
        [sys.executable, "-c", OTHER_DRIVER, str(runs_dir), run_id, str(store),
         json.dumps(row, default=str) if row else "-", str(hold_s)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_claim_excludes_every_other_until_released(tmp_path):
    first = try_claim(tmp_path, "abc")
    assert first is not None and is_claimed(tmp_path, "abc")
    assert try_claim(tmp_path, "abc") is None  # flock is per open file: same process too
    assert holder(tmp_path, "abc") == f"pid {os.getpid()} on {os.uname().nodename}"
    first.release()
    first.release()  # idempotent
    assert not is_claimed(tmp_path, "abc")
    with try_claim(tmp_path, "abc") as again:
        assert again.held
    assert claim_path(tmp_path, "abc").exists()  # never deleted: deleting would race


def test_is_claimed_writes_nothing(tmp_path):
    assert not is_claimed(tmp_path / "runs", "abc")
    assert not (tmp_path / "runs").exists()


def test_a_killed_holder_releases_its_claim(tmp_path):
    proc = other_driver(tmp_path, "abc", tmp_path / "s.sqlite", None, 600)
    assert is_claimed(tmp_path, "abc") and try_claim(tmp_path, "abc") is None
    assert holder(tmp_path, "abc") == f"pid {proc.pid} on {os.uname().nodename}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    claim = try_claim(tmp_path, "abc")
    assert claim is not None
    claim.release()


@pytest.fixture
def chain(tmp_path, corpus):
    """Three runs: a, b, and c which reads b's product."""
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out")
    a, b, c = expand(load_spec(spec))
    return [a, b, dataclasses.replace(c, deps=(b.run_id,))]


def run_scheduler(runs, tmp_path):
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    waits, outcomes = [], []
    sched = Scheduler(plan(runs), store, tmp_path / "out" / "runs", poll_s=0.1,
                      on_outcome=outcomes.append, on_waiting=lambda r, who: waits.append((r.run_id, who)))  # fmt: skip
    ex = FakeExecutor(tmp_path / "out" / "runs", store)
    return sched.run(ex), ex, waits, outcomes


@pytest.mark.parametrize("status", ["done", "failed"])
def test_a_run_claimed_elsewhere_is_waited_for_and_its_row_adopted(chain, tmp_path, status):
    a, b, c = chain
    row = {**base_row(b), "status": status, "metrics": {}, "error": None, "wall_s": 1.0}
    store = tmp_path / "out" / "results.sqlite"
    proc = other_driver(tmp_path / "out" / "runs", b.run_id, store, row, 2.0)
    counts, ex, waits, outcomes = run_scheduler(chain, tmp_path)
    assert proc.wait() == 0
    assert b.run_id not in ex.submitted  # never trained twice
    assert waits == [(b.run_id, f"pid {proc.pid} on {os.uname().nodename}")]
    adopted = [o for o in outcomes if o.elsewhere]
    assert [(o.run.run_id, o.status) for o in adopted] == [(b.run_id, status)]
    if status == "done":
        assert ex.submitted == [a.run_id, c.run_id]  # the dependent waited for b
        assert counts == {"done": 2, "failed": 0, "skipped": 0, "already_done": 1}
    else:
        assert ex.submitted == [a.run_id]
        assert counts == {"done": 1, "failed": 1, "skipped": 1, "already_done": 0}


def test_a_run_whose_claimant_dies_is_taken_over(chain, tmp_path):
    a, b, c = chain
    proc = other_driver(tmp_path / "out" / "runs", b.run_id, tmp_path / "x.sqlite", None, 600)
    threading.Timer(1.5, proc.kill).start()
    counts, ex, waits, _ = run_scheduler(chain, tmp_path)
    proc.wait()
    assert [w[0] for w in waits] == [b.run_id]
    assert ex.submitted == [a.run_id, b.run_id, c.run_id]
    assert counts == {"done": 3, "failed": 0, "skipped": 0, "already_done": 0}


def test_two_concurrent_cli_runs_train_each_run_once(tmp_path, corpus):
    params = {"tokens": 8 * 32 * 80, "batch_size": 8, "lr": 3e-3}
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", params=params)
    cmd = [sys.executable, "-m", "scalelab.cli", "run", str(spec), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = 0
    for out, _ in outs:
        done, already = map(
            int, re.search(r"(\d+) done, 0 failed, (\d+) already done", out).groups()
        )
        assert done + already == 3
        trained += done
    assert trained == 3, outs  # together they trained each run once
    runs_dir = tmp_path / "out" / "runs"
    table = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    assert len(table) == 3 and set(table["status"]) == {"done"}
    for rid in table["run_id"]:
        starts = (runs_dir / rid / ATTEMPTS).read_text().splitlines()
        assert len(starts) == 1, (rid, starts)
