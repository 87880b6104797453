from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from scalelab.analysis import laws
from scalelab.cli import analysis, report
from scalelab.errors import ScalelabError

DATA = Path(__file__).resolve().parent / "analysis" / "data"  # published tables, in the repo


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    analysis.register(app)
    report.register(app)
    return app


@pytest.fixture
def runs_csv(tmp_path) -> Path:
    n = np.geomspace(1e6, 1e9, 10)
    df = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(10)],
            "non_embedding_params": n,
            "tokens": 20 * n,
            "val_loss": laws.power_law(n, {"E": 2, "A": 300, "alpha": 0.3}),
            "method": ["a", "b"] * 5,
        }
    )
    df.loc[0, "val_loss"] = np.nan
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    return path


def invoke(app, args):
    return CliRunner().invoke(app, args, catch_exceptions=True)


def test_fit_power_json(app, runs_csv):
    r = invoke(
        app,
        [
            "fit",
            str(runs_csv),
            "--law",
            "power",
            "--x",
            "non_embedding_params",
            "--y",
            "val_loss",
            "--bootstrap",
            "30",
            "--holdout",
            "2",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    (obj,) = json.loads(r.output)
    assert obj["E"] == pytest.approx(2.0, rel=1e-3) and obj["alpha"] == pytest.approx(0.3, rel=1e-3)
    assert obj["n_points"] == 9 and obj["group"] is None
    assert set(obj["ci"]) == {"E", "A", "alpha"} and obj["holdout"]["k"] == 2
    assert any("dropped 1" in n for n in obj["notes"])


def test_fit_grouped_table_with_target(app, runs_csv):
    r = invoke(
        app,
        [
            "fit",
            str(runs_csv),
            "--law",
            "power",
            "--x",
            "non_embedding_params",
            "--y",
            "val_loss",
            "--group",
            "method",
            "--target",
            "2.5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "[a] power" in r.output and "[b] power" in r.output
    assert "smallest x reaching 2.5" in r.output


def test_fit_bad_input_raises_one_line_error(app, runs_csv, tmp_path):
    r = invoke(app, ["fit", str(runs_csv), "--law", "power", "--x", "nope", "--y", "val_loss"])
    assert isinstance(r.exception, ScalelabError) and "'nope'" in str(r.exception)
    r = invoke(app, ["fit", str(tmp_path / "x.csv"), "--law", "power", "--x", "a", "--y", "b"])
    assert isinstance(r.exception, ScalelabError) and "x.csv" in str(r.exception)
    r = invoke(app, ["fit", str(runs_csv), "--law", "cubic", "--x", "a", "--y", "b"])
    assert isinstance(r.exception, ScalelabError)
    r = invoke(
        app,
        [
            "fit",
            str(runs_csv),
            "--law",
            "power",
            "--x",
            "non_embedding_params",
            "--y",
            "val_loss",
            "--target",
            "1.0",
        ],
    )
    assert isinstance(r.exception, ScalelabError) and "unreachable" in str(r.exception)


def test_an_accuracy_target_outside_0_1_names_the_target_not_the_column(app):
    args = ["fit", str(DATA / "llm_line_tasks.csv"), "--law", "power", "--x", "Size", "--y",
            "HellaSwag Accuracy", "--higher-is-better", "--target", "1.5"]  # fmt: skip
    r = invoke(app, args)
    msg = str(r.exception)
    assert isinstance(r.exception, ScalelabError) and msg.startswith("--target 1.5:"), msg
    assert "[0, 1]" in msg and "HellaSwag" not in msg


def test_report_from_csv(app, runs_csv, tmp_path):
    out = tmp_path / "rep"
    r = invoke(app, ["report", "--csv", str(runs_csv), "--out", str(out), "--bootstrap", "20"])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").is_file() and (out / "scaling.png").is_file()


def test_report_needs_exp_or_csv(app):
    r = invoke(app, ["report"])
    assert isinstance(r.exception, ScalelabError)


def test_fit_chinchilla_cli(app):
    path = DATA / "chinchilla_svg_extracted_data.csv"
    r = invoke(
        app,
        [
            "fit",
            str(path),
            "--law",
            "chinchilla",
            "--x",
            "Model Size",
            "--x2",
            "Training FLOP",
            "--x2-is-compute",
            "--y",
            "loss",
            "--drop-top-loss",
            "5",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    (obj,) = json.loads(r.output)
    assert obj["E"] == pytest.approx(1.8172, rel=0.005)
    assert obj["compute_optimal"]["N_opt_exponent"] == pytest.approx(0.514, abs=0.005)


def test_fit_target_past_the_data_says_how_far(app, runs_csv):
    # L = 2 + 300 N^-0.3 reaches 2.3 at N = 1000^(1/0.3) = 1e10: 10x the largest N (1e9)
    args = ["fit", str(runs_csv), "--law", "power", "--x", "non_embedding_params",
            "--y", "val_loss", "--target", "2.3"]  # fmt: skip
    r = invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "an extrapolation: 10x beyond the largest size in the data (1e+09)" in r.output
    r = invoke(app, [*args, "--format", "json"])
    small = json.loads(r.output)[0]["smallest"]
    assert small["beyond_data"] == pytest.approx(10, rel=1e-3) and small["data_max"] == 1e9
    # inside the data: no extrapolation warning
    r = invoke(app, [*args[:-1], "2.7"])
    assert r.exit_code == 0 and "extrapolation" not in r.output


def test_an_infinite_interval_end_says_the_data_do_not_bound_it():
    from scalelab.analysis.smallest import SmallestN

    s = SmallestN(2.0, 4.68e7, 8.0e6, float("inf"), 0.9, data_min=1e4, data_max=7.9e5)
    text = " ".join(s.validity())
    assert "59.2x beyond the largest size in the data (7.9e+05)" in text
    assert "upper end is infinite: the data do not bound it (10% of bootstrap refits" in text
