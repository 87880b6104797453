"""A failed run stays failed (its dependents blocked) until `--retry-failed` or `--force`;
its error names the file with the traceback; `--dry-run` shows it failed. Through the CLI,
on a two-stage spec whose first run fails for a cause outside the spec (the cache folder,
`$SCALELAB_HOME`, is a file), which is then fixed."""

from __future__ import annotations

from pathlib import Path

from helpers import cli, write_spec

from scalelab.grid.api import labels
from scalelab.grid.executors.base import ATTEMPTS
from scalelab.grid.spec import expand, load_spec
from scalelab.grid.store import ResultsStore


def two_stage_spec(tmp_path: Path, corpus: Path) -> Path:
    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 500}}  # fmt: skip
    base = {"models": "gpt-d1", "methods": "pretrain",
            "params": {"tokens": 8 * 32 * 10, "batch_size": 8}}  # fmt: skip
    tuned = {"models": "@base", "methods": "pretrain",
             "params": {"tokens": 8 * 32 * 5, "batch_size": 8}}  # fmt: skip
    return write_spec(tmp_path / "s.yaml", name="retry", output_dir=str(tmp_path / "out"),
                      tasks=task, seeds=[0], stages={"base": base, "tuned": tuned},
                      runtime={"threads": 1})  # fmt: skip


def attempts(out: Path, run_id: str) -> int:
    path = out / "runs" / run_id / ATTEMPTS
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_failed_run_stays_failed_until_retried(tmp_path, corpus, capsys, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder\n")  # every run's token cache write fails
    monkeypatch.setenv("SCALELAB_HOME", str(home))
    spec = two_stage_spec(tmp_path, corpus)
    base, tuned = expand(load_spec(spec))
    out, store = tmp_path / "out", ResultsStore(tmp_path / "out" / "results.sqlite")
    error_file = out / "runs" / base.run_id / "error.txt"

    code, stdout, _ = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 1 and "0 done, 1 failed, 0 already done, 1 skipped" in stdout
    (row,) = store.table().to_dict("records")
    assert row["error"].startswith("FileExistsError") and str(home) in row["error"]
    assert row["error"].endswith(f"(see runs/{base.run_id}/error.txt)")
    assert "Traceback" in error_file.read_text()

    home.unlink()  # the cause is gone, but a plain rerun leaves the failure as it is
    code, stdout, err = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 1 and attempts(out, base.run_id) == 1
    name = labels([base, tuned])[base.run_id]  # with its stage and the fields that vary
    assert name.startswith(f"{base.run_id[:8]} gpt-d1 pretrain seed=0 stage=base")
    assert f"failed  {name}  before: {row['error']}" in stdout
    assert (
        "0 done, 0 failed, 0 already done, 1 skipped (failed dependency), 1 failed before" in stdout
    )
    progress = " ".join(err.split())  # the progress lines (stderr), unwrapped
    assert f"skipped {tuned.run_id[:8]}" in progress
    assert f"dependency {base.run_id[:8]} failed" in progress
    assert store.table().to_dict("records") == [row]  # the stored row is untouched

    code, stdout, _ = cli("run", spec, "--dry-run", capsys=capsys)
    lines = stdout.strip().splitlines()
    assert lines[0].split()[1] == "failed" and lines[1].split()[1] == "blocked"
    assert lines[0].endswith(f"(see {out / 'runs' / base.run_id / 'error.txt'})")
    assert f"(dependency {base.run_id[:8]} failed)" in lines[1]
    assert lines[-1] == (
        "2 runs: 0 done, 0 to run (1 failed, 1 blocked by a failed dependency; "
        "--retry-failed reruns them)"
    )
    code, stdout, _ = cli("run", spec, "--dry-run", "--retry-failed", capsys=capsys)
    assert stdout.strip().splitlines()[-1] == (
        "2 runs: 0 done, 2 to run (1 failed, 1 blocked by a failed dependency)"
    )

    code, stdout, err = cli("run", spec, "--quiet", "--retry-failed", capsys=capsys)
    assert code == 0 and "2 done, 0 failed, 0 already done" in stdout, err
    assert store.statuses() == {base.run_id: "done", tuned.run_id: "done"}
    assert attempts(out, base.run_id) == 2 and attempts(out, tuned.run_id) == 1
    assert not error_file.exists()  # the failure it described is gone
    code, stdout, _ = cli("run", spec, "--quiet", "--retry-failed", capsys=capsys)
    assert code == 0 and "0 done, 0 failed, 2 already done" in stdout  # done stays done
