"""Hostile archives are refused before anything is written; archive digests are checked.

The archives are real zips and tars built here and put where a download would have left
them (`$SCALELAB_HOME/downloads/<package>-<version>/`), so no test but the last runs pip.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from scalelab import paths
from scalelab.data import sources
from scalelab.data.sources import PypiMember
from scalelab.errors import ScalelabError

from .conftest import build_wheel, sha

WHEEL = "evil-0.1-py3-none-any.whl"
OK = b"an honest file\n"


def _zip(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, data, unix mode) members; mode 0 leaves the type bits unset."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix: the mode below is honoured by unzip tools
            info.external_attr = mode << 16
            z.writestr(info, data)
    return buf.getvalue()


def _tar(members: list[tuple[str, bytes, bytes, str]]) -> bytes:
    """A tar.gz of (name, data, type, link target) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def _cache_archive(data: bytes, package: str = "evil", name: str = WHEEL) -> Path:
    """Put `data` where `pip download` of `package==0.1` would have cached it."""
    folder = paths.home() / "downloads" / f"{package}-0.1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def _written_by_fetch(tmp_path: Path) -> list[str]:
    """Anything extraction left: hostile names anywhere, or files/temps under sources/."""
    pwned = [str(p) for p in tmp_path.rglob("pwned*")]
    root = paths.home() / "sources"
    cached = [
        str(p)
        for p in (root.rglob("*") if root.exists() else [])
        if (p.is_file() and not p.name.endswith(".lock")) or ".tmp-" in p.name
    ]
    return pwned + cached


def _cases(outside: Path) -> dict[str, tuple[str, bytes, str, str]]:
    """case -> (member name, data, kind, the reason the error gives)."""
    return {
        "dotdot": ("model/../../../../pwned-dotdot.txt", OK, "file", "has a '..' path component"),
        "absolute": (str(outside / "pwned-abs.txt"), OK, "file", "is an absolute path"),
        # Not absolute itself, but what follows the folder prefix is: `model//tmp/...`.
        "prefix-absolute": (
            f"model/{outside}/pwned-abs.txt",
            OK,
            "file",
            "would be written outside the target folder",
        ),
        "symlink": ("model/pwned-link", b"/etc/passwd", "symlink", "is a symlink, not a regular"),
        "oversize": (
            "model/pwned-big.bin",
            b"x" * 5000,
            "file",
            "is 5,000 bytes, over SCALELAB_MAX_MEMBER_BYTES=4,096",
        ),
    }


