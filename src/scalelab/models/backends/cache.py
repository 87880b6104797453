"""An on-disk request cache: one SQLite file shared by every process and backend.

A row's key is sha256(fingerprint, method, canonical JSON of the request), so a rerun finds
every answer without touching the model, and a changed model (new fingerprint) never reads
an old one. The file runs in WAL mode (readers never block the one writer); each batch of
answers is written in one transaction (all or nothing), and each value carries a digest that
is checked on read, so a damaged row is recomputed rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scalelab import paths
from scalelab.models.backends.base import (
    Backend,
    Generation,
    GenRequest,
    Loglikelihood,
    canonical_json,
)

_SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, digest TEXT NOT NULL,
    method TEXT NOT NULL, created REAL NOT NULL)"""
_CHUNK = 500  # keys per SELECT: well under SQLite's bound-parameter limit


def default_path() -> Path:
    """`$SCALELAB_HOME/cache/requests.sqlite`."""
    return paths.cache_dir("cache") / "requests.sqlite"


def _digest(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\n{value}".encode()).hexdigest()[:32]


def _retry_locked(fn: Callable[[], Any], tries: int = 100) -> Any:
    """Run `fn`, retrying while another process holds a lock SQLite's timeout did not cover
    (switching a fresh file to WAL mode fails at once instead of waiting)."""
    for attempt in range(tries):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(min(0.01 * (attempt + 1), 0.2))
    return None  # unreachable: the last attempt raised


class RequestCache:
    """A key -> JSON value store in one SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # sqlite3 connections must not cross threads

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # a forked child reconnects
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            _retry_locked(lambda: conn.execute(_SCHEMA))
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: atomic, and fast
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @staticmethod
    def key(fingerprint: str, method: str, request: object) -> str:
        """The row key: sha256 over the fingerprint, the method and the canonical request."""
        text = f"{fingerprint}\n{method}\n{canonical_json(request)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored values of those keys that are present and intact."""
        conn, found, bad = self._conn(), {}, []
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value, digest FROM requests WHERE key IN ({marks})"
            for key, value, digest in _retry_locked(
                lambda q=sql, c=chunk: conn.execute(q, c).fetchall()
            ):
                if digest == _digest(key, value):
                    found[key] = json.loads(value)
                else:
                    bad.append(key)
        if bad:  # damaged rows: drop them so they are recomputed and rewritten
            sql = "DELETE FROM requests WHERE key = ?"
            _retry_locked(lambda: conn.executemany(sql, [(k,) for k in bad]))
        return found

    def put_many(self, items: dict[str, Any], method: str = "") -> None:
        """Store key -> JSON-able value pairs in one transaction (all are written or none)."""
        if not items:
            return
        now = time.time()
        rows = []
        for key, obj in items.items():
            value = canonical_json(obj)
            rows.append((key, value, _digest(key, value), method, now))
        conn = self._conn()

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
            try:
                conn.executemany("INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        _retry_locked(write)

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM requests").fetchone()[0]


class CachingBackend(Backend):
    """Wraps a backend: answers found in the cache are returned without calling the model.

    The fingerprint is read once per call, before and after computing; answers are stored
    only if it did not change meanwhile, so a model swapped mid-call never poisons the cache.
    Sampled generation without a seed is never cached (it is not meant to repeat). Anything
    else (`.module`, `.tokenizer`, options) is the wrapped backend's.
    """

    def __init__(self, inner: Backend, cache: RequestCache | None = None) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else RequestCache()  # an empty one is falsy
        self.stats = {"hits": 0, "misses": 0}  # requests answered from the cache, and not
        self.fresh: set[int] = set()

    def __getattr__(self, name: str) -> Any:  # only called for names not found here
        if name == "inner":  # not set yet (e.g. during unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inner.kind

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def cache_salt(self) -> str:
        return self.inner.cache_salt

    def _cached(self, method: str, payloads: list, compute: Callable[[list], list]) -> list:
        """Look every payload up (None: not cacheable), compute the misses once each, store."""
        fingerprint = self.inner.fingerprint
        name = f"{self.inner.cache_salt}:{method}"
        keys = [None if p is None else self.cache.key(fingerprint, name, p) for p in payloads]
        hits = self.cache.get_many([k for k in keys if k is not None])
        todo: dict[str | int, int] = {}  # first index of each distinct missing key
        for i, k in enumerate(keys):
            if k is None or k not in hits:
                todo.setdefault(k if k is not None else i, i)
        self.stats["hits"] += len(keys) - len(todo)
        self.stats["misses"] += len(todo)
        self.fresh = set(todo.values())  # indices computed by this call (the rest: hits)
        if todo:
            fresh = compute([i for i in todo.values()])
            got = dict(zip(todo.keys(), fresh, strict=True))
            if self.inner.fingerprint == fingerprint:
                self.cache.put_many({k: v for k, v in got.items() if isinstance(k, str)}, name)
            hits.update(got)
        return [hits[k if k is not None else i] for i, k in enumerate(keys)]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        reqs = list(requests)
        out = self._cached(
            "loglikelihood.v2",  # v2: answers carry n_tokens (v1 rows are not read)
            [list(r) for r in reqs],
            lambda idx: [list(x) for x in self.inner.loglikelihood([reqs[i] for i in idx])],
        )
        return [Loglikelihood(float(lp), bool(g), int(n)) for lp, g, n in out]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        texts = list(texts)
        out = self._cached(
            "loglikelihood_rolling",
            texts,
            lambda idx: self.inner.loglikelihood_rolling([texts[i] for i in idx]),
        )
        return [float(x) for x in out]

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        reqs = list(requests)
        return self._cached(
            "generate",
            [r.as_dict() if r.deterministic else None for r in reqs],
            lambda idx: self.inner.generate([reqs[i] for i in idx]),
        )

    def generate_full(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """As `generate`, with each answer's finish reason and token counts (cached apart
        from `generate`'s texts: a hit returns what the first computation reported)."""
        reqs = list(requests)
        out = self._cached(
            "generate_full",
            [r.as_dict() if r.deterministic else None for r in reqs],
            lambda idx: [asdict(g) for g in self.inner.generate_full([reqs[i] for i in idx])],
        )
        return [Generation(**{**g, "cached": i not in self.fresh}) for i, g in enumerate(out)]

    def close(self) -> None:
        self.inner.close()
