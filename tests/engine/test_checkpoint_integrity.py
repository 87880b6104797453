"""Checkpoints are verified before a run resumes from them.

A checkpoint whose bytes changed, whose weights are NaN or whose step lies past the end of
the run is set aside (renamed `checkpoint.bad-<time>`, never deleted), named in one warning
line, and the run resumes from the previous good checkpoint or from scratch, ending with the
metrics of an uninterrupted run. The checkpoints come from a real run SIGKILLed through the
CLI; the damage is done to its files the way a disk, a bug or a hand would.
"""

from __future__ import annotations

import _thread
import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import cli, tiny_lm_spec
from safetensors.torch import load_file, save_file

from scalelab.engine.checkpoint import load_checkpoint, save_checkpoint, save_pretrained_atomic
from scalelab.grid.spec import expand, load_spec
from scalelab.grid.store import ResultsStore
from scalelab.io import temp_prefix

STEPS = 60
PARAMS = {"tokens": 8 * 32 * STEPS, "batch_size": 8, "lr": 3e-3, "eval_every": 20}
RUNTIME = {"threads": 1, "checkpoint_every_steps": 10}
COMPARED = ("train_loss", "val_loss", "test_loss", "bits_per_byte", "steps")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus):
    """(spec, run id, output of an uninterrupted run, output of a run interrupted (Ctrl-C)
    once it had two checkpoints: `checkpoint` and `checkpoint.prev`)."""
    root = tmp_path_factory.mktemp("integrity")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALELAB_HOME", str(root / "home"))
        spec = tiny_lm_spec(root / "s.yaml", corpus, root / "unused", models=["gpt-d1"],
                            params=PARAMS, runtime=RUNTIME)  # fmt: skip
        (run,) = expand(load_spec(spec))
        killed = root / "killed"
        run_dir = killed / "runs" / run.run_id
        # Python ignores SIGINT when started with it ignored (a background job): restore it.
        handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            watcher = interrupt_when(
                lambda: (run_dir / "checkpoint.prev" / "manifest.json").exists()
            )
            code = cli("run", spec, "--quiet", "--output-dir", killed)[0]
            watcher.join()
        finally:
            signal.signal(signal.SIGINT, handler)
        assert code != 0, "the run ended before it could be interrupted"
        assert cli("run", spec, "--quiet", "--output-dir", root / "clean")[0] == 0
    assert ResultsStore(killed / "results.sqlite").statuses() == {}
    for folder in ("checkpoint", "checkpoint.prev"):
        step = json.loads((run_dir / folder / "state.json").read_text())["step"]
        assert 0 < step < STEPS, (folder, step)
    return spec, run.run_id, root / "clean", killed


def interrupt_when(ready) -> threading.Thread:
    """Ctrl-C for the main thread (a `scalelab run` in this process) once `ready()` holds:
    an interrupted run without paying for a second process's imports."""

    def watch() -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not ready():
            time.sleep(0.005)
        _thread.interrupt_main()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _row(out: Path):
    return ResultsStore(out / "results.sqlite").table().iloc[0]


def _resave(folder: Path, change) -> None:
    """Write `folder`'s checkpoint again through save_checkpoint after `change(tensors,
    state)`: a checkpoint whose digests are right and whose content is wrong."""
    tensors = load_file(str(folder / "model.safetensors"))
    best = load_file(str(folder / "best.safetensors"))
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    state = json.loads((folder / "state.json").read_text())
    change(tensors, state)
    save_checkpoint(folder, tensors, best, optimizer, state)


def intact(run_dir: Path) -> tuple[int, str]:
    """Nothing wrong: resume from the newest checkpoint, silently."""
    return 0, ""


def flip_bytes(run_dir: Path) -> tuple[int, str]:
    """Bit rot in the newest checkpoint's weights: resume from checkpoint.prev."""
    file = run_dir / "checkpoint" / "model.safetensors"
    data = bytearray(file.read_bytes())
    for i in range(len(data) - 64, len(data) - 48):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))
    return 1, "model.safetensors does not match its sha256"


def nan_weights(run_dir: Path) -> tuple[int, str]:
    """A checkpoint written with NaN weights (its digests match): resume from the one
    before, which the rewrite turned into checkpoint.prev."""

    def poison(tensors, state):
        name = sorted(tensors)[0]
        tensors[name] = torch.full_like(tensors[name], float("nan"))

    _resave(run_dir / "checkpoint", poison)
    return 1, "holds NaN or infinite values"


def step_past_end(run_dir: Path) -> tuple[int, str]:
    """Both checkpoints claim a step past the end of the run: start from scratch."""

    def past(tensors, state):
        state["step"] = STEPS + 5

    _resave(run_dir / "checkpoint", past)  # the good one becomes checkpoint.prev ...
    _resave(run_dir / "checkpoint", past)  # ... and is replaced by a bad one in turn
    return 2, f"step {STEPS + 5} lies outside the run's {STEPS} steps"


