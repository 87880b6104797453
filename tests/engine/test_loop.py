"""The training engine: accumulation, schedules, divergence, params identity."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import cli, tiny_lm_spec

from scalelab.engine.args import identity
from scalelab.engine.loop import split_batch
from scalelab.engine.schedules import cosine, linear
from scalelab.grid.store import ResultsStore
from scalelab.methods.finetune import FullParams
from scalelab.methods.pretrain import PretrainParams


def _run(tmp_path, corpus, name, capsys, **params):
    base = {"tokens": 8 * 32 * 30, "batch_size": 8, "lr": 3e-3, "eval_every": 10}
    spec = tiny_lm_spec(tmp_path / f"{name}.yaml", corpus, tmp_path / name,
                        models=["gpt-d1"], params={**base, **params})  # fmt: skip
    code, out, _ = cli("run", spec, "--quiet", capsys=capsys)
    return code, out, ResultsStore(tmp_path / name / "results.sqlite").table().iloc[0]


def test_gradient_accumulation_equals_the_full_batch_step(tmp_path, corpus, capsys):
    _, _, one = _run(tmp_path, corpus, "one", capsys)
    _, _, four = _run(tmp_path, corpus, "four", capsys, grad_accum_steps=4)
    assert one["run_id"] != four["run_id"]  # a changed setting is a different run
    assert four["steps"] == one["steps"] == 30 and four["tokens"] == one["tokens"]
    for m in ("train_loss", "val_loss", "test_loss"):  # 4 micro-batches of 2 == 1 batch of 8
        assert four[m] == pytest.approx(one[m], rel=1e-5), m


def test_a_diverged_run_is_failed_not_done(tmp_path, corpus, capsys):
    code, out, row = _run(tmp_path, corpus, "nan", capsys, lr=1e30, grad_clip=0)
    assert code == 1 and row["status"] == "failed"
    assert "training diverged" in row["error"]


def test_new_shared_fields_keep_old_run_ids_at_their_defaults():
    p = PretrainParams(tokens=1000)
    ident = identity(p)
    assert "grad_accum_steps" not in ident and "schedule" not in ident
    assert ident["beta2"] == 0.95  # fields that were always part of the id stay in it
    assert "grad_accum_steps" in identity(PretrainParams(tokens=1000, grad_accum_steps=2))
    assert "beta1" not in identity(FullParams()) and "beta1" in identity(FullParams(beta1=0.8))


def test_schedules_warm_up_then_decay():
    lrs = [cosine(s, 100, 1.0, 0.1, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and max(lrs) == pytest.approx(1.0)
    lin = [linear(s, 10, 2.0, 0.2, 0.0) for s in range(10)]
    assert lin[:2] == [1.0, 2.0] and lin[-1] == pytest.approx(2.0 / 8)
    assert all(math.isfinite(v) for v in lrs + lin)


def test_wsd_holds_the_peak_then_cools_down_to_zero_in_either_shape():
    from scalelab.engine.args import TrainArgs, identity
    from scalelab.engine.schedules import lr_at, wsd

    # 10 steps, 1 warmup step, cooldown 40%: steps 6..9 cool down with x = 1/4 .. 4/4
    sq = [wsd(s, 10, 2.0, 0.1, 0.0, 0.4, "1-sqrt") for s in range(10)]
    assert sq[:6] == [2.0] * 6  # warmup of 1 step reaches the peak at once, then stable
    assert sq[6:] == pytest.approx([2 * (1 - math.sqrt(k / 4)) for k in (1, 2, 3, 4)])
    assert sq[6] == pytest.approx(1.0) and sq[-1] == 0.0
    lin = [wsd(s, 10, 2.0, 0.0, 0.0, 0.4, "linear") for s in range(10)]
    assert lin[6:] == pytest.approx([1.5, 1.0, 0.5, 0.0])
    args = TrainArgs(schedule="wsd", cooldown_frac=0.4, cooldown_shape="linear", lr=2.0)
    assert [lr_at(args, s, 10, 2.0) for s in range(10)] == pytest.approx(lin)
    # new fields at their defaults stay out of run ids (stored runs keep theirs)
    assert "cooldown_frac" not in identity(TrainArgs())
    assert identity(args)["cooldown_shape"] == "linear"


def test_split_batch_cuts_nested_batches_consecutively():
    import numpy as np
    import torch

    x = torch.arange(10).view(5, 2)
    parts = split_batch((x, {"i": np.arange(5)}), 2)
    assert [p[0].shape[0] for p in parts] == [2, 3]
    assert parts[1][1]["i"].tolist() == [2, 3, 4]
    with pytest.raises(Exception, match="cannot be split"):
        split_batch(torch.zeros(1, 3), 2)


def test_each_row_records_the_threads_and_device_it_ran_with(tmp_path, corpus, capsys):
    """Thread count is how a run executes, not what it computes (same run id), but it can
    move results at rounding level, so the row says which one it ran with."""
    import json

    rows = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        spec = tiny_lm_spec(tmp_path / f"t{threads}.yaml", corpus, out, models=["gpt-d1"],
                            params={"tokens": 8 * 32 * 5, "batch_size": 8},
                            runtime={"threads": threads, "device": "cpu"})  # fmt: skip
        assert cli("run", spec, "--quiet", capsys=capsys)[0] == 0
        rows.append(ResultsStore(out / "results.sqlite").table().iloc[0])
    assert rows[0]["run_id"] == rows[1]["run_id"]
    for threads, row in zip((1, 2), rows, strict=True):
        assert json.loads(row["runtime"]) == {"device": "cpu", "threads": threads, "processes": 1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pretraining_on_cuda_in_every_precision(tmp_path, corpus, capsys):
    """fp32, bf16 autocast, and fp16 autocast with loss scaling all train on the GPU and end
    near each other; the row says cuda and peak memory is the GPU's (allocated tensors)."""
    import json

    from scalelab.engine.precision import grad_scaler

    gpu = torch.device("cuda")
    assert grad_scaler("fp16", gpu).is_enabled() and not grad_scaler("bf16", gpu).is_enabled()
    params = {"tokens": 8 * 32 * 60, "batch_size": 8, "lr": 3e-3, "eval_every": 20,
              "dtype": ["fp32", "bf16", "fp16"]}  # fmt: skip
    spec = tiny_lm_spec(tmp_path / "p.yaml", corpus, tmp_path / "p", models=["gpt-d1"],
                        params=params, runtime={"device": "cuda"})  # fmt: skip
    code, out, _ = cli("run", spec, "--quiet", capsys=capsys)
    assert code == 0 and "3 done" in out, out
    table = ResultsStore(tmp_path / "p" / "results.sqlite").table()
    by = {r["params.dtype"]: r for _, r in table.iterrows()}
    for dtype, row in by.items():
        assert json.loads(row["runtime"])["device"] == "cuda", dtype
        assert row["val_loss"] < 4.0, dtype  # uniform over 257 bytes is 5.55
        assert row["val_loss"] == pytest.approx(by["fp32"]["val_loss"], abs=0.1), dtype
        assert 0 < row["peak_mem_mb"] < 1024, dtype  # torch.cuda.max_memory_allocated
