"""Sweep envelopes (`analysis/envelope.py`): per model, the best run over a swept axis,
chosen on validation (never test), every seed of the winner kept, edge winners flagged;
`scalelab fit --best-over` on a CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import SWEEP_MODELS as MODELS
from helpers import cli
from helpers import sweep_table as runs
from helpers import sweep_val_loss as base_loss

from scalelab.analysis.envelope import best_over, envelope_for, validation_twin
from scalelab.errors import ScalelabError


def test_picks_on_validation_mean_over_seeds_and_keeps_every_seed():
    table = runs()
    env = best_over(table, ["params.lr"], "val_loss")
    won = dict(zip(env.winners["cell"], env.winners["params.lr"], strict=True))
    assert won == {m: best for m, (_, best) in MODELS.items()}
    # Picking on test would have chosen lr=1e-2 for m2: the envelope never looks at test.
    test_pick = table[table["model"] == "m2"].groupby("params.lr")["test_loss"].mean().idxmin()
    assert test_pick == 1e-2 and won["m2"] == 3e-3
    # The best single run of m3 is at 1e-3 (seed 0); the mean over seeds picks 3e-3.
    m3 = table[table["model"] == "m3"]
    assert m3.loc[m3["val_loss"].idxmin(), "params.lr"] == 1e-3 and won["m3"] == 3e-3
    # Every seed of every winner, nothing else; rows are the input's own.
    assert len(env.rows) == 2 * len(MODELS)
    assert sorted(env.rows.groupby("model")["seed"].apply(list).sum()) == [0] * 5 + [1] * 5
    assert env.rows.equals(table.loc[env.rows.index])
    assert set(env.winners["seeds"]) == {2} and set(env.winners["settings"]) == {3}
    m1 = env.winners.set_index("cell").loc["m1", "val_loss"]
    assert m1 == pytest.approx(base_loss(1e6) + 0.001)  # the mean of the two seeds


def test_flags_edge_winners_and_not_interior_ones():
    env = best_over(runs(), ["params.lr"], "val_loss")
    edges = dict(zip(env.winners["cell"], env.winners["edge"], strict=True))
    assert edges == {"m1": "params.lr", "m2": "", "m3": "", "m4": "params.lr", "m5": ""}
    assert env.warnings == (
        "edge: m1 won at params.lr=0.01, the largest value swept for it (0.001, 0.003, 0.01): "
        "its best may lie above; extend the sweep",
        "edge: m4 won at params.lr=0.001, the smallest value swept for it (0.001, 0.003, "
        "0.01): its best may lie below; extend the sweep",
    )
    # A model that swept one value alone: nothing was chosen, and it is said.
    lone = runs()
    lone = lone[(lone["model"] != "m5") | (lone["params.lr"] == 3e-3)]
    env = best_over(lone, ["params.lr"], "val_loss")
    assert env.warnings[-1] == "edge: m5 swept only params.lr=0.003: its best params.lr is unknown"


def test_higher_is_better_other_cells_and_two_axes():
    table = runs()
    table["val_accuracy"] = 1 - table["val_loss"] / 10  # the same order, reversed
    env = best_over(table, ["params.lr"], "val_accuracy", higher_is_better=True)
    assert list(env.winners["params.lr"]) == [best for _, best in MODELS.values()]
    # Each token budget is its own cell: D is not swept over.
    more = pd.concat([table, table.assign(**{"params.tokens": 2_000_000})], ignore_index=True)
    env = best_over(more, ["params.lr"], "val_loss")
    assert len(env.winners) == 10 and env.winners["cell"].iloc[5] == "m1 tokens=2000000"
    # Two axes: the best (lr, wd) pair per model.
    wide = pd.concat([table.assign(**{"params.wd": 0.0}),
                      table.assign(**{"params.wd": 0.1, "val_loss": table["val_loss"] - 0.05})],
                     ignore_index=True)  # fmt: skip
    env = best_over(wide, ["params.lr", "params.wd"], "val_loss")
    assert set(env.winners["params.wd"]) == {0.1} and len(env.rows) == 10
    assert "params.lr, params.wd" in env.winners.set_index("cell").loc["m1", "edge"]


def test_selects_on_the_validation_twin():
    assert validation_twin("test_loss") == "val_loss" and validation_twin("val_loss") == "val_loss"
    table = runs().assign(val_accuracy=lambda t: 1 - t["val_loss"] / 10,
                          test_accuracy=lambda t: 1 - t["test_loss"] / 10)  # fmt: skip
    env = envelope_for(table, ["params.lr"], "test_accuracy", higher_is_better=True)
    assert env.select_on == "val_accuracy" and env.higher_is_better
    assert list(env.winners["params.lr"]) == [best for _, best in MODELS.values()]


@pytest.mark.parametrize(
    "axes, select_on, message",
    [
        (["params.wd"], "val_loss", "--best-over params.wd: no such column"),
        (["params.tokens"], "val_loss", "--best-over params.tokens: it does not vary"),
        (["params.lr"], "val_acc", "select on val_acc: no such column"),
        (["params.lr"], "test_loss", "select on test_loss: a test metric; choose on validation"),
        ([], "val_loss", "--best-over: name at least one swept column"),
    ],
)
def test_bad_input_is_one_clear_error(axes, select_on, message):
    with pytest.raises(ScalelabError) as err:
        best_over(runs(), axes, select_on)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _alpha(doc) -> float:
    fits = doc["fits"] if isinstance(doc, dict) else doc
    return fits[0]["alpha"]


def test_fit_best_over_gives_the_envelopes_exponent(tmp_path, capsys):
    table = runs()
    path = tmp_path / "runs.csv"
    table.to_csv(path, index=False)
    fit = ("fit", path, "--law", "power", "--x", "non_embedding_params", "--y", "test_loss")
    code, out, _ = cli(*fit, "--best-over", "params.lr", "--format", "json", capsys=capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["best_over"]["select_on"] == "val_loss"  # the twin of test_loss
    assert [w["params.lr"] for w in doc["best_over"]["winners"]] == [b for _, b in MODELS.values()]
    assert doc["fits"][0]["n_points"] == 10
    # The same fit on the rows picked by hand: the same exponent.
    hand = tmp_path / "hand.csv"
    keep = table["params.lr"] == table["model"].map({m: b for m, (_, b) in MODELS.items()})
    table[keep].to_csv(hand, index=False)
    code, out, _ = cli("fit", hand, *fit[2:], "--format", "json", capsys=capsys)
    assert code == 0 and _alpha(json.loads(out)) == pytest.approx(_alpha(doc), rel=1e-9)
    # ...and not the exponent of the mixed, unselected runs.
    code, out, _ = cli(*fit, "--format", "json", capsys=capsys)
    assert not np.isclose(_alpha(json.loads(out)), _alpha(doc), rtol=1e-3)
    # The table output: the winners, the edge warnings, then the law.
    code, out, _ = cli(*fit, "--best-over", "params.lr", capsys=capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0] == (
        "best over params.lr per model, chosen on val_loss (lower is better, mean over seeds):"
    )
    assert lines[1].split()[:3] == ["m1", "lr=0.01", "val_loss"] and lines[1].endswith("[edge]")
    assert sum(line.startswith("warning: edge: m") for line in lines) == 2
    assert "power: n=10" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--best-over", "lr"], "--best-over lr: no such column"),
        (["--best-over", "params.tokens"], "it does not vary"),
        (["--best-over", "params.lr", "--select-on", "test_loss"], "a test metric"),
        (["--best-over", "params.lr", "--select-on", "val_ppl"], "select on val_ppl: no such"),
        (["--select-on", "val_loss"], "--select-on applies with --best-over only"),
    ],
)
def test_fit_bad_best_over_exits_2_with_one_line(tmp_path, capsys, extra, message):
    path = tmp_path / "runs.csv"
    runs().to_csv(path, index=False)
    code, out, err = cli("fit", path, "--law", "power", "--x", "non_embedding_params", "--y",
                         "test_loss", *extra, capsys=capsys)  # fmt: skip
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and message in err


def test_fit_without_a_validation_column_names_the_choice(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs().drop(columns=["val_loss"]).to_csv(path, index=False)
    code, _, err = cli("fit", path, "--law", "power", "--x", "non_embedding_params", "--y",
                       "test_loss", "--best-over", "params.lr", capsys=capsys)  # fmt: skip
    assert code == 2 and err.strip() == (
        "error: --best-over chooses on validation: no val_loss column here; name one with "
        "--select-on COL"
    )
