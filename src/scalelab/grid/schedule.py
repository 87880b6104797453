"""The DAG of runs and the scheduler that executes it.

Runs form a DAG through `RunSpec.deps` (ids of the runs whose products they read). Rules:
- order: a deterministic topological order, grid order among the runs ready together;
- a run is submitted once every dependency is done (in this session, by another driver,
  or already in the store); each dependency runs once, shared by all its dependents;
- a failed dependency skips its transitive dependents, with the reason; skipped runs are
  never stored;
- a run stored as failed stays failed (its dependents skipped) until the session is told
  to rerun it: `Rerun.FAILED` (`--retry-failed`) retries the failed runs, resuming from
  their checkpoints, then their dependents; `Rerun.ALL` (`--force`) reruns every run from
  scratch;
- a run is executed only under its claim (`grid/claims.py`); one claimed by another live
  driver is waited for and its stored row adopted, never trained twice;
- the driver writes each row to the store before releasing the run's claim, so whoever
  takes the claim next sees the row.

`plan` and `node_states` are pure; `Scheduler` executes a Dag with an executor.
"""

from __future__ import annotations

import heapq
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from scalelab.errors import ScalelabError
from scalelab.grid.claims import CLAIM, Claim, holder, try_claim
from scalelab.grid.executors.base import ATTEMPTS, Executor
from scalelab.grid.spec import RunSpec


class Rerun(str, Enum):
    """Which runs already in the store a session executes again."""

    NONE = "none"  # done and failed runs stay as stored
    FAILED = "failed"  # --retry-failed: failed runs again, resuming their checkpoints
    ALL = "all"  # --force: every run, from scratch

    @classmethod
    def of(cls, force: bool = False, retry_failed: bool = False) -> Rerun:
        """The policy of the CLI flags: --force wins over --retry-failed."""
        return cls.ALL if force else cls.FAILED if retry_failed else cls.NONE


@dataclass(frozen=True)
class Dag:
    """Runs in topological order with their dependency edges (ids)."""

    order: tuple[RunSpec, ...]
    deps: dict[str, tuple[str, ...]]
    dependents: dict[str, tuple[str, ...]]
    index: dict[str, int] = field(default_factory=dict)  # run_id -> position in `order`

    def __len__(self) -> int:
        return len(self.order)

    def downstream(self, run_id: str) -> list[str]:
        """Transitive dependents of a run, in topological order."""
        seen: set[str] = set()
        stack = list(self.dependents[run_id])
        while stack:
            rid = stack.pop()
            if rid not in seen:
                seen.add(rid)
                stack.extend(self.dependents[rid])
        return sorted(seen, key=self.index.__getitem__)


def plan(runs: Sequence[RunSpec]) -> Dag:
    """The DAG of `runs` (grid order). Raises ScalelabError for a dependency outside the
    grid or a cycle."""
    pos = {r.run_id: i for i, r in enumerate(runs)}
    deps = {r.run_id: tuple(dict.fromkeys(r.deps)) for r in runs}
    dependents: dict[str, list[str]] = {r.run_id: [] for r in runs}
    for r in runs:
        for d in deps[r.run_id]:
            if d not in pos:
                raise ScalelabError(
                    f"run {r.run_id[:8]} (stage {r.stage}) depends on run {d[:8]}, "
                    "which is not in the grid"
                )
            dependents[d].append(r.run_id)
    missing = {rid: len(ds) for rid, ds in deps.items()}
    heap = [pos[rid] for rid, n in missing.items() if n == 0]
    heapq.heapify(heap)
    order: list[RunSpec] = []
    while heap:
        run = runs[heapq.heappop(heap)]
        order.append(run)
        for d in dependents[run.run_id]:
            missing[d] -= 1
            if missing[d] == 0:
                heapq.heappush(heap, pos[d])
    if len(order) < len(runs):
        stuck = sorted((runs[pos[rid]] for rid, n in missing.items() if n), key=lambda r: r.stage)
        names = ", ".join(f"{r.run_id[:8]} ({r.stage})" for r in stuck[:6])
        raise ScalelabError(f"runs depend on each other in a cycle: {names}")
    index = {r.run_id: i for i, r in enumerate(order)}
    by_order = {rid: tuple(sorted(ds, key=index.__getitem__)) for rid, ds in dependents.items()}
    return Dag(tuple(order), deps, by_order, index)