@pytest.mark.parametrize("damage", [intact, flip_bytes, nan_weights, step_past_end])
def test_a_resumed_run_sets_bad_checkpoints_aside_and_ends_as_a_clean_one(
    tmp_path, runs, damage, capsys
):
    spec, run_id, clean, killed = runs
    out = tmp_path / "out"
    shutil.copytree(killed, out)
    run_dir = out / "runs" / run_id
    n_bad, why = damage(run_dir)
    resumable_step = json.loads((run_dir / "checkpoint.prev" / "state.json").read_text())["step"]

    code, stdout, err = cli("run", spec, "--quiet", "--output-dir", out, capsys=capsys)
    assert code == 0 and "1 done, 0 failed" in stdout, err
    row, ref = _row(out), _row(clean)
    assert row["status"] == "done"
    for m in COMPARED:
        assert row[m] == pytest.approx(ref[m], rel=1e-6), m
    curve = ResultsStore(out / "results.sqlite").curves()
    ref_curve = ResultsStore(clean / "results.sqlite").curves()
    assert list(curve["step"]) == list(ref_curve["step"])  # monitor points: every 10 steps
    curve, ref_curve = (c[c["val_loss"].notna()] for c in (curve, ref_curve))
    assert list(curve["step"]) == list(ref_curve["step"]) == [0, 20, 40, 60]
    assert curve["val_loss"].tolist() == pytest.approx(ref_curve["val_loss"].tolist(), rel=1e-6)

    bad = sorted(run_dir.glob("checkpoint*.bad-*"))
    assert len(bad) == n_bad, bad
    for folder in bad:  # kept whole, with the reason beside it
        assert (folder / "model.safetensors").exists() and (folder / "manifest.json").exists()
        assert why in (folder / "bad-reason.txt").read_text()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == n_bad, err
    then = "starting from scratch" if n_bad == 2 else "resuming from checkpoint.prev at step"
    for line in warnings:
        assert line.startswith(f"warning: run {run_id[:8]} ") and ": checkpoint " in line
        assert why in line and "set aside as" in line
        assert then in line
    if n_bad == 1:
        assert f"at step {resumable_step}" in warnings[0]
    # The finished run leaves no checkpoint and no temp folder; the bad ones stay.
    left = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("checkpoint"))
    assert left == sorted(p.name for p in bad)


def _save(path: Path, step: int, **over) -> None:
    w = torch.arange(6, dtype=torch.float32).view(2, 3) + step
    state = {"step": step, "losses": [1.0] * step, **over}
    save_checkpoint(path, {"w": w}, {}, {"state": {}, "param_groups": []}, state)


def test_load_checks_the_model_shape_and_the_loss_record(tmp_path):
    path = tmp_path / "checkpoint"
    _save(path, 10)
    _save(path, 20)
    warned = []
    loaded = load_checkpoint(path, 50, {"w": (2, 3)}, warn=warned.append)
    assert loaded[3]["step"] == 20 and not warned  # the newest good one

    loaded = load_checkpoint(path, 50, {"w": (3, 2)}, warn=warned.append)
    assert loaded is None and len(warned) == 2  # neither fits this model: from scratch
    assert "w has shape [2, 3], the model's is [3, 2]" in warned[0]
    assert warned[-1].endswith("starting from scratch")
    assert len(list(tmp_path.glob("checkpoint*.bad-*"))) == 2

    _save(path, 5, losses=[1.0, float("nan"), 1.0, 1.0, 1.0])
    warned.clear()
    assert load_checkpoint(path, 50, {"w": (2, 3)}, warn=warned.append) is None
    assert "the loss of step 2 is nan" in warned[0]

    huge = torch.full((2, 3), 3e38)  # finite, though their sum overflows float32
    save_checkpoint(path, {"w": huge}, {}, {}, {"step": 1, "losses": [1.0]})
    assert torch.equal(load_checkpoint(path, 50, {"w": (2, 3)})[0]["w"], huge)


def test_a_checkpoint_from_before_manifests_still_loads(tmp_path):
    """Written by the previous release (no manifest.json): the other checks still apply."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"))
    save_file({}, str(folder / "best.safetensors"))
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    (folder / "state.json").write_text(json.dumps({"step": 3, "losses": [2.0, 1.5, 1.2]}))
    assert load_checkpoint(folder, 10, {"w": (2,)})[3]["step"] == 3
    assert load_checkpoint(folder, 2, {"w": (2,)}) is None  # but not past the end of a run


def test_concurrent_writers_never_collide_and_leave_no_temp_folders(tmp_path):
    from transformers import GPT2Config

    ckpt, model = tmp_path / "checkpoint", tmp_path / "model"
    dead = _dead_pid()
    stale = tmp_path / (temp_prefix(ckpt, dead) + "0badc0de")  # a writer killed mid-write
    live = tmp_path / (temp_prefix(model) + "0000beef")  # a writer still at work
    legacy = tmp_path / (temp_prefix(ckpt, dead)[1:] + "0ldc0de5")  # an older scalelab's name
    stale.mkdir()
    live.mkdir()
    legacy.mkdir()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(15):
                _save(ckpt, i + 1)
                save_pretrained_atomic(model, GPT2Config(n_layer=k + 1),
                                       json_files={"who.json": {"k": k, "i": i}})  # fmt: skip
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert load_checkpoint(ckpt, 50, {"w": (2, 3)})[3]["step"] == 15
    who = json.loads((model / "who.json").read_text())
    assert (
        who["i"] == 14
        and json.loads((model / "config.json").read_text())["n_layer"] == who["k"] + 1
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["checkpoint", "checkpoint.prev", "model", live.name]), names


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
