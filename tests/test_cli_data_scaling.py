"""`scalelab data-scaling EXP` and the report's section on a real tiny experiment: a random
2-layer BERT fine-tuned on train_size subsamples and k-per-class draws of a 3-class table."""

from __future__ import annotations

import json
import re

import pytest
from helpers import cli, save_tiny, write_dataset, write_spec

from scalelab.grid.api import open_experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_scaling")
    bert, data = save_tiny(root / "bert", "bert"), write_dataset(root / "d.jsonl", n=90)
    task = {"dataset": str(data), "kind": "classification", "max_length": 16}
    spec = write_spec(root / "exp.yaml", name="ds", output_dir=str(root / "out"),
                      models=[str(bert)], methods="full", seeds=[0],
                      tasks=[{**task, "train_size": [12, 24, 48, 72]},
                             {**task, "k_per_class": [1, 4], "draw": [0, 1]}],
                      params={"epochs": 2, "batch_size": 8, "lr": 1e-3},
                      runtime={"threads": 1})  # fmt: skip
    code, out, err = cli("data-scaling", spec)
    assert code == 2  # nothing stored yet
    assert cli("run", spec, "--quiet")[0] == 0
    return spec


def test_runs_train_on_their_draw_and_report_how_many_examples(experiment):
    runs, _ = open_experiment(experiment).tables()
    assert (runs["status"] == "done").all() and len(runs) == 8
    shots = runs[runs["task.k_per_class"].notna()]
    assert sorted(shots["train_examples"]) == [3, 3, 12, 12]  # k x 3 classes
    assert shots["run_id"].nunique() == 4  # each draw is its own run
    sized = runs[runs["task.train_size"].notna()]
    assert sorted(sized["train_examples"]) == [12, 24, 48, 72]


def test_the_command_prints_means_the_law_and_n_star(experiment, capsys):
    code, out, err = cli("data-scaling", experiment, "--bootstrap", "20", capsys=capsys)
    assert code == 0, err
    assert out.startswith("test_accuracy (higher is better) vs labelled training examples n")
    assert re.search(r"n +3: [01]\.\d{4} .*\(2 runs: 1 seed x 2 draws, k per class\)", out)
    assert "law: 1 - test_accuracy = A n^-alpha + E: alpha " in out
    assert "diminishing returns: doubling gains < 0.01 from n* = " in out
    code, out, _ = cli("data-scaling", experiment, "--format", "json", "--min-gain", "0.05",
                       "--bootstrap", "20", capsys=capsys)  # fmt: skip
    doc = json.loads(out)
    curve = doc["curves"][0]
    assert doc["metric"] == "test_accuracy" and doc["min_gain"] == 0.05
    assert [p["n"] for p in curve["points"]] == [3, 12, 24, 48, 72]
    assert curve["diminishing_returns"]["where"] in ("within", "beyond", "below")
    assert isinstance(curve["fit"]["flags"], list)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--metric", "nope"], "error: no metric 'nope' in the results (have: "),
        (["--metric", "train_examples"], "--metric train_examples: not a quality metric"),
        (["--min-gain", "0"], "--min-gain must be a positive number"),
        (["--format", "xml"], "--format"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(experiment, capsys, args, message):
    code, out, err = cli("data-scaling", experiment, *args, capsys=capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and not out, err


def test_the_report_has_the_section(experiment, tmp_path, capsys):
    out = tmp_path / "rep"
    code, _, err = cli("report", experiment, "--out", out, "--bootstrap", "20", capsys=capsys)
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "<h2>Data scaling: accuracy vs labelled examples</h2>" in page
    assert 'alt="data_scaling"' in page and (out / "data_scaling.png").is_file()
    assert "Labels vs parameters" in page
