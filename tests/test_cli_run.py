"""End to end through the CLI: grid, store, skip-on-rerun, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import cli, tiny_lm_spec, write_spec

from scalelab.grid.store import ResultsStore

METRICS = [
    "non_embedding_params",
    "total_params",
    "tokens",
    "train_loss",
    "val_loss",
    "val_ppl",
    "test_loss",
    "test_ppl",
    "bits_per_byte",
    "tokens_per_s",
    "peak_mem_mb",
    "wall_s",
]


def test_grid_runs_stores_and_skips_on_rerun(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, tmp_path / "out")
    code, out, _ = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0 and "3 done, 0 failed" in out

    table = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    assert len(table) == 3 and set(table["status"]) == {"done"}
    assert all(m in table.columns for m in METRICS)
    assert table["run_id"].is_unique and table["git_commit"].notna().all()
    assert "torch" in json.loads(table["versions"][0])
    # Bigger model, lower loss even after 30 steps on this corpus; params counted exactly.
    by_n = table.sort_values("non_embedding_params")
    assert list(by_n["model"]) == ["gpt-d1", "gpt-20k", "gpt-d2"]
    assert by_n["val_loss"].is_monotonic_decreasing
    assert (table["tokens"] == 8 * 32 * 30).all()

    code, out, _ = cli("results", spec, "--format", "json", capsys=capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and rows[0]["params.lr"] == 3e-3

    model_file = tmp_path / "out" / "runs" / rows[0]["run_id"] / "model" / "model.safetensors"
    mtime = model_file.stat().st_mtime_ns
    code, out, _ = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0 and "0 done, 0 failed, 3 already done" in out
    assert model_file.stat().st_mtime_ns == mtime  # nothing retrained

    code, out, _ = cli("run", spec, "--dry-run", capsys=capsys)
    assert out.count("done  ") == 3 and "3 runs: 3 done, 0 to run" in out

    code, out, _ = cli("results", spec, "--format", "csv", capsys=capsys)
    assert out.splitlines()[0].startswith("run_id,experiment,stage,status,model,method,seed,task.")
    assert len(out.strip().splitlines()) == 4


def test_force_reruns_and_results_are_reproducible(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, tmp_path / "out", models=["gpt-d1"])
    cli("run", spec, "--quiet")
    before = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    code, out, _ = cli("run", spec, "--quiet", "--force", capsys=capsys)
    after = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    assert "1 done" in out and len(after) == 1
    assert after["val_loss"][0] == pytest.approx(before["val_loss"][0], abs=1e-6)


def test_failed_run_is_recorded_and_others_go_on_in_parallel(tmp_path, corpus, capsys):
    short = tmp_path / "short"
    short.mkdir()
    for split in ("train", "valid", "test"):
        (short / f"{split}.txt").write_text(
            "x" * 31 + "\n"
        )  # seq_len bytes, one token short of a window
    spec = tiny_lm_spec(
        tmp_path / "exp.yaml",
        corpus,
        tmp_path / "out",
        models=["gpt-d1"],
        tasks=[
            {
                "dataset": str(corpus),
                "kind": "lm",
                "seq_len": 32,
                "tokenizer": {"kind": "byte"},
                "eval": {"max_tokens": 500},
            },
            {"dataset": str(short), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"}},
        ],
    )
    code, out, _ = cli("run", spec, "--quiet", "--workers", "2", capsys=capsys)
    assert code == 1 and "1 done, 1 failed" in out
    table = ResultsStore(tmp_path / "out" / "results.sqlite").table()
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1 and "at least one window" in failed["error"].iloc[0]


@pytest.mark.slow  # proved in the default run by test_cli_dag.py::test_sigkill_mid_teacher_then_resume
def test_sigkill_mid_training_resumes_to_identical_metrics(tmp_path, corpus):
    params = {"tokens": 8 * 32 * 150, "batch_size": 8, "lr": 3e-3, "eval_every": 25}
    runtime = {"threads": 1, "checkpoint_every_steps": 10}
    killed = tiny_lm_spec(
        tmp_path / "a.yaml",
        corpus,
        tmp_path / "a",
        models=["gpt-d2"],
        params=params,
        runtime=runtime,
    )
    clean = tiny_lm_spec(
        tmp_path / "b.yaml",
        corpus,
        tmp_path / "b",
        models=["gpt-d2"],
        params=params,
        runtime=runtime,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalelab.cli", "run", str(killed), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "a" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and not list(runs.glob("*/checkpoint/state.json")):
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(next(runs.glob("*/checkpoint/state.json")).read_text())
    assert 0 < state["step"] < 150
    assert ResultsStore(tmp_path / "a" / "results.sqlite").table().empty  # no half row

    assert (
        "resumable"
        in subprocess.run(
            [sys.executable, "-m", "scalelab.cli", "run", str(killed), "--dry-run"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert cli("run", killed, "--quiet")[0] == 0
    assert cli("run", clean, "--quiet")[0] == 0
    a = ResultsStore(tmp_path / "a" / "results.sqlite").table().iloc[0]
    b = ResultsStore(tmp_path / "b" / "results.sqlite").table().iloc[0]
    assert a["run_id"] == b["run_id"]
    for m in ("train_loss", "val_loss", "test_loss", "bits_per_byte"):
        assert a[m] == pytest.approx(b[m], rel=1e-6), m
    ca = ResultsStore(tmp_path / "a" / "results.sqlite").curves()
    cb = ResultsStore(tmp_path / "b" / "results.sqlite").curves()
    va, vb = (c[c["val_loss"].notna()] for c in (ca, cb))
    assert list(va["step"]) == list(vb["step"]) == [0, 25, 50, 75, 100, 125, 150]
    assert va["val_loss"].tolist() == pytest.approx(vb["val_loss"].tolist(), rel=1e-6)
    # the monitor points (every 10 steps by default) survive the kill and resume too
    assert list(ca["step"]) == list(cb["step"]) and 10 in list(ca["step"])
    assert ca["grad_norm"].tolist() == pytest.approx(
        cb["grad_norm"].tolist(), rel=1e-5, nan_ok=True
    )


BAD = {
    "malformed": ("name: x\nmodels: [gpt-d1\n", "invalid YAML at line"),
    "unknown_key": (dict(colour="red"), "colour: unknown key"),
    "negative": (dict(params={"tokens": -5}), "params.tokens: Input should be greater than 0"),
    "budget": (dict(params={"tokens": 100, "batch_size": 8}), "smaller than one batch"),
    "dataset": (dict(tasks={"dataset": "no-such-data"}), "unknown dataset 'no-such-data'"),
    "model": (dict(models=["gpt-x9"]), "unknown model 'gpt-x9'"),
    "type": (dict(seeds=["zero"]), "seeds.0"),
    "method": (dict(methods="distil-magic"), "unknown method 'distil-magic'"),
    "kind": (dict(tasks={"dataset": "wikitext2", "seq_len": 0}), "tasks[0].seq_len"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, corpus, capsys, case):
    change, message = BAD[case]
    spec = tmp_path / "exp.yaml"
    if isinstance(change, str):
        spec.write_text(change)
    else:
        tiny_lm_spec(spec, corpus, tmp_path / "out", **change)
    code, out, err = cli("run", spec, capsys=capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_unreadable_spec_file(tmp_path, capsys):
    code, _, err = cli("run", tmp_path / "missing.yaml", capsys=capsys)
    assert code == 2 and "missing.yaml" in err and err.count("\n") == 1


def test_unreadable_dataset_file_fails_cleanly(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "exp.yaml",
        name="x",
        output_dir=str(tmp_path / "out"),
        models="gpt-d1",
        methods="pretrain",
        params={"tokens": 10000},
        tasks={"dataset": str(tmp_path / "nope.txt"), "kind": "lm"},
    )
    code, _, err = cli("run", spec, capsys=capsys)
    assert code == 2 and "nope.txt" in err


def test_sigkill_of_the_parent_stops_its_workers(tmp_path, corpus):
    import psutil

    params = {"tokens": 8 * 32 * 2000, "batch_size": 8, "lr": 3e-3}
    spec = tiny_lm_spec(
        tmp_path / "a.yaml",
        corpus,
        tmp_path / "a",
        models=["gpt-d1", "gpt-d2"],
        params=params,
        runtime={"threads": 1, "checkpoint_every_steps": 10},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalelab.cli", "run", str(spec), "--quiet", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "a" / "runs"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(runs.glob("*/checkpoint/state.json"))) < 2:
        time.sleep(0.1)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    described = [" ".join(p.cmdline())[-120:] for p in alive]
    for p in alive:
        p.kill()
    assert not alive, described


def test_a_saved_run_folder_is_a_model_name(tmp_path, corpus, capsys):
    """Local folders go through from_pretrained, like Hub ids: continue pretraining one."""
    first = tiny_lm_spec(tmp_path / "a.yaml", corpus, tmp_path / "a", models=["gpt-d1"])
    assert cli("run", first, "--quiet")[0] == 0
    base = ResultsStore(tmp_path / "a" / "results.sqlite").table().iloc[0]
    folder = tmp_path / "a" / "runs" / base["run_id"] / "model"
    again = tiny_lm_spec(tmp_path / "b.yaml", corpus, tmp_path / "b", models=[str(folder)])
    assert cli("run", again, "--quiet")[0] == 0
    cont = ResultsStore(tmp_path / "b" / "results.sqlite").table().iloc[0]
    assert cont["non_embedding_params"] == base["non_embedding_params"]
    assert cont["val_loss"] < base["val_loss"]  # it started from the trained weights


def test_usage_errors_exit_2_without_a_traceback(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, tmp_path / "out")
    code, _, err = cli("run", spec, "--no-such-flag", capsys=capsys)
    assert code == 2 and "No such option" in err and "Traceback" not in err
    code, _, err = cli("run", spec, "--workers", "0", capsys=capsys)
    assert code == 2 and "--workers" in err
    assert not (tmp_path / "out").exists()


def test_help_prints_bracketed_defaults_as_written(capsys):
    """Help text is plain: "[default: ...]" is not swallowed as rich markup."""
    code, out, _ = cli("run", "--help", capsys=capsys)
    assert code == 0
    assert "[default: the spec's runtime.workers]" in " ".join(out.split())


def test_models_path_prints_a_registered_models_local_file(tmp_path, monkeypatch, capsys):
    from scalelab.models.registry import PRETRAINED, PretrainedEntry

    entry = PretrainedEntry("tiny-gguf", "decoder", 0.1, "test", lambda: tmp_path, "m.gguf")
    monkeypatch.setitem(PRETRAINED._entries, "tiny-gguf", entry)
    code, out, _ = cli("models", "--path", "tiny-gguf", capsys=capsys)
    assert code == 0 and out.strip() == str(tmp_path / "m.gguf")
    code, _, err = cli("models", "--path", "no-such-model", capsys=capsys)
    assert code == 2 and "unknown pretrained model 'no-such-model'" in err


def test_methods_lists_every_method_and_one_method_its_params(capsys):
    code, out, err = cli("methods", capsys=capsys)
    assert code == 0 and "w2s " in out and "metrics: test_accuracy+" in out, err
    code, out, err = cli("methods", "w2s", capsys=capsys)
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "required" in lines["labels"] and "'xent' | 'logconf'" in lines["loss"]
    assert "default 0.5" in lines["aux_coef"] and "default 0.2" in lines["aux_warmup_frac"]
    assert "aux_warmup_frac: fraction of training" in out  # the params' docstring follows
    code, _, err = cli("methods", "w2ss", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown method 'w2ss'" in err


def test_results_table_shows_settings_a_stage_lacks_as_na_and_whole_numbers_as_integers():
    """Two stages of different kinds in one table: `params.tokens` exists for one only, so
    pandas stores it as float with NaN; the summary shows `100000` and `n/a`."""
    import pandas as pd

    from scalelab.builtins import load_builtins
    from scalelab.cli.run import summary_table

    load_builtins()
    table = pd.DataFrame({
        "run_id": ["a" * 16, "b" * 16], "status": ["done", "done"], "stage": ["base", "tuned"],
        "model": ["gpt-d1", "gpt-d1"], "method": ["pretrain", "full"], "seed": [0, 0],
        "params.tokens": [100000.0, float("nan")], "params.lr": [0.003, 0.001],
    })  # fmt: skip
    out = summary_table(table)
    assert list(out["params.tokens"]) == [100000, "n/a"]
    assert str(out["params.tokens"].iloc[0]) == "100000"  # printed without ".0"
    assert list(out["params.lr"]) == [0.003, 0.001]
