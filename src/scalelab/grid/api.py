"""What the CLI calls: plan, run and read back an experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.grid.schedule import Dag, Outcome, Rerun, Scheduler, node_states, plan
from scalelab.grid.spec import ExperimentSpec, RunSpec, expand, load_spec
from scalelab.grid.store import ResultsStore


@dataclass(frozen=True)
class Node:
    """One run as --dry-run shows it: its status, why (blocked), and its deps' short ids."""

    run: RunSpec
    status: str  # done | running | failed | blocked | resumable | pending
    reason: str = ""
    deps: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class Experiment:
    spec: ExperimentSpec
    runs: list[RunSpec]
    store: ResultsStore

    @property
    def runs_dir(self) -> Path:
        return self.spec.runs_dir

    @cached_property
    def dag(self) -> Dag:
        """The runs in their execution order, with dependency edges."""
        return plan(self.runs)

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(runs table, curves table) for the runs this spec expands to, in grid order."""
        ids = [r.run_id for r in self.runs]
        table = with_settings(with_stages(self.store.table(ids), self.runs), self.runs)
        table = with_evaluations(with_variants(table, self.runs), self.runs)
        return table, self.store.curves(ids)

    def planned(self) -> pd.DataFrame:
        """Every run the spec plans, done or not: run_id, stage, then the flattened config
        (model, method, seed, task.*, params.*), as the runs table spells them."""
        from scalelab.config import flatten
        from scalelab.grid.store import CONFIG_ORDER

        rows = []
        for r in self.runs:
            config = dict(r.config)
            head = {k: config.pop(k) for k in CONFIG_ORDER if k in config}
            rows.append({"run_id": r.run_id, "stage": r.stage, **flatten({**head, **config})})
        return with_variants(with_settings(pd.DataFrame.from_records(rows), self.runs), self.runs)

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

    def nodes(self) -> list[Node]:
        """Every run in execution order with its DAG status (what --dry-run prints);
        reads the store and the run folders, writes nothing."""
        from scalelab.grid.claims import is_claimed

        ids = [r.run_id for r in self.runs]
        stored = self.store.statuses(ids)
        resumable = {i for i in ids if (self.runs_dir / i / "checkpoint").exists()}
        running = {i for i in ids if stored.get(i) != "done" and is_claimed(self.runs_dir, i)}
        states = node_states(self.dag, stored, resumable, running)
        return [
            Node(r, *states[r.run_id], tuple(d[:8] for d in self.dag.deps[r.run_id]))
            for r in self.dag.order
        ]


def open_experiment(
    spec_path: str | Path, output_dir: str | Path | None = None, executor: str | None = None
) -> Experiment:
    """Load and expand a spec (all validation happens here, before anything is written).

    `executor` overrides `runtime.executor`. The store's reads are read-only (`results`,
    `--dry-run`, `compare` and `report` never create or change it); only recording a run
    writes. Raises ScalelabError for an invalid spec, an unknown or unavailable executor, a
    dependency outside the grid, a cycle, or something at the store path that is not a
    results database (a directory, an empty or garbage file).
    """
    spec = load_spec(spec_path)
    if output_dir is not None:
        spec = spec.model_copy(update={"output_dir": str(output_dir)})
    if executor is not None:
        runtime = spec.runtime.model_copy(update={"executor": executor})
        spec = spec.model_copy(update={"runtime": runtime})
    return experiment_of(spec)


def experiment_of(spec: ExperimentSpec) -> Experiment:
    """`open_experiment` for a spec already loaded (e.g. one a command generated)."""
    from scalelab.grid.executors import check_executor

    check_executor(spec.runtime)
    store = ResultsStore(spec.store_path, readonly_reads=True)
    exp = Experiment(spec=spec, runs=expand(spec), store=store)
    exp.dag  # noqa: B018 - plan now: a cycle is a spec error, raised before anything runs
    store.check()  # a bad store file is one line now, not a traceback after work began
    return exp


def load_experiment_tables(
    spec_path: str | Path, output_dir: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves table) for the runs an experiment spec expands to."""
    return open_experiment(spec_path, output_dir).tables()


def with_stages(table: pd.DataFrame, runs: list[RunSpec]) -> pd.DataFrame:
    """`table` with each run's `stage` as this spec names it. The store keeps the stage of
    the spec that first ran a run; a run another spec reuses (same run id, e.g. the
    quickstart's `main` runs as a staged spec's `base`) is reported under the current
    spec's stage. A run id is in one stage of a spec (`plan` refuses duplicates)."""
    if table.empty or "run_id" not in table:
        return table
    by_id = {r.run_id: r.stage for r in runs}
    out = table.copy()
    stages = out["run_id"].map(by_id)
    if "stage" in out:
        out["stage"] = stages.fillna(out["stage"])
    else:
        out.insert(min(2, len(out.columns)), "stage", stages)
    return out


