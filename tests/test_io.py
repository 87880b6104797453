"""Files and folders renamed into place get the modes a plain `open`/`mkdir` would give."""

from __future__ import annotations

import json
import os
import stat

import pytest

from scalelab.io import atomic_write_text, make_temp_dir, umask


@pytest.fixture(params=[0o022, 0o002, 0o077])
def mask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_umask_reads_the_process_mask(mask):
    assert umask() == mask


def test_atomic_writes_follow_the_umask(tmp_path, mask):
    path = tmp_path / "report.html"
    atomic_write_text(path, "<html></html>")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_temp_folders_follow_the_umask(tmp_path, mask):
    folder = make_temp_dir(tmp_path / "model")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask


def test_partial_rows_resume_cut_a_torn_line_and_restart_on_foreign_keys(tmp_path):
    from scalelab.io import PartialRows

    path = tmp_path / "p.jsonl"
    rows = PartialRows(path, "id", ["a", "b", "c"])
    rows.add([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    with path.open("a") as f:
        f.write('{"id": "c", "v"')  # killed mid-write
    again = PartialRows(path, "id", ["a", "b", "c"])
    assert len(again) == 2 and "c" not in again and again.rows["b"]["v"] == 2
    again.add([{"id": "c", "v": 3}])  # appends after the last whole line
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
    other = PartialRows(path, "id", ["x"])  # another task wrote here: start again
    assert len(other) == 0 and not path.exists()
    other.add([{"id": "x"}])
    other.done()
    assert not path.exists()
