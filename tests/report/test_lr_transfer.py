"""The learning-rate transfer figure and report section on a synthetic lr sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalelab.report.build import ReportSpec, build_report
from scalelab.report.lr_transfer import best_lrs, lr_table, lr_transfer_section, plot_lr_transfer

LRS = (1e-3, 3e-3, 1e-2, 3e-2)
WIDTHS = (32, 64, 128, 256)


def sweep() -> pd.DataFrame:
    """A parabola in log lr per width: its optimum fixed at 1e-2 under muP, halving per
    width doubling under standard; wider models are better. Standard rows leave
    params.parametrization empty (runs from before the column)."""
    rows = []
    for par in ("standard", "mup"):
        for i, w in enumerate(WIDTHS):
            best = 1e-2 if par == "mup" else 3e-2 / 3**i
            for lr in LRS:
                loss = 3.0 - 0.1 * i + 0.2 * np.log10(lr / best) ** 2
                rows.append({"run_id": f"{par}{w}-{lr}", "method": "pretrain",
                             "model": f"gpt-d2w{w}", "non_embedding_params": 24 * w * w,
                             "params.lr": lr, "val_loss": loss,
                             "params.parametrization": None if par == "standard" else par})  # fmt: skip
    return pd.DataFrame(rows)


def test_best_lr_per_model_stays_under_mup_and_drifts_under_standard():
    t = lr_table(sweep())
    assert set(t["parametrization"]) == {"standard", "mup"} and len(t) == 2 * 4 * 4
    best = best_lrs(t).set_index(["parametrization", "model"])["lr"]
    assert [best["mup", f"gpt-d2w{w}"] for w in WIDTHS] == [1e-2] * 4
    assert [best["standard", f"gpt-d2w{w}"] for w in WIDTHS] == [3e-2, 1e-2, 3e-3, 1e-3]


def test_the_figure_and_section_are_written(tmp_path):
    png = plot_lr_transfer(sweep(), tmp_path / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = lr_transfer_section(sweep(), tmp_path, "s_")
    assert (tmp_path / "s_lr_transfer.png").is_file() and body.count("<img") == 1
    assert "mup: best lr varies 1x" in body and "standard: best lr varies 30x" in body


def test_no_section_without_an_lr_sweep_or_without_several_models(tmp_path):
    runs = sweep()
    one_lr = runs[runs["params.lr"] == 1e-2]
    one_model = runs[runs["model"] == "gpt-d2w64"]
    assert lr_transfer_section(one_lr, tmp_path) == ""
    assert lr_transfer_section(one_model, tmp_path) == ""
    assert lr_transfer_section(runs.drop(columns="params.lr"), tmp_path) == ""
    assert not (tmp_path / "lr_transfer.png").exists()


def test_the_report_has_the_section_when_the_runs_sweep_lr(tmp_path):
    page = build_report(sweep(), None, tmp_path / "r", ReportSpec(bootstrap=0)).read_text()
    assert "<h2>Learning-rate transfer</h2>" in page
    plain = sweep()[lambda d: d["params.lr"] == 1e-2]
    page = build_report(plain, None, tmp_path / "p", ReportSpec(bootstrap=0)).read_text()
    assert "Learning-rate transfer" not in page
