"""The report's "Inside training" section: lr schedules, throughput and memory, and a
gradient-norm heat map per run family, drawn from the monitor points in the curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
from helpers import cli, tiny_lm_spec

from scalelab.report import monitor


def test_report_of_a_monitored_experiment_draws_inside_training(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(
        tmp_path / "exp.yaml", corpus, tmp_path / "out", models=["gpt-d1", "gpt-d2"],
        params={"tokens": 8 * 32 * 24, "batch_size": 8, "lr": 3e-3},
        runtime={"monitor_every": 2, "threads": 1},
    )  # fmt: skip
    assert cli("run", spec, "--quiet")[0] == 0
    out = tmp_path / "report"
    code, _, err = cli("report", spec, "--out", out, capsys=capsys)
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "Inside training" in page
    assert page.index("Learning curves") < page.index("Inside training")
    lr, speed = list(out.glob("*lr_schedule.png")), list(out.glob("*throughput_memory.png"))
    heat = list(out.glob("*grad_norm_heatmap_*.png"))
    assert len(lr) == 1 and len(speed) == 1
    assert len(heat) == 1  # one method: one family, its largest model
    for png in lr + speed + heat:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "gpt-d2: L2 norm of each layer" in page  # the largest model's caption
    assert page.count("data:image/png;base64,") == len(list(out.glob("*.png")))


def _curves(run_id: str, layers: list[str], steps=(2, 4, 6)) -> pd.DataFrame:
    rows = [{"run_id": run_id, "step": 0, "tokens": 0, "val_loss": 5.0}]
    for s in steps:
        row = {"run_id": run_id, "step": s, "tokens": 64 * s, "lr/0": 1e-3 / s,
               "tokens_per_s": 1000.0 + s, "mem/rss_mb": 400.0 + s}  # fmt: skip
        row |= {f"grad_norm/{la}": float(i + 1) * s for i, la in enumerate(layers)}
        rows.append(row)
    return pd.DataFrame(rows)


def test_heatmap_rows_are_in_model_order_and_gaps_stay_blank(tmp_path):
    shuffled = ["head", "block.10", "other", "block.9", "embed", "block.2"]
    cur = _curves("r", shuffled)
    cur.loc[cur["step"] == 4, "grad_norm/block.10"] = np.nan
    layers, steps, values = monitor.grad_norm_grid(cur)
    assert layers == ["embed", "block.2", "block.9", "block.10", "head", "other"]
    assert list(steps) == [2, 4, 6]  # step 0 (no monitor point) is not a column
    assert values.shape == (6, 3)
    assert np.isnan(values[3, 1]) and values[3, 0] == 2 * 2  # block.10 is 2nd in `shuffled`
    assert values[0, 2] == 5 * 6  # embed is 5th in `shuffled`
    png = monitor.plot_grad_norm_heatmap(cur, tmp_path / "h.png", "t")
    assert png.stat().st_size > 5_000


def test_layer_rank_sorts_blocks_numerically():
    names = ["block.10", "block.1", "head", "block.9", "embed", "other"]
    assert sorted(names, key=monitor.layer_rank) == [
        "embed", "block.1", "block.9", "block.10", "head", "other"
    ]  # fmt: skip


def test_section_is_empty_without_monitor_columns(tmp_path):
    runs = pd.DataFrame({"run_id": ["a"], "model": ["gpt-d1"], "method": ["pretrain"]})
    cur = pd.DataFrame({"run_id": ["a", "a"], "step": [0, 10], "tokens": [0, 640],
                        "val_loss": [5.0, 4.0], "train_loss": [np.nan, 4.2]})  # fmt: skip
    assert monitor.monitor_section(runs, cur, tmp_path, "x_") == ""
    assert monitor.monitor_section(runs, None, tmp_path, "x_") == ""
    assert not list(tmp_path.glob("*.png"))


def test_one_heatmap_per_family_for_its_largest_model_lowest_seed(tmp_path):
    runs = pd.DataFrame({
        "run_id": ["s0", "b1", "b0", "l0", "n0"],
        "model": ["small", "big", "big", "big", "big"],
        "method": ["pretrain", "pretrain", "pretrain", "lora", "nomon"],
        "seed": [0, 1, 0, 0, 0],
        "non_embedding_params": [10, 100, 100, 100, 100],
    })  # fmt: skip
    cur = pd.concat([_curves(r, ["embed", "block.0", "head"]) for r in ["s0", "b1", "b0", "l0"]]
                    + [_curves("n0", [])])  # fmt: skip
    assert monitor.heatmap_runs(runs, cur) == ["b0", "l0"]  # "nomon" has no layer norms
    body = monitor.monitor_section(runs, cur, tmp_path, "p_", {"big": "Big-1"})
    assert body.count("<figure>") == 4  # lr, throughput/memory, two heat maps
    assert "Big-1 lora" in body and "Big-1 pretrain seed=0" in body
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "p_grad_norm_heatmap_0.png", "p_grad_norm_heatmap_1.png", "p_lr_schedule.png",
        "p_throughput_memory.png",
    ]  # fmt: skip
