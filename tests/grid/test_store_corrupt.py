"""Something that is not a results database at `results.sqlite`: one line, exit 2, untouched;
read-only commands never create or change the store; a fresh store is created whole."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from helpers import cli, tiny_lm_spec

from scalelab.grid.api import open_experiment
from scalelab.grid.store import ResultsStore

GARBAGE = b"name,val_loss\nnot,a database\n" * 20


def _make_bad_store(store: Path, kind: str) -> None:
    store.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        store.write_bytes(GARBAGE)
    elif kind == "directory":
        store.mkdir()
        (store / "keep.txt").write_text("mine\n")
    elif kind == "empty":
        store.write_bytes(b"")
    elif kind == "foreign":  # another program's SQLite database
        with closing(sqlite3.connect(store)) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
            conn.execute("INSERT INTO notes (text) VALUES ('hello')")
            conn.commit()


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` (itself included) -> (kind, bytes, mtime_ns)."""
    out = {}
    for p in [folder, *sorted(folder.rglob("*"))]:
        st = p.stat()
        data = None if p.is_dir() else p.read_bytes()
        out[str(p.relative_to(folder))] = (p.is_dir(), data, st.st_mtime_ns)
    return out


EXPECTED = {
    "garbage": "is not a scalelab results database (not SQLite)",
    "directory": "is a directory, not a scalelab results database",
    "empty": "is an empty file (0 bytes), not a scalelab results database",
    "foreign": "is a SQLite database but not a scalelab results store (no runs table)",
}
COMMANDS = {
    "run": ["run", "--quiet"],
    "dry-run": ["run", "--dry-run"],
    "results": ["results"],
    "compare": ["compare", "--by", "model"],
    "report": ["report"],
}


# Every kind of bad store on the three commands the issue measured; compare and report
# (which import scipy/matplotlib first, slow) on one kind.
CASES = [(k, c) for k in sorted(EXPECTED) for c in ("run", "dry-run", "results")]
CASES += [("garbage", "compare"), ("directory", "report")]


@pytest.mark.parametrize(("kind", "command"), CASES)
def test_a_bad_store_is_one_line_exit_2_and_left_untouched(tmp_path, corpus, capsys, kind, command):
    out = tmp_path / "out"
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, out, models=["gpt-d1"])
    store = out / "results.sqlite"
    _make_bad_store(store, kind)
    before = _snapshot(out)

    code, stdout, err = cli(*COMMANDS[command][:1], spec, *COMMANDS[command][1:], capsys=capsys)

    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert str(store) in err and EXPECTED[kind] in err
    assert "move it away or pass --output-dir" in err
    assert "Traceback" not in err and stdout == ""
    assert _snapshot(out) == before  # same files, bytes and mtimes: nothing created either


@pytest.mark.parametrize("command", ["dry-run", "results", "compare"])
def test_read_commands_never_create_a_store(tmp_path, corpus, capsys, command):
    out = tmp_path / "out"
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, out, models=["gpt-d1"])
    code, stdout, err = cli(*COMMANDS[command][:1], spec, *COMMANDS[command][1:], capsys=capsys)
    if command == "dry-run":
        assert code == 0 and "1 run: 0 done, 1 to run" in stdout
    elif command == "results":
        assert code == 0 and "no results yet" in err
    else:
        assert code == 2 and "no results yet" in err
    assert not out.exists()


# The first release's schema (tests/grid/test_store.py has it verbatim), trimmed to what is
# needed here: a store a read-only command must read without migrating it.
OLD_RUNS = """CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL,
    status TEXT NOT NULL, config TEXT NOT NULL, metrics TEXT NOT NULL, error TEXT,
    seed INTEGER, started_at TEXT, finished_at TEXT, wall_s REAL, git_commit TEXT,
    versions TEXT, host TEXT);
CREATE TABLE curves (run_id TEXT NOT NULL, step INTEGER NOT NULL, tokens INTEGER,
    train_loss REAL, val_loss REAL, PRIMARY KEY (run_id, step));"""


def test_results_reads_an_old_store_without_migrating_it(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, out, models=["gpt-d1"])
    run = open_experiment(spec).runs[0]
    out.mkdir()
    with closing(sqlite3.connect(out / "results.sqlite")) as conn:
        conn.executescript(OLD_RUNS)
        conn.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run.run_id, run.experiment, "done", json.dumps(run.config),
             json.dumps({"val_loss": 2.5}), None, 0, "t0", "t1", 1.0, "abc", "{}", "h"),
        )  # fmt: skip
        conn.execute("INSERT INTO curves VALUES (?, 10, 320, 3.0, 2.9)", (run.run_id,))
        conn.commit()
    store = out / "results.sqlite"
    before = (store.read_bytes(), store.stat().st_mtime_ns)

    code, stdout, err = cli("results", spec, "--format", "json", capsys=capsys)
    assert code == 0, err
    assert [(r["run_id"], r["val_loss"]) for r in json.loads(stdout)] == [(run.run_id, 2.5)]
    code, stdout, _ = cli("run", spec, "--dry-run", capsys=capsys)
    assert code == 0 and "1 run: 1 done, 0 to run" in stdout
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before
    with closing(sqlite3.connect(store)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0  # not migrated


def _record_one(path: str, run_id: str, barrier) -> None:
    barrier.wait()  # every process finds no store, then all create it at once
    ResultsStore(path).record(
        {"run_id": run_id, "experiment": "e", "status": "done", "config": {}, "metrics": {}},
        [{"step": 1, "val_loss": 1.0}],
    )


def test_processes_creating_a_fresh_store_at_once_all_record(tmp_path):
    path = str(tmp_path / "out" / "results.sqlite")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_record_one, args=(path, f"r{i}", barrier)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = ResultsStore(path)
    assert sorted(store.statuses()) == ["r0", "r1", "r2", "r3"]
    assert sorted(store.curves()["run_id"]) == ["r0", "r1", "r2", "r3"]
    leftovers = [p.name for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]
    assert leftovers == []