def with_settings(table: pd.DataFrame, runs: list[RunSpec]) -> pd.DataFrame:
    """`table` with the gaps of its `params.*` / `task.*` columns filled from each run's own
    validated settings: run ids leave some fields out (at their default, `ID_OMIT_DEFAULTS`,
    or always, `ID_OMIT`), so a stored config lacks them and `packing: false` read as NaN
    beside `packing: true`. A setting the run's method or task does not have stays empty;
    no column is added."""
    from scalelab.grid.dag import _MISSING, omitted_default

    if table.empty or "run_id" not in table:
        return table
    by_id = {r.run_id: r for r in runs}
    out = table.copy()
    for col in out.columns:
        if not col.startswith(("params.", "task.")) or not out[col].isna().any():
            continue
        values = []
        for run_id, value in zip(out["run_id"], out[col], strict=True):
            if (value is None or value != value) and run_id in by_id:  # a gap
                own = omitted_default(by_id[run_id], col)
                value = value if own is _MISSING or own is None else own
            values.append(value)
        out[col] = pd.Series(values, index=out.index, dtype=object)
    return out


def with_variants(table: pd.DataFrame, runs: list[RunSpec]) -> pd.DataFrame:
    """`table` with a `variant` column after `method` (each run's method-entry `label`,
    else its method's name) when some method entry of the spec has a label; unchanged
    otherwise. Analyses group by `variant` where it exists (`smallest`, the report)."""
    if table.empty or all(r.entry_label == r.method for r in runs):
        return table
    by_id = {r.run_id: r.entry_label for r in runs}
    out = table.copy()
    at = list(out.columns).index("method") + 1 if "method" in out else len(out.columns)
    out.insert(at, "variant", out["run_id"].map(by_id))
    return out


def with_evaluations(table: pd.DataFrame, runs: list[RunSpec]) -> pd.DataFrame:
    """`table` where each run whose model other runs evaluated gains their results: for
    every done `evaluate` run of its product (the final model, not a revision), each
    quality metric as `<metric>@<task>` (`val_loss@news2017`, `acc@piqa`,
    `task_loss@piqa-5shot`), and its standard error where reported (`acc_stderr@piqa`). So one row holds a model's losses on every corpus and task,
    as loss-to-loss fits need (`fit --law loss-to-loss --x val_loss@wikitext2 --y
    val_loss@news2017`). Unchanged when nothing is evaluated."""
    from scalelab.metrics import metrics_for

    evals = [r for r in runs if r.method == "evaluate" and r.model.kind == "run"
             and not r.model.revision]  # fmt: skip
    if table.empty or not evals:
        return table
    # Each quality metric, with its standard error over the test items where one is
    # reported (`acc_stderr`: a one-seed ladder's accuracies still have an interval).
    defs = {d.name for d in metrics_for(["evaluate"])}
    quality = [d.name for d in metrics_for(["evaluate"]) if d.is_quality]
    quality += [f"{m}_stderr" for m in quality if f"{m}_stderr" in defs]
    rows = table.set_index("run_id")
    found: dict[str, dict[str, float]] = {}
    for r in evals:
        if r.run_id not in rows.index or r.model.run_id not in rows.index:
            continue
        row = rows.loc[r.run_id]
        if row.get("status") != "done":
            continue
        shots = getattr(r.params, "shots", 0)
        where = evaluation_name(r.task.dataset) + (f"-{shots}shot" if shots else "")
        for m in quality:
            if m in row and pd.notna(row[m]):
                found.setdefault(r.model.run_id, {})[f"{m}@{where}"] = float(row[m])
    if not found:
        return table
    return table.join(pd.DataFrame.from_dict(found, orient="index"), on="run_id")


def evaluation_name(dataset: str) -> str:
    """A task's short name in evaluation columns: a registered name as is, a file or
    folder by its stem (`corpora/news.txt` -> `news`)."""
    return Path(dataset).stem if ("/" in dataset or "." in dataset) else dataset


def label(run: RunSpec) -> str:
    """`<id8> <model> <method> seed=<seed>`, the method as `<method>:<label>` when its
    entry has a label: a run named on its own."""
    method = run.method if run.entry_label == run.method else f"{run.method}:{run.variant}"
    return f"{run.run_id[:8]} {run.model.name} {method} seed={run.seed}"


def _dump(model: Any, fallback: Any) -> dict:
    """A validated config model as JSON values (the config's own dict for anything else)."""
    dump = getattr(model, "model_dump", None)
    return dump(mode="json") if dump is not None else (fallback or {})


