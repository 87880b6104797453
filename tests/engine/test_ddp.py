"""Data-parallel runs: a 2-process gloo run under torchrun matches a 1-process run."""

from __future__ import annotations

import pytest
import torch
from helpers import cli, tiny_lm_spec

from scalelab.grid.store import ResultsStore


def test_two_process_gloo_run_matches_one_process(tmp_path, corpus, capsys):
    params = {"tokens": 8 * 32 * 40, "batch_size": 8, "lr": 3e-3, "eval_every": 10}
    rows, curves = [], []
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        spec = tiny_lm_spec(tmp_path / f"n{n}.yaml", corpus, out, models=["gpt-d2"],
                            params=params, runtime={"threads": 1, "nproc_per_node": n,
                                                       "device": "cpu", "monitor_every": 5})  # fmt: skip
        code, stdout, _ = cli("run", spec, "--quiet", capsys=capsys)
        assert code == 0, stdout
        store = ResultsStore(out / "results.sqlite")
        rows.append(store.table().iloc[0])
        curves.append(store.curves())
    one, two = rows
    assert one["run_id"] == two["run_id"]  # how a run is scheduled is not part of its identity
    assert one["steps"] == two["steps"] == 40
    # Same global batch (two shards of 4 vs one of 8): equal up to summation order.
    for m in ("train_loss", "val_loss", "test_loss"):
        assert two[m] == pytest.approx(one[m], rel=1e-4), m
    assert list(curves[0]["step"]) == list(curves[1]["step"])
    for a, b in zip(curves[0]["train_loss"], curves[1]["train_loss"], strict=True):
        assert b == pytest.approx(a, rel=1e-4, nan_ok=True)  # step 0: no training loss yet
    # Monitoring under DDP (rank 0, after the all-reduce): the same gradient norms, global
    # and per layer, at the same steps as the one-process run.
    points = [c[c["grad_norm"].notna()].set_index("step") for c in curves]
    assert list(points[0].index) == list(points[1].index) == [5, 10, 15, 20, 25, 30, 35, 40]
    for col in ("grad_norm", "grad_norm/block.1", "weight_norm/head", "lr/0"):
        assert points[1][col].to_numpy() == pytest.approx(points[0][col].to_numpy(), rel=1e-3)
    # only rank 0 wrote the products; the launcher left its log
    run_dir = tmp_path / "n2" / "runs" / two["run_id"]
    assert (run_dir / "model" / "model.safetensors").exists() and (run_dir / "ddp.log").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_more_processes_than_gpus_fails_the_run_with_one_clear_line(tmp_path, corpus, capsys):
    n = torch.cuda.device_count() + 1
    spec = tiny_lm_spec(tmp_path / "x.yaml", corpus, tmp_path / "x", models=["gpt-d1"],
                        runtime={"nproc_per_node": n, "device": "cuda"})  # fmt: skip
    cli("run", spec, "--quiet", capsys=capsys)
    row = ResultsStore(tmp_path / "x" / "results.sqlite").table().iloc[0]
    assert row["status"] == "failed"
    assert f"runtime.nproc_per_node ({n}) exceeds the {n - 1} visible GPU(s)" in row["error"]
