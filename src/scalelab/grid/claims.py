"""Claims: two drivers on one output folder train each run once.

Before a driver executes a run it takes an exclusive, non-blocking `flock` on
`runs/<id>/.claim` and holds it for the run's whole duration (until its row is stored).
Another driver that fails to take it treats the run as in progress elsewhere: it waits
and picks up the stored row when the holder finishes (a dependent waits on it too).

Why flock: the kernel drops the lock when the holding process dies however it dies (a
SIGKILL included), so there is no stale lease to expire and no heartbeat to keep; the
file itself is never deleted (deleting a lock file races with a process locking it).

Filesystems: local disks honour flock. On NFS (v4, or v3 with lockd) Linux turns flock
into a byte-range lock held by the server, so claims work across machines, and a client
that dies loses its locks when its lease expires (about 90 s), after which the run is
resumed by whoever claims it. Some network or FUSE filesystems do not support locking: a
claim there raises a ScalelabError naming the file rather than risk training twice.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from scalelab.errors import ScalelabError

CLAIM = ".claim"


class Claim:
    """A held claim on one run; `release()` (idempotent) lets other drivers take it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_path(runs_dir: Path, run_id: str) -> Path:
    return Path(runs_dir) / run_id / CLAIM


def try_claim(runs_dir: Path, run_id: str) -> Claim | None:
    """Take the claim on a run, or return None when another live driver holds it.

    Raises ScalelabError when the filesystem cannot lock (see the module docstring).
    Within one process, two claims on one run also exclude each other (flock is per open
    file, not per process).
    """
    path = claim_path(runs_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise ScalelabError(
            f"cannot lock {path}: {err.strerror} (claims need a filesystem with flock "
            "support; see scalelab.grid.claims)"
        ) from None
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    return Claim(path, fd)


def holder(runs_dir: Path, run_id: str) -> str:
    """Who holds (or last held) a run's claim, for messages: 'pid 123 on host'."""
    try:
        info = json.loads(claim_path(runs_dir, run_id).read_text())
        return f"pid {info['pid']} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another scalelab run"


def is_claimed(runs_dir: Path, run_id: str) -> bool:
    """Whether a live driver holds the claim (for --dry-run). Writes nothing; it takes a
    shared lock for an instant, so a driver claiming at that very moment retries later."""
    try:
        fd = os.open(claim_path(runs_dir, run_id), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