def labels(runs: list[RunSpec], stage: bool = True) -> dict[str, str]:
    """run id -> `label(run)` plus the stage (when not `main`, and `stage`) and every task or
    params field whose value differs between runs of the same method
    (`task.max_train_tokens=100000 params.lr=0.001`), so the runs of one grid read apart in
    progress lines and `--dry-run` (per labelled method entry, where entries have labels).
    Fields a method does not have are never shown for it."""
    from collections import Counter

    from scalelab.config import flatten

    def fields(r: RunSpec) -> dict:
        # Full values, defaults included: a field a spec sets on some runs of an entry and
        # leaves at its default on others (parametrization: [standard, mup]) reads apart.
        dumped = {"task": _dump(r.task, r.config.get("task")),
                  "params": _dump(r.params, r.config.get("params"))}  # fmt: skip
        out = flatten(dumped)
        for k, refs in r.inputs.items():  # other runs' products by name, not by hash
            out[f"params.{k}"] = ",".join(ref.name for ref in refs)
        return out

    flat = {r.run_id: fields(r) for r in runs}
    # Per stage and method entry: the stage name already tells stages apart, so a field
    # that varies only in another stage (the few-shot stage's draw) is not shown here.
    seen: dict[tuple[str, str, str], set[str]] = {}
    for r in runs:
        for k, v in flat[r.run_id].items():
            seen.setdefault((r.stage, r.entry_label, k), set()).add(repr(v))
    out = {}
    for r in runs:
        own = flat[r.run_id]
        parts = [label(r), *([f"stage={r.stage}"] if stage and r.stage != "main" else [])]
        parts += [f"{k}={_one_line(v)}" for k, v in sorted(own.items())
                  if v is not None and len(seen[(r.stage, r.entry_label, k)]) > 1]  # fmt: skip
        out[r.run_id] = " ".join(parts)

    # Products of different upstream runs share a name (`@base:gpt-d2` of seeds 0 and 1):
    # labels that differ only in the run's own id also name the run they start from.
    def rest(r: RunSpec) -> str:
        return out[r.run_id].partition(" ")[2]

    counts = Counter(rest(r) for r in runs)
    for r in runs:
        if counts[rest(r)] > 1 and r.model.run_id:
            out[r.run_id] += f" from={r.model.run_id[:8]}"
    return out


def _one_line(value: Any) -> Any:
    """A value as a label shows it: line breaks and tabs in a string written as escapes
    (a prompt template's "\\n"), so one run stays one line of progress."""
    if not isinstance(value, str):
        return value
    return value.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def _outcome_line(o: Outcome, label: str) -> str:
    if o.status == "skipped" or o.elsewhere:
        return f"{o.status:>7}  {label}  {o.reason}"
    from scalelab.metrics import summary_line

    row = o.row or {}
    from scalelab.engine.monitor import events_file, events_note

    metrics = row.get("metrics") or {}
    events = events_note(metrics, events_file(o.run.run_id))
    detail = "  ".join(p for p in (summary_line(o.run.method, metrics), events) if p)
    if o.status == "failed":
        detail = f"FAILED: {row.get('error')}"
    return f"{o.status:>7}  {label}  {detail}  ({row.get('wall_s') or 0:.1f} s)"


def run_experiment(
    exp: Experiment,
    workers: int = 1,
    force: bool = False,
    show_progress: bool = True,
    retry_failed: bool = False,
) -> dict[str, int]:
    """Run every run not yet done or failed, dependencies first.

    `force` reruns every run from scratch; `retry_failed` reruns the failed runs (from
    their last good checkpoint) and what they blocked; without either a failed run stays
    failed.

    Returns counts: done, failed, skipped (a dependency failed; not stored, retried on the
    next run) and already_done (in the store before, or finished by another driver).
    The executor is `exp.spec.runtime.executor`, else serial for one worker and processes
    for more (serial whenever there is at most one run to execute).
    """
    from rich.markup import escape  # lines go through rich: "[x]" in an error is not markup

    from scalelab.grid.executors import executor_name, get_executor
    from scalelab.grid.progress import GridProgress

    scheduler = Scheduler(exp.dag, exp.store, exp.runs_dir, rerun=Rerun.of(force, retry_failed))
    todo = scheduler.todo
    if not todo:
        return scheduler.counts
    runtime = exp.spec.runtime
    name = executor_name(runtime, workers) if runtime.executor or len(todo) > 1 else "serial"
    executor_cls = get_executor(name, runtime)
    names = labels(exp.runs)
    with GridProgress(len(todo), names, enabled=show_progress) as progress:
        scheduler.on_outcome = lambda o: progress.on_done(
            o.run.run_id, escape(_outcome_line(o, names[o.run.run_id]))
        )
        scheduler.on_waiting = lambda run, who: progress.console.print(
            escape(f"waiting  {names[run.run_id]}  (claimed by {who})")
        )
        executor = executor_cls(runtime, exp.runs_dir, progress.on_event, workers)
        return scheduler.run(executor)