def node_states(
    dag: Dag, stored: dict[str, str], resumable: set[str], running: set[str] = frozenset()
) -> dict[str, tuple[str, str]]:
    """run_id -> (status, reason), for --dry-run. status: done | running (claimed by a live
    driver) | failed | blocked (a dependency failed; the reason names the failed run) |
    resumable (a checkpoint on disk) | pending."""
    out: dict[str, tuple[str, str]] = {}
    root: dict[str, str] = {}  # failed or blocked run -> the failed run that blocks it
    for run in dag.order:
        rid = run.run_id
        bad = [d for d in dag.deps[rid] if d in root]
        if stored.get(rid) == "done":
            out[rid] = ("done", "")
        elif rid in running:
            out[rid] = ("running", "claimed by another scalelab run")
        elif stored.get(rid) == "failed":
            out[rid], root[rid] = ("failed", ""), rid
        elif bad:
            root[rid] = root[bad[0]]
            out[rid] = ("blocked", f"dependency {root[rid][:8]} failed")
        elif rid in resumable:
            out[rid] = ("resumable", "")
        else:
            out[rid] = ("pending", "")
    return out


@dataclass
class Outcome:
    """How one run of the DAG ended in this session."""

    run: RunSpec
    status: str  # done | failed | skipped
    row: dict | None = None  # the stored row (None when skipped)
    reason: str = ""  # skipped: "dependency 3f2a1b4c failed"; elsewhere: who ran it
    elsewhere: bool = False  # another driver executed it while this one waited


