"""The results store: any-key curves, products/stage/deps, and databases of the first schema."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from scalelab.grid.store import SCHEMA_VERSION, ResultsStore

# The schema of the first release, verbatim (git show <first>:src/scalelab/grid/store.py).
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    error TEXT,
    seed INTEGER,
    started_at TEXT,
    finished_at TEXT,
    wall_s REAL,
    git_commit TEXT,
    versions TEXT,
    host TEXT
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tokens INTEGER,
    train_loss REAL,
    val_loss REAL,
    PRIMARY KEY (run_id, step)
);
"""


def _row(run_id: str, **over) -> dict:
    row = {
        "run_id": run_id,
        "experiment": "exp",
        "status": "done",
        "config": {"model": "gpt-d1", "method": "full", "seed": 0, "params": {"lr": 1e-3}},
        "metrics": {"val_accuracy": 0.75},
        "seed": 0,
    }
    row.update(over)
    return row


def test_curve_rows_keep_any_numeric_key(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    curve = [
        {"step": 10, "tokens": 320, "train_loss": 1.5, "val_loss": 1.4, "val_accuracy": 0.5},
        {"step": 20, "tokens": 640, "train_loss": np.float32(1.25), "lr": 3e-4, "val_loss": None},
        {"step": 30, "val_accuracy": np.float64(0.75), "grad_norm": float("nan")},
    ]
    store.record(_row("a"), curve)
    store.record(_row("b"), [{"step": 5, "train_loss": 2.0}])
    df = store.curves()
    assert list(df.columns) == [
        "run_id",
        "step",
        "tokens",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "lr",
        "grad_norm",
    ]
    a = df[df["run_id"] == "a"].set_index("step")
    assert a["val_accuracy"].tolist()[::2] == [0.5, 0.75] and math.isnan(a.loc[20, "val_accuracy"])
    assert a.loc[20, "lr"] == 3e-4 and a.loc[20, "train_loss"] == 1.25
    assert math.isnan(a.loc[20, "val_loss"]) and math.isnan(a.loc[30, "tokens"])
    assert a["grad_norm"].isna().all()  # NaN is "not measured"
    assert df["val_accuracy"].dtype == float and df["step"].dtype == "int64"
    # run_ids selects; columns are the union over the selected rows only
    only_b = store.curves(["b"])
    assert only_b["run_id"].tolist() == ["b"] and list(only_b.columns)[2:] == [
        "tokens",
        "train_loss",
        "val_loss",
    ]
    # a rerun replaces the curve in the same transaction as the row
    store.record(_row("a"), [{"step": 1, "val_accuracy": 0.9}])
    assert store.curves(["a"])["step"].tolist() == [1]


def test_curves_of_an_empty_or_missing_store_have_the_fixed_columns(tmp_path):
    store = ResultsStore(tmp_path / "none.sqlite")
    assert list(store.curves().columns) == ["run_id", "step", "tokens", "train_loss", "val_loss"]
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates the database
    store.record(_row("a"))
    assert store.curves().empty and "val_loss" in store.curves().columns


@pytest.mark.parametrize(
    "point,message",
    [
        ({"step": 1, "val_accuracy": "high"}, "val_accuracy='high' is not a number"),
        ({"tokens": 5}, "without 'step'"),
        ({"step": 1, "run_id": 3}, "'run_id' is not a curve metric"),
    ],
)
def test_bad_curve_rows_fail_before_anything_is_written(tmp_path, point, message):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match=message):
        store.record(_row("a"), [{"step": 0, "train_loss": 1.0}, point])
    assert store.table().empty and store.curves().empty


def test_products_stage_and_deps_are_stored_and_shown(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.record(
        _row("teacher", stage="teacher", products={"model": "runs/teacher/model"}),
    )
    store.record(
        _row(
            "student",
            stage="student",
            deps=["teacher"],
            products={"model": "runs/student/model", "labels": "runs/student/labels.jsonl"},
        )
    )
    store.record(_row("plain"))  # neither: NULL, not "{}"
    table = store.table(["student", "teacher", "plain"])
    cols = list(table.columns)
    assert cols[:4] == ["run_id", "experiment", "stage", "status"]
    assert cols.index("error") < cols.index("products") < cols.index("deps") < cols.index("host")
    student, teacher, plain = (table.iloc[i] for i in range(3))
    assert student["stage"] == "student" and json.loads(student["deps"]) == ["teacher"]
    assert json.loads(student["products"]) == {
        "labels": "runs/student/labels.jsonl",
        "model": "runs/student/model",
    }
    assert pd.isna(teacher["deps"]) and pd.isna(plain["products"]) and pd.isna(plain["stage"])
    assert store.products() == {
        "teacher": {"model": "runs/teacher/model"},
        "student": {"model": "runs/student/model", "labels": "runs/student/labels.jsonl"},
    }
    assert store.products(["teacher"]) == {"teacher": {"model": "runs/teacher/model"}}
    with pytest.raises(ValueError, match="relative to the output dir"):
        store.record(_row("bad", products={"model": str(tmp_path / "abs")}))


def test_a_database_of_the_first_schema_migrates_and_reads(tmp_path):
    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as conn:  # written by the first release's SQL
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                "old1",
                "exp",
                "done",
                json.dumps({"model": "gpt-d1", "method": "pretrain", "seed": 0}),
                json.dumps({"val_loss": 2.5}),
                None,
                0,
                "t0",
                "t1",
                12.0,
                "abc",
                "{}",
                "host",
            ),
        )
        conn.executemany(
            "INSERT INTO curves VALUES (?, ?, ?, ?, ?)",
            [("old1", 10, 320, 3.0, None), ("old1", 20, 640, 2.7, 2.6)],
        )
        conn.commit()

    store = ResultsStore(path)
    table = store.table()
    assert table["val_loss"].tolist() == [2.5] and table["stage"].isna().all()
    assert table["products"].isna().all() and table["deps"].isna().all()
    assert table["runtime"].isna().all()  # not recorded before version 3
    curves = store.curves()
    assert curves["train_loss"].tolist() == [3.0, 2.7] and curves["tokens"].tolist() == [320, 640]
    assert math.isnan(curves["val_loss"][0]) and curves["val_loss"][1] == 2.6
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert "metrics" in {r[1] for r in conn.execute("PRAGMA table_info(curves)")}
        assert {"stage", "deps", "products", "runtime"} <= {
            r[1] for r in conn.execute("PRAGMA table_info(runs)")
        }

    # New rows with any-key curves go into the migrated database next to the old ones.
    store.record(_row("new", products={"model": "runs/new/model"}), [{"step": 1, "lr": 0.1}])
    assert store.table()["run_id"].tolist() == ["old1", "new"]
    assert store.curves(["new"])["lr"].tolist() == [0.1] and store.statuses()["old1"] == "done"


def test_two_processes_opening_an_old_database_migrate_it_once(tmp_path):
    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_SCHEMA)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            ResultsStore(path).statuses()
        except BaseException as err:  # reported by the assert below
            errors.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ResultsStore(path).curves().columns.tolist()[:5] == [
        "run_id",
        "step",
        "tokens",
        "train_loss",
        "val_loss",
    ]


def test_failed_status_is_still_checked(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        store.record(_row("a", status="resumable"))
    assert store.table().empty