ZIP_MODES = {"file": stat.S_IFREG | 0o644, "symlink": stat.S_IFLNK | 0o777}
TAR_TYPES = {"file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE}


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("case", ["dotdot", "absolute", "prefix-absolute", "symlink", "oversize"])
def test_hostile_member_is_refused_and_nothing_is_written(tmp_path, monkeypatch, fmt, case):
    monkeypatch.setenv(sources.MAX_MEMBER_ENV, "4K")
    name, data, kind, reason = _cases(tmp_path / "outside")[case]
    members = [("model/a.txt", OK, "file"), ("model/sub/b.txt", OK, "file"), (name, data, kind)]
    if fmt == "zip":  # the wheel itself holds the hostile folder under evil/
        members = [(n if n.startswith("/") else f"evil/{n}", d, k) for n, d, k in members]
        _cache_archive(_zip([(n, d, ZIP_MODES[k]) for n, d, k in members]))
        member = PypiMember("evil", "0.1", "evil/model/", "0" * 64)
        name, archive = members[-1][0], WHEEL
    else:  # a tar.gz inside the wheel, as the catalog's nested archives are
        link = {"symlink": "/etc/passwd"}  # a symlink member's target
        inner = _tar([(n, d, TAR_TYPES[k], link.get(k, "")) for n, d, k in members])
        _cache_archive(_zip([("evil/model.tar.gz", inner, 0)]))
        member = PypiMember("evil", "0.1", "evil/model.tar.gz", "0" * 64, archive_member="model/")
        archive = "evil/model.tar.gz"

    with pytest.raises(ScalelabError) as err:
        member.fetch()

    message = str(err.value)
    assert "\n" not in message and f"archive {archive}" in message, message
    assert f"member {name!r} {reason}" in message, message
    assert _written_by_fetch(tmp_path) == [] and not member.is_cached()


@pytest.mark.parametrize("kind", [tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE])
def test_tar_hardlinks_fifos_and_devices_are_refused(tmp_path, kind):
    inner = _tar([("model/a.txt", OK, tarfile.REGTYPE, ""), ("model/x", b"", kind, "model/a.txt")])
    _cache_archive(_zip([("evil/model.tar.gz", inner, 0)]))
    member = PypiMember("evil", "0.1", "evil/model.tar.gz", "0" * 64, archive_member="model/")
    with pytest.raises(ScalelabError, match=r"member 'model/x' is a (hardlink|fifo|device), not"):
        member.fetch()
    assert _written_by_fetch(tmp_path) == []


def test_total_size_is_capped(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MAX_TOTAL_ENV, "2K")
    _cache_archive(_zip([(f"evil/model/{i}.bin", b"x" * 1000, 0) for i in range(3)]))
    member = PypiMember("evil", "0.1", "evil/model/", "0" * 64)
    with pytest.raises(
        ScalelabError, match="total to 3,000 bytes, over SCALELAB_MAX_EXTRACT_BYTES=2,048"
    ):
        member.fetch()
    assert _written_by_fetch(tmp_path) == []


def test_a_dotdot_name_anywhere_refuses_the_archive(tmp_path):
    """A crafted name outside the wanted folder still marks the whole archive as hostile."""
    _cache_archive(_zip([("evil/data.txt", OK, 0), ("other/../../pwned.txt", OK, 0)]))
    with pytest.raises(ScalelabError, match="member 'other/../../pwned.txt' has a '..'"):
        PypiMember("evil", "0.1", "evil/data.txt", sha(OK)).fetch()
    assert _written_by_fetch(tmp_path) == []


def test_a_bad_limit_setting_is_one_line(monkeypatch):
    _cache_archive(_zip([("evil/data.txt", OK, 0)]))
    monkeypatch.setenv(sources.MAX_MEMBER_ENV, "lots")
    with pytest.raises(
        ScalelabError, match="SCALELAB_MAX_MEMBER_BYTES='lots': expected a positive"
    ):
        PypiMember("evil", "0.1", "evil/data.txt", sha(OK)).fetch()


def test_not_an_archive_is_one_line(tmp_path):
    _cache_archive(b"<html>rate limited</html>\n")
    with pytest.raises(ScalelabError, match=f"{WHEEL} .*is not a readable zip or tar archive"):
        PypiMember("evil", "0.1", "evil/data.txt", sha(OK)).fetch()


def test_a_corrupt_member_is_one_line_and_caches_nothing(tmp_path):
    data = b"A" * 100
    good = _zip([("evil/data.txt", data, 0)])
    _cache_archive(good.replace(data, b"B" + data[1:]))  # stored, so the CRC no longer fits
    member = PypiMember("evil", "0.1", "evil/data.txt", sha(data))
    with pytest.raises(ScalelabError, match=r"member 'evil/data.txt' cannot be read \(Bad CRC"):
        member.fetch()
    assert _written_by_fetch(tmp_path) == [] and not member.is_cached()


def test_a_changed_cached_archive_is_refused(tmp_path):
    good = _zip([("evil/a.txt", OK, 0), ("evil/b.txt", b"bee\n", 0)])
    archive = _cache_archive(good)
    first = PypiMember("evil", "0.1", "evil/a.txt", sha(OK)).fetch()
    sidecar = archive.with_name(archive.name + ".sha256")  # recorded on first use
    assert sidecar.read_text() == f"{sha(good)}  {WHEEL}\n"

    archive.write_bytes(_zip([("evil/a.txt", OK, 0), ("evil/b.txt", b"wasp\n", 0)]))
    second = PypiMember("evil", "0.1", "evil/b.txt", sha(b"wasp\n"))
    with pytest.raises(ScalelabError) as err:
        second.fetch()
    message = str(err.value)
    assert "\n" not in message and f"cached archive {archive} changed" in message
    assert f"delete {archive.parent} to download it again" in message
    assert not second.is_cached() and first.read_bytes() == OK  # verified before: kept


def test_a_pinned_archive_digest_is_checked(tmp_path):
    data = _zip([("evil/a.txt", OK, 0)])
    _cache_archive(data)
    wrong = PypiMember("evil", "0.1", "evil/a.txt", sha(OK), archive_sha256="0" * 64)
    with pytest.raises(ScalelabError, match="does not match its pinned sha256; delete"):
        wrong.fetch()
    assert not wrong.is_cached()
    right = PypiMember("evil", "0.1", "evil/a.txt", sha(OK), archive_sha256=sha(data))
    assert right.fetch().read_bytes() == OK


def test_a_download_records_its_digest_and_a_wrong_pin_caches_nothing(wheelhouse):
    files = {"tinydata/hello.txt": OK, "tinydata/two.txt": b"two\n"}
    wheel = build_wheel(wheelhouse, "tiny-data", "0.1", files)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    wrong = PypiMember("tiny-data", "0.1", "tinydata/hello.txt", sha(OK), archive_sha256="f" * 64)
    with pytest.raises(ScalelabError, match=f"downloaded {wheel.name} has sha256 {digest}"):
        wrong.fetch()
    cached = paths.home() / "downloads" / "tiny-data-0.1"
    assert not cached.exists()

    right = PypiMember("tiny-data", "0.1", "tinydata/hello.txt", sha(OK), archive_sha256=digest)
    assert right.fetch().read_bytes() == OK
    assert (cached / f"{wheel.name}.sha256").read_text() == f"{digest}  {wheel.name}\n"
    shutil.rmtree(wheelhouse)  # the next member comes from the verified cache, not from pip
    two = PypiMember("tiny-data", "0.1", "tinydata/two.txt", sha(b"two\n"), archive_sha256=digest)
    assert two.fetch().read_bytes() == b"two\n"