class Scheduler:
    """Executes a Dag: claims, submits, records, skips; see the module docstring.

    `store` needs `table(ids)` (status, started_at, finished_at per run) and
    `record(row, curve)`: the scheduler is the only writer. Callbacks run in the driver.
    `rerun`: which stored runs to execute again; `kept_failed` lists the stored failed runs
    this session leaves failed.
    """

    def __init__(
        self,
        dag: Dag,
        store,
        runs_dir: Path,
        *,
        rerun: Rerun = Rerun.NONE,
        on_outcome: Callable[[Outcome], None] = lambda o: None,
        on_waiting: Callable[[RunSpec, str], None] = lambda run, who: None,
        poll_s: float = 1.0,
    ) -> None:
        self.dag, self.store, self.runs_dir = dag, store, Path(runs_dir)
        self.rerun, self.poll_s = Rerun(rerun), poll_s
        self.force = self.rerun is Rerun.ALL
        self.on_outcome, self.on_waiting = on_outcome, on_waiting
        self.runs = {r.run_id: r for r in dag.order}
        self.counts = {"done": 0, "failed": 0, "skipped": 0, "already_done": 0}
        self.snapshot = self._stamps(list(self.runs))  # rows as they were when we started
        self.state: dict[str, str] = {}
        self.ready: set[str] = set()
        self.waiting: dict[str, float] = {}  # run claimed elsewhere -> last claim attempt
        self.claims: dict[str, Claim] = {}  # runs executing here, under their claims
        self.executor: Executor | None = None
        for rid in self.runs:
            self.state[rid] = self._initial_state(self.snapshot.get(rid, ("",))[0])
            self.counts["already_done"] += self.state[rid] == "already"
        self.kept_failed = [r for r in dag.order if self.state[r.run_id] == "kept"]
        for rid in self.runs:
            self._maybe_ready(rid)

    def _initial_state(self, stored: str) -> str:
        """A run's state before this session acts: "already" (stored done, not rerun),
        "kept" (stored failed, not retried) or "todo"."""
        if stored == "done" and self.rerun is not Rerun.ALL:
            return "already"
        if stored == "failed" and self.rerun is Rerun.NONE:
            return "kept"
        return "todo"

    @property
    def todo(self) -> list[RunSpec]:
        """Runs this session has to execute (or wait for, or skip), in topological order."""
        return [r for r in self.dag.order if self.state[r.run_id] not in ("already", "kept")]

    def run(self, executor: Executor) -> dict[str, int]:
        """Run the DAG to the end with `executor`, which it closes (killing what is left)
        before releasing the claims of unfinished runs, also on KeyboardInterrupt.
        Returns counts: done, failed, skipped (a dependency failed), already_done."""
        self.executor = executor
        for run in self.kept_failed:  # their dependents cannot run: say so now
            self._skip_downstream(run.run_id)
        try:
            while self.ready or self.claims:
                while self._fill():
                    pass
                if self.claims:
                    for run, row, curve in executor.wait(self.poll_s):
                        self._finish(run, row, curve)
                elif self.ready:
                    time.sleep(self.poll_s)  # every ready run is claimed by another driver
        finally:
            executor.close()  # kill first, then let others claim
            for claim in self.claims.values():
                claim.release()
        return self.counts

    def _stamps(self, ids: list[str]) -> dict[str, tuple]:
        table = self.store.table(ids)
        if table.empty:
            return {}
        return {
            r.run_id: (r.status, r.started_at, r.finished_at)
            for r in table[["run_id", "status", "started_at", "finished_at"]].itertuples()
        }

    def _maybe_ready(self, rid: str) -> None:
        deps_ok = all(self.state[d] in ("done", "already") for d in self.dag.deps[rid])
        if self.state[rid] == "todo" and deps_ok:
            self.state[rid] = "ready"
            self.ready.add(rid)

    def _fill(self) -> bool:
        """Claim and submit ready runs in order while slots are free; poll runs claimed
        elsewhere. Returns True when a run was settled (its dependents may now be ready)."""
        now = time.monotonic()
        for rid in sorted(self.ready, key=self.dag.index.__getitem__):
            free = len(self.claims) < self.executor.slots
            last = self.waiting.get(rid)
            if (last is None and not free) or (last is not None and now - last < self.poll_s):
                continue
            claim = try_claim(self.runs_dir, rid)
            if claim is None:
                if last is None:
                    self.on_waiting(self.runs[rid], holder(self.runs_dir, rid))
                self.waiting[rid] = now
                continue
            stamp = self._stamps([rid]).get(rid)
            if stamp is not None and stamp != self.snapshot.get(rid):
                claim.release()  # another driver finished it while we waited: adopt its row
                self._leave_ready(rid)
                self._settle(rid, stamp[0], elsewhere=True)
                return True
            if not free:
                claim.release()
                self.waiting[rid] = now
                continue
            self._leave_ready(rid)
            if self.force:
                self._clean(rid)
            self.claims[rid] = claim
            self.state[rid] = "running"
            self.executor.submit(self.runs[rid])
        return False

    def _leave_ready(self, rid: str) -> None:
        self.ready.discard(rid)
        self.waiting.pop(rid, None)

    def _finish(self, run: RunSpec, row: dict, curve: list) -> None:
        self.store.record(row, curve)  # before the claim goes: the next holder sees the row
        self.claims.pop(run.run_id).release()
        self._settle(run.run_id, row["status"], row=row)

    def _settle(self, rid: str, status: str, row: dict | None = None, elsewhere=False) -> None:
        run = self.runs[rid]
        self.state[rid] = status
        key = "already_done" if elsewhere and status == "done" else status
        self.counts[key] += 1
        reason = "by another scalelab run" if elsewhere else ""
        self.on_outcome(Outcome(run, status, row, reason, elsewhere))
        if status == "done":
            for d in self.dag.dependents[rid]:
                self._maybe_ready(d)
            return
        self._skip_downstream(rid)

    def _skip_downstream(self, rid: str) -> None:
        """Skip the transitive dependents of failed run `rid` that have not run yet."""
        for d in self.dag.downstream(rid):
            if self.state[d] in ("todo", "ready"):
                self._leave_ready(d)
                self.state[d] = "skipped"
                self.counts["skipped"] += 1
                self.on_outcome(
                    Outcome(self.runs[d], "skipped", None, f"dependency {rid[:8]} failed")
                )

    def _clean(self, rid: str) -> None:
        """--force: start from scratch (not from an old checkpoint), keeping the claim, the
        attempt log and checkpoints set aside as bad (`checkpoint.bad-*`: evidence)."""
        folder = self.runs_dir / rid
        for path in folder.iterdir() if folder.exists() else ():
            if path.name in (CLAIM, ATTEMPTS) or ".bad-" in path.name:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
