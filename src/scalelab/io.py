"""Atomic file writes and safe first use of shared caches.

* `atomic_write`: write to a temp file in the same folder, then rename. A crash mid-write
  leaves the old file (or none), never a truncated one.
* `file_lock` / `build_once`: of several processes that find a cache entry missing at the
  same time, one builds it while the others wait, then use it.

Every temp name carries the writer's host, pid and a random part
(`.<name>.tmp-<host>-<pid>-<random>`), so concurrent writers, here or on another machine
sharing the folder, never share one, and a leftover names the process that left it. Two ways
to clean leftovers: `remove_stale_temps` (all of them, while holding the target's lock) and
`remove_dead_temps` (those of writers on this host that are gone; for lock-free writers such
as checkpoints).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# flock locks belong to an open file, so two threads of one process opening the lock file
# separately already exclude each other on a local disk; on NFS, Linux emulates flock with
# POSIX byte-range locks, which belong to the process. This per-path thread lock keeps
# threads apart there too.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _host() -> str:
    return socket.gethostname().replace("/", "_")


def temp_prefix(path: Path, pid: int | None = None) -> str:
    """The name prefix of the temp files for `path` of process `pid` on this host (default:
    this process); a random part follows."""
    return f".{Path(path).name}.tmp-{_host()}-{os.getpid() if pid is None else pid}-"


def unique_temp_path(path: Path) -> Path:
    """A path next to `path` that no other writer, on this host or another, will use."""
    path = Path(path)
    return path.with_name(temp_prefix(path) + secrets.token_hex(4))


def remove_dead_temps(target: Path) -> None:
    """Remove temp files/folders of `target` whose writer, a process on this host, is gone:
    what a kill in the middle of a write leaves. Needs no lock; other hosts' leftovers stay
    (their processes cannot be checked from here)."""
    target = Path(target)
    # Before temp names began with a dot, checkpoints used `<name>.tmp-<host>-<pid>-<rand>`:
    # leftovers of that form, from runs killed under an older scalelab, go the same way.
    for prefix in (f".{target.name}.tmp-{_host()}-", f"{target.name}.tmp-{_host()}-"):
        for leftover in target.parent.glob(glob.escape(prefix) + "*"):
            pid = leftover.name[len(prefix) :].partition("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                _remove(leftover)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _remove(leftover: Path) -> None:
    if leftover.is_dir() and not leftover.is_symlink():
        shutil.rmtree(leftover, ignore_errors=True)
    else:
        leftover.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename tmp onto `path` (same filesystem, so atomic).

    Concurrent writers of one path each write their own temp file; the last rename wins and
    a reader sees one complete file or the other. Re-raises whatever `write` raises, after
    removing the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 would outlive the rename
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def make_temp_dir(target: Path) -> Path:
    """A new empty folder next to `target`, named for it and for this process."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp's 0700 would outlive the rename
    return tmp


def umask() -> int:
    """The process's file-mode creation mask, so files renamed into place get the modes a
    plain `open` would give them (readable by the group on a shared cluster folder)."""
    try:  # Linux: readable without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, so the fallback)
    os.umask(old)
    return old


def replace_dir(tmp: Path, target: Path) -> bool:
    """Rename the finished folder `tmp` onto `target`; False (and `tmp` removed) when
    `target` already exists, i.e. a writer that took no lock finished first and its copy
    is used. Raises OSError for any other failure."""
    try:
        os.replace(tmp, target)
        return True
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not Path(target).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False


@contextmanager
def file_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock for `target` (which need not exist) until the block ends.

    The lock is `fcntl.flock` on `.<name>.lock` next to `target`: released by the kernel
    when the holder exits or dies, and on Linux NFS clients (2.6.12+) emulated with POSIX
    byte-range locks, so it also holds across machines sharing an NFS home. Lock files stay
    behind: removing one while another process waits on it would let a third take a second
    lock on a new file. Raises OSError when the folder cannot be written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(str(lock_path.absolute()), threading.Lock())
    with thread_lock, open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_stale_temps(target: Path) -> None:
    """Remove temp files/folders of `target` left by writers that died mid-write.

    Only call this while holding `file_lock(target)`: every writer of `target` holds it
    while writing, so any temp still there belongs to a writer that is gone.
    """
    target = Path(target)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        _remove(leftover)


def build_once(target: Path, build: Callable[[], None]) -> bool:
    """Make sure `target` exists, calling `build()` (which must create it atomically) in at
    most one of the processes that find it missing at the same time.

    Returns True when this call built it, False when it already existed (or another process
    built it while this one waited for the lock). Re-raises what `build` raises; the lock
    is released either way, so a waiting process then tries for itself.
    """
    target = Path(target)
    if target.exists():
        return False
    with file_lock(target):
        if target.exists():  # built by the process we waited for
            return False
        remove_stale_temps(target)
        build()
    return True


def read_jsonl_rows(path: Path, key: str, repair: bool = False) -> dict[Any, dict]:
    """row[key] -> row for the JSON lines of a file appended to chunk by chunk (a run's
    partial results). A torn or unreadable line (a kill mid-write) ends the reading; with
    `repair` the file is cut back to the last whole line, so appends follow it. A missing
    file reads as no rows."""
    rows: dict[Any, dict] = {}
    path = Path(path)
    if not path.exists():
        return rows
    good = 0  # bytes of whole, valid lines
    with path.open("rb") as f:
        for line in f:
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn line")
                row = json.loads(line)
                rows[row[key]] = row
            except (ValueError, KeyError, TypeError):
                break
            good += len(line)
    if repair and good < path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good)
    return rows


def read_jsonl_records(path: Path) -> list[tuple[str, Any]]:
    """(where, value) per non-blank line of a user's JSONL file, `where` being "file:line"
    for the caller's own error messages. Raises ScalelabError naming the file (unreadable)
    or the file and line (not valid JSON)."""
    from scalelab.errors import ScalelabError, clip

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ScalelabError(f"cannot read {clip(path)}: {err}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            where = f"{clip(path)}:{n}"
            try:
                out.append((where, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ScalelabError(f"{where}: not valid JSON ({err.msg})") from None
    return out


class PartialRows:
    """A run's partial results: rows appended chunk by chunk to a JSONL file, so a killed
    run resumes where it was and loses at most the chunk in flight.

    Opening reads the saved rows (`read_jsonl_rows` with repair: a torn last line is cut);
    rows whose keys are not among `expected` mean another task or setting wrote here, so
    the file starts again. `add` appends rows and flushes; `done` removes the file once the
    run's product is written.
    """

    def __init__(self, path: Path, key: str, expected) -> None:
        self.path, self.key = Path(path), key
        self.rows = read_jsonl_rows(self.path, key, repair=True)
        if not set(self.rows) <= set(expected):
            self.rows = {}
            self.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: Any) -> bool:
        return key in self.rows

    def add(self, rows: list[dict]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
                self.rows[row[self.key]] = row
            f.flush()

    def done(self) -> None:
        self.path.unlink(missing_ok=True)
