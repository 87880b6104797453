"""A teacher -> two students DAG through the CLI: every executor gives the same rows, a failed
teacher skips its students, SIGKILL mid-teacher or mid-student resumes to the same results,
and --dry-run shows the order, each run's status, stage and dependencies."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import cli, write_spec

from scalelab.engine.monitor import MACHINE_KEYS
from scalelab.grid.api import labels
from scalelab.grid.executors.base import ATTEMPTS
from scalelab.grid.spec import ExperimentSpec, expand, load_spec
from scalelab.grid.store import ResultsStore
from scalelab.testing import make_corpus

pytestmark = pytest.mark.skipif(
    "stages" not in ExperimentSpec.model_fields, reason="multi-stage specs not in grid/spec.py"
)

VOLATILE = ["wall_s", "tokens_per_s", "examples_per_s", "peak_mem_mb", "started_at",
            "finished_at", "git_commit", "versions", "host"]  # fmt: skip
LINE = re.compile(r"^\s*(\d+)\s+(\w+)\s+(\S+)\s+([0-9a-f]{8}) .*deps=(\S+)(?:\s+\((.*)\))?$")


def dag_spec(path: Path, corpus: Path, out: Path, teacher_data: Path | None = None,
             teacher_steps: int = 100, student_steps: int = 60) -> Path:  # fmt: skip
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 2000}}  # fmt: skip
    teacher = {"models": "gpt-d2", "methods": "pretrain",
               "params": {"tokens": 8 * 32 * teacher_steps, "batch_size": 8}}  # fmt: skip
    if teacher_data is not None:
        teacher["tasks"] = {**task, "dataset": str(teacher_data)}
    students = {"models": "@teacher", "methods": "pretrain",
                "params": {"tokens": 8 * 32 * student_steps, "batch_size": 8,
                           "lr": [1.0e-3, 3.0e-3]}}  # fmt: skip
    return write_spec(path, name="dag", output_dir=str(out), tasks=task, seeds=[0],
                      stages={"teacher": teacher, "students": students},
                      runtime={"checkpoint_every_steps": 10})  # fmt: skip


def stored_rows(out: Path) -> pd.DataFrame:
    table = ResultsStore(out / "results.sqlite").table()
    table = table.drop(columns=[c for c in VOLATILE if c in table.columns])
    return table.sort_values("run_id").reset_index(drop=True)


def dry_run(spec: Path, capsys) -> tuple[list[tuple], str]:
    code, out, _ = cli("run", spec, "--dry-run", capsys=capsys)
    assert code == 0
    lines = out.strip().splitlines()
    return [LINE.match(line).groups() for line in lines[:-1]], lines[-1]


@pytest.fixture(scope="module")
def clean(tmp_path_factory, corpus):
    """The DAG run once, uninterrupted, on the serial executor: (spec, output folder)."""
    root = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALELAB_HOME", str(root / "home"))
        spec = dag_spec(root / "dag.yaml", corpus, root / "out")
        assert cli("run", spec, "--quiet", "--executor", "serial")[0] == 0
    return spec, root / "out"


def test_dry_run_shows_order_status_stage_and_deps(tmp_path, corpus, clean, capsys):
    spec = dag_spec(tmp_path / "dag.yaml", corpus, tmp_path / "out")
    teacher, *students = expand(load_spec(spec))
    nodes, summary = dry_run(spec, capsys)
    assert nodes == [
        ("1", "pending", "teacher", teacher.run_id[:8], "-", None),
        ("2", "pending", "students", students[0].run_id[:8], teacher.run_id[:8], None),
        ("3", "pending", "students", students[1].run_id[:8], teacher.run_id[:8], None),
    ]
    assert summary == "3 runs: 0 done, 3 to run"
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    nodes, summary = dry_run(clean[0], capsys)
    assert [n[1] for n in nodes] == ["done"] * 3 and summary == "3 runs: 3 done, 0 to run"


@pytest.mark.parametrize(
    "executor", ["processes", pytest.param("ray", marks=pytest.mark.slow)]
)  # Ray's identical rows are proved in tests/grid/test_executors.py
def test_every_executor_gives_the_same_rows(tmp_path, corpus, clean, executor, request):
    if executor == "ray":
        request.getfixturevalue("ray_cluster")
    spec = dag_spec(tmp_path / "dag.yaml", corpus, tmp_path / "out")
    args = ["--workers", "2"] if executor == "processes" else []
    assert cli("run", spec, "--quiet", "--executor", executor, *args)[0] == 0
    expected = stored_rows(clean[1])
    assert len(expected) == 3 and set(expected["status"]) == {"done"}
    pd.testing.assert_frame_equal(stored_rows(tmp_path / "out"), expected, check_exact=True)


def test_failed_teacher_skips_students_and_a_rerun_retries(tmp_path, corpus, capsys):
    data = tmp_path / "teacher_data"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"{split}.txt").write_text(
            "x" * 31 + "\n"
        )  # seq_len bytes, one token short of a window
    spec = dag_spec(tmp_path / "dag.yaml", corpus, tmp_path / "out", teacher_data=data,
                    teacher_steps=30, student_steps=30)  # fmt: skip
    teacher, *students = runs = expand(load_spec(spec))
    names = labels(runs)  # `<id8> <model> <method> seed=.. stage=..` + the fields that vary
    code, out, err = cli("run", spec, "--quiet", capsys=capsys)
    reason = f"dependency {teacher.run_id[:8]} failed"
    assert code == 1
    assert "0 done, 1 failed, 0 already done, 2 skipped (failed dependency)" in out
    progress = " ".join(err.split())  # the progress lines (stderr), unwrapped
    for s in students:
        assert names[s.run_id].startswith(f"{s.run_id[:8]} @teacher:gpt-d2 pretrain seed=0")
        line = f"skipped {' '.join(names[s.run_id].split())} {reason}"
        assert line in progress, err
    assert ResultsStore(tmp_path / "out" / "results.sqlite").statuses() == {
        teacher.run_id: "failed"
    }  # skipped runs are not stored
    nodes, summary = dry_run(spec, capsys)
    assert [n[1] for n in nodes] == ["failed", "blocked", "blocked"]
    assert "error.txt" in nodes[0][5] and [n[5] for n in nodes[1:]] == [reason] * 2
    assert summary == ("3 runs: 0 done, 0 to run (1 failed, 2 blocked by a failed dependency; "
                       "--retry-failed reruns them)")  # fmt: skip

    code, out, _ = cli("run", spec, "--quiet", capsys=capsys)  # a failed run stays failed
    assert code == 1 and "1 failed before" in out
    make_corpus(data)  # the teacher's data is fixed: new content, so a new teacher run
    fixed = expand(load_spec(spec))
    assert fixed[0].run_id != teacher.run_id and all(
        r.deps == (fixed[0].run_id,) for r in fixed[1:]
    )
    code, out, _ = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0 and "3 done, 0 failed, 0 already done" in out
    statuses = ResultsStore(tmp_path / "out" / "results.sqlite").statuses()
    assert statuses == {teacher.run_id: "failed", **{r.run_id: "done" for r in fixed}}


def kill_when(spec: Path, ready, *args: str) -> None:
    """Start `scalelab run`, SIGKILL it once `ready()` holds; wait for its workers to go."""
    proc = subprocess.Popen([sys.executable, "-m", "scalelab.cli", "run", str(spec), "--quiet",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, "the DAG finished before it could be killed"
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, "workers outlived their driver"


def attempts(out: Path, run_id: str) -> int:
    path = out / "runs" / run_id / ATTEMPTS
    return len(path.read_text().splitlines()) if path.exists() else 0


def resume_and_compare(spec: Path, out: Path, clean_out: Path) -> None:
    assert cli("run", spec, "--quiet")[0] == 0
    pd.testing.assert_frame_equal(stored_rows(out), stored_rows(clean_out), rtol=1e-6)
    a = ResultsStore(out / "results.sqlite").curves()
    b = ResultsStore(clean_out / "results.sqlite").curves()
    assert list(a.columns) == list(b.columns) and "grad_norm" in a
    same = [c for c in a.columns if not c.startswith(MACHINE_KEYS)]  # timings, memory vary
    pd.testing.assert_frame_equal(a[same], b[same], rtol=1e-6)


def test_sigkill_mid_teacher_then_resume(tmp_path, corpus, clean, capsys):
    spec = dag_spec(tmp_path / "dag.yaml", corpus, tmp_path / "out")
    teacher, *students = expand(load_spec(spec))
    ckpt = tmp_path / "out" / "runs" / teacher.run_id / "checkpoint" / "state.json"
    kill_when(spec, ckpt.exists)
    assert 0 < json.loads(ckpt.read_text())["step"] < 100
    assert ResultsStore(tmp_path / "out" / "results.sqlite").statuses() == {}
    nodes, _ = dry_run(spec, capsys)
    assert [n[1] for n in nodes] == ["resumable", "pending", "pending"]
    resume_and_compare(spec, tmp_path / "out", clean[1])
    assert attempts(tmp_path / "out", teacher.run_id) == 2  # killed, then resumed
    assert [attempts(tmp_path / "out", s.run_id) for s in students] == [1, 1]


def test_sigkill_mid_student_then_resume(tmp_path, corpus, clean, capsys):
    spec = dag_spec(tmp_path / "dag.yaml", corpus, tmp_path / "out")
    teacher, *students = expand(load_spec(spec))
    runs = tmp_path / "out" / "runs"

    def a_student_checkpointed() -> bool:
        return any((runs / s.run_id / "checkpoint" / "state.json").exists() for s in students)

    kill_when(spec, a_student_checkpointed, "--executor", "processes", "--workers", "2")
    assert ResultsStore(tmp_path / "out" / "results.sqlite").statuses() == {teacher.run_id: "done"}
    nodes, _ = dry_run(spec, capsys)
    assert nodes[0][1] == "done" and "resumable" in {n[1] for n in nodes[1:]}
    resume_and_compare(spec, tmp_path / "out", clean[1])
    assert attempts(tmp_path / "out", teacher.run_id) == 1  # the teacher is not retrained
