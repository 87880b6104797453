"""The report's task-accuracy section and its identifiability flags."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from scalelab.analysis import laws
from scalelab.cli import main
from scalelab.report.build import ReportSpec, build_report

SIGMOID = {"floor": 0.25, "ceiling": 0.9, "k": 4.0, "L0": 2.0}


def runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = np.geomspace(1e7, 1e9, 10)
    loss = 1.2 + 60 * n**-0.22
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(10)],
            "non_embedding_params": n,
            "val_loss": 2 + 300 * n**-0.3,
            "task_loss": loss,
            "acc": laws.acc_sigmoid(loss, SIGMOID) + 0.005 * rng.standard_normal(10),
            "flat_acc": 0.25 + 0.01 * rng.standard_normal(10),  # a task at chance
        }
    )


def test_task_accuracy_section_with_flags(tmp_path):
    spec = ReportSpec(
        bootstrap=20, task_accuracy=[("task_loss", "acc"), ("task_loss", "flat_acc")], chance=0.25
    )
    html = build_report(runs(), None, tmp_path, spec).read_text()
    assert (tmp_path / "task_accuracy_0.png").is_file()
    assert (tmp_path / "task_accuracy_1.png").is_file()
    assert "identifiability flags" in html and "acc vs task_loss" in html
    # The flat task is flagged in words; the task with signal is fitted (k near 4).
    assert "accuracy does not change with the task loss" in html
    ks = sorted(float(v) for v in re.findall(r"\bk=([0-9.e+-]+)", html))
    assert ks[0] == 0 and 3.6 < ks[1] < 4.4, ks


def test_report_cli_task_accuracy_option(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs().to_csv(path, index=False)
    out = tmp_path / "rep"
    args = ["report", "--csv", str(path), "--out", str(out), "--bootstrap", "10"]
    assert main([*args, "--task-accuracy", "task_loss:acc", "--chance", "0.25"]) == 0
    assert (out / "task_accuracy_0.png").is_file()
    assert main([*args, "--task-accuracy", "task_loss"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --task-accuracy expects")
