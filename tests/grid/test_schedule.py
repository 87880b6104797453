"""The DAG scheduler: topological order, deps first and once, skips, store, force, interrupts.

Runs are real RunSpecs of a tiny spec with hand-made deps; the executor is a small fake
that finishes runs instantly (the runner is not the point here); the store is real SQLite.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from helpers import tiny_lm_spec

from scalelab.errors import ScalelabError
from scalelab.grid.claims import is_claimed, try_claim
from scalelab.grid.executors.base import ATTEMPTS, Executor
from scalelab.grid.runner import base_row
from scalelab.grid.schedule import Rerun, Scheduler, node_states, plan
from scalelab.grid.spec import Runtime, expand, load_spec
from scalelab.grid.store import ResultsStore


class FakeExecutor(Executor):
    """Finishes every submitted run at the next wait(); fails the ids in `fail`. Checks at
    submit time that every dependency of the run is done in the store."""

    name = "fake"

    def __init__(self, runs_dir, store, slots=1, fail=(), interrupt_after=None):
        super().__init__(Runtime(), runs_dir, lambda rid, e: None)
        self.slots, self.store, self.fail = slots, store, set(fail)
        self.in_flight, self.submitted, self.batches = [], [], []
        self.interrupt_after, self.closed = interrupt_after, False

    def submit(self, run):
        stored = self.store.statuses()
        assert all(stored.get(d) == "done" for d in run.deps), "submitted before its deps"
        assert len(self.in_flight) < self.slots
        self.in_flight.append(run)
        self.submitted.append(run.run_id)

    def wait(self, timeout):
        if self.interrupt_after is not None and len(self.submitted) > self.interrupt_after:
            raise KeyboardInterrupt
        self.batches.append([r.run_id for r in self.in_flight])
        out = []
        for run in self.in_flight:
            failed = run.run_id in self.fail
            row = {**base_row(run), "status": "failed" if failed else "done", "wall_s": 0.0}
            row.update(
                metrics={} if failed else {"val_loss": 1.0}, error="boom" if failed else None
            )
            row["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
            out.append((run, row, []))
        self.in_flight = []
        return out

    def close(self):
        self.closed = True
        self.in_flight = []


@pytest.fixture
def runs(tmp_path, corpus):
    """Six runs r0..r5 (grid order) where r0 needs r4, r2 needs r0, r5 needs r1 and r3."""
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", seeds=[0, 1])
    r = expand(load_spec(spec))
    assert len(r) == 6
    ids = [x.run_id for x in r]
    deps = {0: (4,), 2: (0,), 5: (1, 3)}
    return [dataclasses.replace(x, deps=tuple(ids[j] for j in deps.get(i, ()))) for i, x in enumerate(r)]  # fmt: skip


def schedule(runs, tmp_path, **kw):
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    outcomes = []
    sched = Scheduler(plan(runs), store, tmp_path / "out" / "runs", on_outcome=outcomes.append,
                      rerun=kw.pop("rerun", Rerun.NONE), poll_s=0.05)  # fmt: skip
    ex = FakeExecutor(tmp_path / "out" / "runs", store, **kw)
    return sched.run(ex), ex, outcomes, store


def test_order_is_topological_with_grid_order_among_ready_runs(runs):
    dag = plan(runs)
    ids = [r.run_id for r in runs]
    assert [ids.index(r.run_id) for r in dag.order] == [1, 3, 4, 0, 2, 5]
    assert dag.downstream(ids[4]) == [ids[0], ids[2]]
    assert [r.run_id for r in plan(runs).order] == [r.run_id for r in dag.order]


def test_unknown_dependency_and_cycle_are_errors(runs):
    with pytest.raises(ScalelabError, match="not in the grid"):
        plan([dataclasses.replace(runs[1], deps=("feedbeefcafe0000",))])
    cyclic = [dataclasses.replace(runs[4], deps=(runs[2].run_id,)), *runs[:4], runs[5]]
    with pytest.raises(ScalelabError, match="cycle"):
        plan(cyclic)


def test_deps_run_first_once_and_slots_fill_in_order(runs, tmp_path):
    counts, ex, outcomes, store = schedule(runs, tmp_path, slots=2)
    ids = [r.run_id for r in runs]
    assert counts == {"done": 6, "failed": 0, "skipped": 0, "already_done": 0}
    assert sorted(ex.submitted) == sorted(ids)  # each once
    assert ex.batches[0] == [ids[1], ids[3]]  # the first two ready runs, grid order
    assert ex.closed and set(store.statuses().values()) == {"done"}
    assert not any(is_claimed(tmp_path / "out" / "runs", i) for i in ids)  # all released


def test_failed_dependency_skips_its_dependents_until_a_retry_reruns_them(runs, tmp_path):
    ids = [r.run_id for r in runs]
    counts, ex, outcomes, store = schedule(runs, tmp_path, fail={ids[4]})
    assert counts == {"done": 3, "failed": 1, "skipped": 2, "already_done": 0}
    skipped = {o.run.run_id: o.reason for o in outcomes if o.status == "skipped"}
    assert skipped == {i: f"dependency {ids[4][:8]} failed" for i in (ids[0], ids[2])}
    assert ids[0] not in ex.submitted and ids[2] not in ex.submitted
    assert store.statuses() == {**{i: "done" for i in (ids[1], ids[3], ids[5])}, ids[4]: "failed"}

    states = node_states(plan(runs), store.statuses(), resumable=set())
    assert states[ids[4]] == ("failed", "")
    assert states[ids[0]] == states[ids[2]] == ("blocked", f"dependency {ids[4][:8]} failed")

    counts, ex, outcomes, store = schedule(runs, tmp_path)  # a failed run stays failed ...
    assert counts == {"done": 0, "failed": 0, "skipped": 2, "already_done": 3}
    assert ex.submitted == [] and {o.run.run_id: o.reason for o in outcomes} == skipped
    assert store.statuses()[ids[4]] == "failed"

    counts, ex, _, store = schedule(runs, tmp_path, rerun=Rerun.FAILED)  # ... until retried
    assert counts == {"done": 3, "failed": 0, "skipped": 0, "already_done": 3}
    assert ex.submitted == [ids[4], ids[0], ids[2]]
    assert set(store.statuses().values()) == {"done"}


def test_a_retry_resumes_failed_runs_and_force_starts_them_from_scratch(runs, tmp_path):
    ids = [r.run_id for r in runs]
    schedule(runs, tmp_path, fail={ids[1]})
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    sched = Scheduler(plan(runs), store, tmp_path / "out" / "runs")
    assert [r.run_id for r in sched.kept_failed] == [ids[1]]
    assert ids[1] not in [r.run_id for r in sched.todo] and ids[5] in [r.run_id for r in sched.todo]
    folder = tmp_path / "out" / "runs" / ids[1]
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint.bad-20250101T000000Z").mkdir()
    counts, ex, _, _ = schedule(runs, tmp_path, rerun=Rerun.FAILED, fail={ids[1]})
    assert ex.submitted == [ids[1]] and counts["failed"] == 1 and counts["skipped"] == 1
    assert (folder / "checkpoint").exists()  # a retry resumes from its checkpoint
    counts, ex, _, _ = schedule(runs, tmp_path, rerun=Rerun.ALL)
    assert len(ex.submitted) == 6 and counts["done"] == 6
    assert not (folder / "checkpoint").exists()  # --force starts from scratch ...
    assert (folder / "checkpoint.bad-20250101T000000Z").exists()  # ... keeping the evidence


def test_node_states_for_dry_run(runs):
    ids = [r.run_id for r in runs]
    stored = {ids[1]: "done", ids[4]: "failed"}
    states = node_states(plan(runs), stored, resumable={ids[3], ids[0]}, running={ids[5]})
    assert states == {
        ids[1]: ("done", ""),
        ids[3]: ("resumable", ""),
        ids[4]: ("failed", ""),
        ids[0]: ("blocked", f"dependency {ids[4][:8]} failed"),
        ids[2]: ("blocked", f"dependency {ids[4][:8]} failed"),
        ids[5]: ("running", "claimed by another scalelab run"),
    }


def test_force_reruns_from_scratch_keeping_claim_and_attempt_log(runs, tmp_path):
    schedule(runs, tmp_path)
    folder = tmp_path / "out" / "runs" / runs[1].run_id
    (folder / "checkpoint").mkdir(parents=True)
    (folder / ATTEMPTS).write_text("{}\n")
    counts, ex, _, _ = schedule(runs, tmp_path, rerun=Rerun.ALL)
    assert counts["done"] == 6 and counts["already_done"] == 0 and len(ex.submitted) == 6
    assert not (folder / "checkpoint").exists() and (folder / ATTEMPTS).read_text() == "{}\n"


def test_interrupt_closes_the_executor_then_releases_claims(runs, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        schedule(runs, tmp_path, slots=2, interrupt_after=1)
    runs_dir = tmp_path / "out" / "runs"
    for rid in (runs[1].run_id, runs[3].run_id):  # were in flight: claimable again
        claim = try_claim(runs_dir, rid)
        assert claim is not None
        claim.release()
    assert ResultsStore(tmp_path / "out" / "results.sqlite").statuses() == {}
