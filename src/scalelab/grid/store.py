"""The results store: SQLite in WAL mode, one row per run.

A run's row and its learning curve are written in one transaction when the run ends
(done or failed), so a crash mid-run leaves no row at all rather than half of one; the
run's checkpoint on disk is what lets it resume. Only the parent process writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
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
        return conn

    def statuses(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        if not self.path.exists():
            return {}
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT run_id, status FROM runs").fetchall()
        wanted = None if run_ids is None else set(run_ids)
        return {r: s for r, s in rows if wanted is None or r in wanted}

    def record(self, row: dict[str, Any], curve: list[dict[str, Any]] = ()) -> None:
        """Insert or replace one run and its curve, atomically (one transaction)."""
        cols = [
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
        ]
        values = [row.get(c) for c in cols]
        for i, c in enumerate(cols):
            if c in ("config", "metrics", "versions"):
                values[i] = json.dumps(values[i] or {}, sort_keys=True, default=str)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"INSERT OR REPLACE INTO runs ({','.join(cols)}) "
                    f"VALUES ({','.join('?' * len(cols))})",
                    values,
                )
                conn.execute("DELETE FROM curves WHERE run_id = ?", (row["run_id"],))
                conn.executemany(
                    "INSERT INTO curves VALUES (?, ?, ?, ?, ?)",
                    [
                        (
                            row["run_id"],
                            c["step"],
                            c.get("tokens"),
                            c.get("train_loss"),
                            c.get("val_loss"),
                        )
                        for c in curve
                    ],
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
        """One row per run: lead columns, flattened config (`task.dataset`, `params.lr`, ...),
        metrics, then provenance. `run_ids` selects and orders the rows."""
        records = []
        for r in self._rows(None if run_ids is None else list(run_ids)):
            rec = {"run_id": r["run_id"], "experiment": r["experiment"], "status": r["status"]}
            config = json.loads(r["config"])
            head = {k: config.pop(k) for k in CONFIG_ORDER if k in config}
            rec.update(_flatten({**head, **config}))
            rec.update(json.loads(r["metrics"]))
            rec.update(
                {
                    "error": r["error"],
                    "started_at": r["started_at"],
                    "finished_at": r["finished_at"],
                    "git_commit": r["git_commit"],
                    "versions": r["versions"],
                    "host": r["host"],
                }
            )
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def curves(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Learning curves, long format: run_id, step, tokens, train_loss, val_loss."""
        cols = ["run_id", "step", "tokens", "train_loss", "val_loss"]
        if not self.path.exists():
            return pd.DataFrame(columns=cols)
        with closing(self._connect()) as conn:
            df = pd.read_sql_query("SELECT * FROM curves ORDER BY run_id, step", conn)
        if run_ids is not None:
            df = df[df["run_id"].isin(set(run_ids))]
        return df.reset_index(drop=True)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out
