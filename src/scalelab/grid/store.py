"""The results store: SQLite in WAL mode, one row per run.

A run's row and its learning curve are written in one transaction when the run ends
(done or failed), so a crash mid-run leaves no row at all rather than half of one; the
run's checkpoint on disk is what lets it resume. Only the parent process writes.

A curve row is `step` plus any numeric metrics: `tokens`, `train_loss` and `val_loss` have
columns of their own (what old databases and the report read); every other key is kept in the
row's JSON `metrics` column. A run row may list its products (name -> path relative to the
output dir), its stage and the runs it depends on. Databases written before those columns
existed gain them on first connect (schema version in `PRAGMA user_version`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path, PurePath
from typing import Any

import pandas as pd

SCHEMA = """
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
    host TEXT,
    stage TEXT,
    deps TEXT,
    products TEXT
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tokens INTEGER,
    train_loss REAL,
    val_loss REAL,
    metrics TEXT,
    PRIMARY KEY (run_id, step)
);
"""
SCHEMA_VERSION = 2
# Columns added since version 1 (the first release): (table, column, SQL type).
ADDED_COLUMNS = [
    ("runs", "stage", "TEXT"),
    ("runs", "deps", "TEXT"),
    ("runs", "products", "TEXT"),
    ("curves", "metrics", "TEXT"),
]

RUN_COLUMNS = [
    "run_id",
    "experiment",
    "status",
    "config",
    "metrics",
    "error",
    "seed",
    "started_at",
    "finished_at",
    "wall_s",
    "git_commit",
    "versions",
    "host",
    "stage",
    "deps",
    "products",
]
# Curve keys with a column of their own, in this order after run_id and step.
CURVE_COLUMNS = ["tokens", "train_loss", "val_loss"]

# Config columns of the results table come in this order, after run_id/experiment/status.
CONFIG_ORDER = ["model", "method", "seed", "task", "params"]


class ResultsStore:
    """A results database at `path` (created on first write, never on read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _migrate(conn)
        return conn

    def statuses(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        """run_id -> "done" | "failed" for the stored runs (of `run_ids` if given)."""
        if not self.path.exists():
            return {}
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT run_id, status FROM runs").fetchall()
        wanted = None if run_ids is None else set(run_ids)
        return {r: s for r, s in rows if wanted is None or r in wanted}

    def record(self, row: dict[str, Any], curve: list[dict[str, Any]] = ()) -> None:
        """Insert or replace one run and its curve, atomically (one transaction).

        row: the RUN_COLUMNS keys (config/metrics/versions dicts, `deps` a list of run ids,
        `products` a dict name -> path relative to the output dir); missing keys are NULL.
        curve: dicts with an int `step` and numeric values (None/NaN = not measured).
        Raises ValueError for a non-numeric curve value or an absolute product path, before
        anything is written.
        """
        values = [row.get(c) for c in RUN_COLUMNS]
        for i, c in enumerate(RUN_COLUMNS):
            if c in ("config", "metrics", "versions"):
                values[i] = json.dumps(values[i] or {}, sort_keys=True, default=str)
            elif c == "deps":
                values[i] = json.dumps([str(d) for d in values[i]]) if values[i] else None
            elif c == "products":
                values[i] = json.dumps(_products(values[i]), sort_keys=True) if values[i] else None
        points = [_curve_point(row["run_id"], c) for c in curve]
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"INSERT OR REPLACE INTO runs ({','.join(RUN_COLUMNS)}) "
                    f"VALUES ({','.join('?' * len(RUN_COLUMNS))})",
                    values,
                )
                conn.execute("DELETE FROM curves WHERE run_id = ?", (row["run_id"],))
                conn.executemany(
                    "INSERT INTO curves (run_id, step, tokens, train_loss, val_loss, metrics) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    points,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _rows(self, run_ids: Iterable[str] | None) -> list[sqlite3.Row]:
        if not self.path.exists():
            return []
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM runs ORDER BY rowid").fetchall()
        if run_ids is None:
            return rows
        order = {r: i for i, r in enumerate(run_ids)}
        return sorted((r for r in rows if r["run_id"] in order), key=lambda r: order[r["run_id"]])

    def table(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per run: run_id, experiment, stage, status, flattened config (`task.dataset`,
        `params.lr`, ...), metrics, then provenance (error, products and deps as JSON text,
        times, git commit, versions, host). `run_ids` selects and orders the rows."""
        records = []
        for r in self._rows(None if run_ids is None else list(run_ids)):
            rec = {
                "run_id": r["run_id"],
                "experiment": r["experiment"],
                "stage": r["stage"],
                "status": r["status"],
            }
            config = json.loads(r["config"])
            head = {k: config.pop(k) for k in CONFIG_ORDER if k in config}
            rec.update(_flatten({**head, **config}))
            rec.update(json.loads(r["metrics"]))
            rec.update(
                {
                    "error": r["error"],
                    "products": r["products"],
                    "deps": r["deps"],
                    "started_at": r["started_at"],
                    "finished_at": r["finished_at"],
                    "git_commit": r["git_commit"],
                    "versions": r["versions"],
                    "host": r["host"],
                }
            )
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def products(self, run_ids: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
        """run_id -> {product name: path relative to the output dir} for stored runs that
        list products (of `run_ids` if given)."""
        return {
            r["run_id"]: json.loads(r["products"])
            for r in self._rows(None if run_ids is None else list(run_ids))
            if r["products"]
        }

    def curves(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Learning curves, one row per (run, step), sorted by run_id then step.

        Columns: run_id, step, tokens, train_loss, val_loss (always, NaN where not
        measured), then every other key any selected row carries, in order of first
        appearance. Values are numeric (float, or int where a column has no gaps).
        """
        cols = ["run_id", "step", *CURVE_COLUMNS]
        if not self.path.exists():
            return pd.DataFrame(columns=cols)
        wanted = None if run_ids is None else set(run_ids)
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT run_id, step, tokens, train_loss, val_loss, metrics FROM curves "
                "ORDER BY run_id, step"
            ).fetchall()
        records = []
        extra: dict[str, None] = {}  # an ordered set: first appearance wins
        for run_id, step, tokens, train_loss, val_loss, metrics in rows:
            if wanted is not None and run_id not in wanted:
                continue
            more = json.loads(metrics) if metrics else {}
            extra.update(dict.fromkeys(more))
            records.append(
                {
                    "run_id": run_id,
                    "step": step,
                    "tokens": tokens,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    **more,
                }
            )
        df = pd.DataFrame.from_records(records, columns=[*cols, *extra])
        for c in df.columns[2:]:  # None (not measured) -> NaN, so every metric is numeric
            df[c] = pd.to_numeric(df[c])
        return df


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns an older database lacks. IMMEDIATE takes the write lock first, so of
    two processes opening one old database, the second sees the columns already added."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column, sql_type in ADDED_COLUMNS:
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _number(run_id: str, step: Any, key: str, v: Any) -> int | float | None:
    """A curve value as a plain int/float (numpy and 0-d tensors too); NaN -> None."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(
            f"run {run_id} curve step {step}: {key}={v!r} is not a number "
            "(curve rows hold numeric metrics only)"
        )
    return None if isinstance(v, float) and math.isnan(v) else v


def _curve_point(run_id: str, point: Mapping[str, Any]) -> tuple:
    """(run_id, step, tokens, train_loss, val_loss, JSON of the other keys or None)."""
    if "step" not in point:
        raise ValueError(f"run {run_id}: a curve row without 'step': {dict(point)!r}")
    if "run_id" in point:
        raise ValueError(f"run {run_id}: 'run_id' is not a curve metric name")
    step = point["step"]
    num = {k: _number(run_id, step, k, v) for k, v in point.items() if k != "step"}
    more = {k: v for k, v in num.items() if k not in CURVE_COLUMNS}
    return (
        run_id,
        int(step),
        *(num.get(k) for k in CURVE_COLUMNS),
        json.dumps(more, allow_nan=True) if more else None,
    )


def _products(products: Mapping[str, Any]) -> dict[str, str]:
    """name -> POSIX path relative to the output dir; absolute paths would not survive moving
    the output dir, so they are refused (ValueError)."""
    out = {}
    for name, path in products.items():
        if PurePath(path).is_absolute():
            raise ValueError(
                f"product {name!r}: {path} must be relative to the output dir (runs/<id>/...)"
            )
        out[str(name)] = PurePath(path).as_posix()
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out
