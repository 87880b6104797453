"""The results store: SQLite in WAL mode, one row per run.

A run's row and its learning curve are written in one transaction when the run ends
(done or failed), so a crash mid-run leaves no row at all rather than half of one; the
run's checkpoint on disk is what lets it resume. Only the parent process writes.

The file is created whole (schema and WAL mode written to a temp file renamed into place
under a lock), so an empty or half-made `results.sqlite` is never scalelab's own; anything
at the path that is not a SQLite database with a `runs` table (a directory, an empty or
garbage file, another program's database) is refused with one line, before any write.
Reads never create the file; with `readonly_reads` they open it read-only and never change
it, whatever its schema version (what `results`, `--dry-run`, `compare` and `report` use).

A curve row is `step` plus any numeric metrics: `tokens`, `train_loss` and `val_loss` have
columns of their own (what old databases and the report read); every other key is kept in the
row's JSON `metrics` column. A run row may list its products (name -> path relative to the
output dir), its stage and the runs it depends on. Databases written before those columns
existed gain them on first connect (schema version in `PRAGMA user_version`).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path, PurePath
from typing import Any

import pandas as pd

from scalelab.config import flatten
from scalelab.errors import ScalelabError
from scalelab.io import atomic_write, build_once

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
    products TEXT,
    runtime TEXT
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
SCHEMA_VERSION = 3
# Columns added since version 1 (the first release): (table, column, SQL type).
ADDED_COLUMNS = [
    ("runs", "stage", "TEXT"),
    ("runs", "deps", "TEXT"),
    ("runs", "products", "TEXT"),
    ("curves", "metrics", "TEXT"),
    ("runs", "runtime", "TEXT"),  # version 3
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
    "runtime",
]
# Curve keys with a column of their own, in this order after run_id and step.
CURVE_COLUMNS = ["tokens", "train_loss", "val_loss"]

# Config columns of the results table come in this order, after run_id/experiment/status.
CONFIG_ORDER = ["model", "method", "seed", "task", "params"]

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database
MOVE_AWAY = "move it away or pass --output-dir"


class ResultsStore:
    """A results database at `path` (created on first write, never on read).

    `readonly_reads`: reads open the file read-only (`mode=ro`) and read any schema version
    as it is; otherwise a read migrates an older database in place. Every method raises
    ScalelabError when the path holds something that is not a scalelab results database.
    """

    def __init__(self, path: str | Path, readonly_reads: bool = False) -> None:
        self.path = Path(path)
        self.readonly_reads = readonly_reads

    def check(self) -> bool:
        """True when a SQLite database is at `path`, False when nothing is; reads 16 bytes
        and writes nothing. Raises ScalelabError (naming the file and what to do) for a
        directory, an empty or non-SQLite file, or one that cannot be read."""
        try:
            problem = _not_a_database(self.path)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise ScalelabError(
                f"cannot read results database {self.path}: {err.strerror}"
            ) from None
        if problem:
            raise ScalelabError(f"{self.path} {problem}; {MOVE_AWAY}")
        return True

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """SQLite failures about the file itself (damaged, unreadable, locked too long) as one
        user-facing line; constraint violations stay what they are (a bug in the caller)."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.DatabaseError as err:
            raise ScalelabError(f"results database {self.path}: {err}; {MOVE_AWAY}") from None

    def _create(self) -> None:
        """Write a complete empty store (schema, WAL mode, version) to a temp file and
        rename it into place, so no reader ever sees a half-made database."""

        def write(tmp: Path) -> None:
            with closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")  # kept in the file header
                conn.executescript(SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # Closing the last connection checkpointed the WAL into the file and removed it.

        atomic_write(self.path, write)

    def _require_runs_table(self, conn: sqlite3.Connection) -> bool:
        """True when the database has a runs table, False when it has no tables at all (an
        empty store); ScalelabError for another program's database."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "runs" not in tables:
            raise ScalelabError(
                f"{self.path} is a SQLite database but not a scalelab results store "
                f"(no runs table); {MOVE_AWAY}"
            )
        return bool(tables)

    def _connect(self) -> sqlite3.Connection:
        """A read-write connection, creating the store when missing and migrating an older
        schema. Raises ScalelabError for anything at the path that is not a store."""
        if not self.check():
            build_once(self.path, self._create)
            self.check()  # whatever another process put there meanwhile must be a store too
        with self._sqlite_errors():
            for attempt in range(6):
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                try:
                    self._setup(conn)
                    return conn
                except sqlite3.OperationalError as err:
                    conn.close()
                    # SQLite answers "locked" at once, without waiting out the timeout, where
                    # waiting could deadlock (a rollback-journal database, before WAL, that
                    # several processes open and migrate together): its advice is to retry.
                    if "locked" not in str(err) or attempt == 5:
                        raise
                    time.sleep(0.05 * 2**attempt)
                except BaseException:
                    conn.close()
                    raise
        raise AssertionError("unreachable")

    def _setup(self, conn: sqlite3.Connection) -> None:
        self._require_runs_table(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _migrate(conn)

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        """A connection to read from, or None when there is nothing to read (no file, or a
        SQLite file without tables). Never creates the file."""
        if not self.check():
            yield None
            return
        with self._sqlite_errors():
            if self.readonly_reads:
                uri = f"{self.path.absolute().as_uri()}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=60)
            else:
                conn = self._connect()
            with closing(conn):
                yield conn if self._require_runs_table(conn) else None

    def statuses(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        """run_id -> "done" | "failed" for the stored runs (of `run_ids` if given)."""
        with self._reader() as conn:
            rows = (
                [] if conn is None else conn.execute("SELECT run_id, status FROM runs").fetchall()
            )
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
            if c in ("config", "metrics", "versions", "runtime"):
                values[i] = json.dumps(values[i] or {}, sort_keys=True, default=str)
            elif c == "deps":
                values[i] = json.dumps([str(d) for d in values[i]]) if values[i] else None
            elif c == "products":
                values[i] = json.dumps(_products(values[i]), sort_keys=True) if values[i] else None
        points = [_curve_point(row["run_id"], c) for c in curve]
        with self._sqlite_errors(), closing(self._connect()) as conn:
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

    def _rows(self, run_ids: Iterable[str] | None) -> list[dict[str, Any]]:
        """Run rows as dicts with every RUN_COLUMNS key (None where an older schema lacks
        the column)."""
        with self._reader() as conn:
            if conn is None:
                return []
            conn.row_factory = sqlite3.Row
            found = conn.execute("SELECT * FROM runs ORDER BY rowid").fetchall()
        rows = [{c: (r[c] if c in r.keys() else None) for c in RUN_COLUMNS} for r in found]
        if run_ids is None:
            return rows
        order = {r: i for i, r in enumerate(run_ids)}
        return sorted((r for r in rows if r["run_id"] in order), key=lambda r: order[r["run_id"]])

    def table(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per run: run_id, experiment, stage, status, flattened config (`task.dataset`,
        `params.lr`, ...), metrics, then provenance (error, products and deps as JSON text,
        times, git commit, versions, host, and runtime: the device, torch threads and
        processes the run trained with, as JSON text). `run_ids` selects and orders the rows."""
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
            rec.update(flatten({**head, **config}))
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
                    "runtime": r["runtime"],
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
        wanted = None if run_ids is None else set(run_ids)
        with self._reader() as conn:
            if conn is None:
                return pd.DataFrame(columns=cols)
            have = {r[1] for r in conn.execute("PRAGMA table_info(curves)")}
            metrics = "metrics" if "metrics" in have else "NULL"  # absent before schema 2
            rows = conn.execute(
                f"SELECT run_id, step, tokens, train_loss, val_loss, {metrics} FROM curves "
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


def _not_a_database(path: Path) -> str | None:
    """What is wrong with `path` as a SQLite file (None: nothing). Raises OSError when it
    cannot be read (FileNotFoundError when there is nothing there)."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a scalelab results database"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file, so not a scalelab results database"
    if st.st_size == 0:  # scalelab creates the file whole: an empty one is something else's
        return "is an empty file (0 bytes), not a scalelab results database"
    with open(path, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            return "is not a scalelab results database (not SQLite)"
    return None


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
