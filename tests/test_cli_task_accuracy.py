"""`scalelab fit --law task-accuracy | loss-to-acc`: output, and bad input as one `error:`
line with exit status 2 and nothing on stdout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalelab.analysis import laws
from scalelab.cli import main

STEP1 = {"E": 1.2, "A": 60.0, "alpha": 0.22}
STEP2 = {"floor": 0.25, "ceiling": 0.9, "k": 4.0, "L0": 2.0}


@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(0)
    n = np.geomspace(2e7, 2e9, 12)
    loss = laws.power_law(n, STEP1) * np.exp(0.004 * rng.standard_normal(12))
    df = pd.DataFrame(
        {
            "run_id": [f"m{i}" for i in range(12)],
            "non_embedding_params": n,
            "tokens": 20 * n,
            "task_loss": loss,
            "acc": laws.acc_sigmoid(loss, STEP2) + 0.005 * rng.standard_normal(12),
            "choices": 4,
        }
    )
    path = tmp_path / "ladder.csv"
    df.to_csv(path, index=False)
    return path


BASE = ["--law", "task-accuracy", "--x", "non_embedding_params", "--loss-col", "task_loss"]


def run(capsys, *args):
    code = main(["fit", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_has_holdout_errors_target_flags(csv, capsys):
    code, out, err = run(
        capsys, csv, *BASE, "--y", "acc", "--choices-col", "choices", "--holdout", "2",
        "--bootstrap", "30", "--target", "0.7", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    (obj,) = json.loads(out)
    assert obj["law"] == "task-accuracy" and obj["chance"] == 0.25 and obj["floor"] == 0.25
    assert obj["steps"]["step1"]["law"] == "power" and obj["form"] == "sigmoid"
    h = obj["holdout"]
    assert h["k"] == 2 and h["labels"] == ["m10", "m11"] and h["n_below_chance"] == 0
    assert h["mean_abs_error"] == pytest.approx(np.mean(np.abs(h["abs_errors"])))
    assert all(lo <= p <= hi for lo, p, hi in zip(h["lo"], h["pred"], h["hi"], strict=True))
    assert obj["smallest"]["at"] == "smallest non_embedding_params"
    assert obj["smallest"]["lo"] < obj["smallest"]["n"] < obj["smallest"]["hi"]
    assert isinstance(obj["flags"], list)
    assert any("1/4" in n for n in obj["notes"])


def test_table_with_tokens_and_ratio_target(csv, capsys):
    code, out, err = run(
        capsys, csv, *BASE, "--x2", "tokens", "--y", "acc", "--chance", "0.25",
        "--target", "0.6",
    )  # fmt: skip
    assert code == 0, err
    assert "task-accuracy: n=12" in out and "steps: chinchilla task loss from size" in out
    # D = 20 N on this grid: the answer is read at 20 tokens per parameter.
    assert "smallest non_embedding_params at the grid's 20 tokens per parameter" in out


def test_loss_to_acc_exponential(csv, capsys):
    code, out, err = run(
        capsys, csv, "--law", "loss-to-acc", "--x", "task_loss", "--y", "acc", "--chance", "0.25",
        "--acc-form", "exponential", "--holdout", "2", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    (obj,) = json.loads(out)
    assert obj["epsilon"] == 0.75 and obj["form"] == "exponential" and obj["gamma"] > 0
    assert obj["holdout"]["n_below_chance"] == 0


@pytest.mark.parametrize(
    ("change", "args", "expect"),
    [
        (None, ["--loss-col", "nope"], "missing column 'nope'"),
        (None, ["--choices-col", "K"], "missing column 'K'"),
        ("percent", [], "outside [0, 1]"),
        (None, ["--chance", "0.95"], "chance level 0.95 is at or above every accuracy"),
        (None, ["--chance", "1.5"], "--chance must be in [0, 1)"),
        ("mixed_choices", ["--choices-col", "choices"], "one number of choices"),
        (None, ["--chance", "0.25", "--choices-col", "choices"], "not both"),
        (None, ["--acc-form", "cubic"], "--acc-form must be one of"),
        (None, ["--target", "70"], "must be an accuracy in (0, 1)"),
        (None, ["--higher-is-better"], "--higher-is-better is for --law power"),
        (None, ["--drop-top-loss", "2"], "--drop-top-loss applies to the loss laws"),
    ],
)
def test_bad_input_is_one_error_line(csv, capsys, change, args, expect):
    df = pd.read_csv(csv)
    if change == "percent":
        df["acc"] = 100 * df["acc"]
    if change == "mixed_choices":
        df.loc[0, "choices"] = 2
    df.to_csv(csv, index=False)
    code, out, err = run(capsys, csv, *BASE, "--y", "acc", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and expect in err, err


def test_task_options_refused_on_other_laws(csv, capsys):
    code, out, err = run(
        capsys, csv, "--law", "power", "--x", "non_embedding_params", "--y", "task_loss",
        "--chance", "0.25",
    )  # fmt: skip
    assert code == 2 and "--chance applies to --law task-accuracy or loss-to-acc" in err
    code, out, err = run(capsys, csv, "--law", "task-accuracy", "--x", "tokens", "--y", "acc")
    assert code == 2 and "needs --loss-col" in err


def test_holdout_lines_say_what_chance_is_and_tell_checkpoints_apart(tmp_path, csv, capsys):
    df = pd.read_csv(csv).assign(run_id="one-model")  # checkpoints of one model: one name
    path = tmp_path / "ckpts.csv"
    df.to_csv(path, index=False)
    assert main(["fit", str(path), *BASE, "--y", "acc", "--holdout", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        "chance not given (floor fitted)" in out
        and "note: floor fitted: chance is not known" in out
    )
    held = [line.strip() for line in out.splitlines() if line.startswith("    one-model (")]
    assert len(held) == 3 and len(set(held)) == 3  # each names its size
    assert all(line.startswith("one-model (non_embedding_params ") for line in held)
    assert main(["fit", str(path), *BASE, "--y", "acc", "--holdout", "3", "--chance", "0.25"]) == 0
    assert "0 below chance 0.25" in capsys.readouterr().out
