"""Sweep envelopes on a real (tiny) stored experiment: `report.best_over` in the spec makes
`scalelab smallest` and `scalelab report` keep each model's best lr, chosen on validation,
and show which value won; bad axes are one error line. Also `report --csv --best-over`:
the envelope's law beside each fixed lr's law in the fitted-laws table."""

from __future__ import annotations

import json
import re

import pytest
from helpers import cli, sweep_table, tiny_lm_spec

MODELS = ["gpt-d1", "gpt-d2"]
PARAMS = {"tokens": 8 * 32 * 30, "batch_size": 8, "lr": [1e-3, 3e-3]}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, corpus):
    """(spec with report.best_over, the same without, runs table): 2 models x 2 lrs."""
    tmp = tmp_path_factory.mktemp("envelope")
    plain = tiny_lm_spec(tmp / "plain.yaml", corpus, tmp / "out", models=MODELS, params=PARAMS)
    assert cli("run", plain, "--quiet")[0] == 0
    declared = tiny_lm_spec(tmp / "env.yaml", corpus, tmp / "out", models=MODELS, params=PARAMS,
                            report={"best_over": ["params.lr"]})  # fmt: skip
    from scalelab.grid.api import load_experiment_tables

    runs, _ = load_experiment_tables(plain)
    return plain, declared, runs


def _best(runs, model):
    """(lr, val_loss) of the model's best run on validation (one seed a setting)."""
    mine = runs[runs["model"] == model]
    row = mine.loc[mine["val_loss"].idxmin()]
    return row["params.lr"], row["val_loss"]


def test_smallest_uses_the_envelope(grid, capsys):
    plain, declared, runs = grid
    # Without the envelope, two lrs make two cells of gpt-d2: the reference is ambiguous.
    code, _, err = cli("smallest", plain, "--beats", "gpt-d2/pretrain", capsys=capsys)
    assert code == 2 and "2 cells match" in err
    code, out, _ = cli("smallest", declared, "--beats", "gpt-d2/pretrain", "--bootstrap", "0",
                       capsys=capsys)  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "best over params.lr per model, chosen on val_loss (lower is better, mean over seeds):"
    )
    for model, line in zip(MODELS, lines[1:3], strict=True):
        lr, val = _best(runs, model)
        assert line.split()[:4] == [model, f"lr={lr:g}", "val_loss", f"{val:.4f}"]
        # Two values swept: every winner is at an edge of the sweep, and it is said.
        assert line.endswith("[edge]")
        assert f"warning: edge: {model} won at params.lr={lr:g}, the " in out
    ref_lr, ref_val = _best(runs, "gpt-d2")
    assert f"against gpt-d2/pretrain (mean {ref_val:.4f}, 1 seed)" in out
    assert re.search(rf"^  gpt-d1 +non_embedding_params .* val_loss {_best(runs, 'gpt-d1')[1]:.4f}",
                     out, re.M)  # fmt: skip
    code, out, _ = cli("smallest", declared, "--beats", "gpt-d2/pretrain", "--bootstrap", "0",
                       "--json", capsys=capsys)  # fmt: skip
    doc = json.loads(out)
    assert doc["best_over"]["select_on"] == "val_loss"
    assert [w["params.lr"] for w in doc["best_over"]["winners"]] == [
        _best(runs, m)[0] for m in MODELS
    ]
    assert doc["reference_mean"] == pytest.approx(ref_val) and len(doc["cells"]) == 1


def test_report_shows_the_winners_without_flags(grid, tmp_path, capsys):
    _, declared, runs = grid
    out_dir = tmp_path / "rep"
    code, _, _ = cli("report", declared, "--beats", "gpt-d2/pretrain", "--out", out_dir,
                     "--bootstrap", "0", capsys=capsys)  # fmt: skip
    assert code == 0
    page = (out_dir / "report.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert "Best params.lr per model (the sweep&#x27;s envelope)" in heads
    for model in MODELS:
        lr, val = _best(runs, model)
        assert (f"<tr><td class='l'>{model}</td><td>{lr:g}</td><td>{val:.4g}</td><td>1</td>"
                f"<td>2</td><td>params.lr</td></tr>") in page  # fmt: skip
        assert f"warning: edge: {model} won at params.lr={lr:g}" in page
    assert "Bold, labelled (best lr): the envelope" in page
    # The answer compares the envelope's runs: one cell per model, no lr in its name.
    assert "gpt-d1 lr=" not in page and "The answer: the smallest model that beats" in heads[0]


def test_bad_axes_are_one_error_line(grid, tmp_path, corpus, capsys):
    plain, declared, _ = grid
    for args, message in (
        (("smallest", plain, "--beats", "gpt-d2/pretrain", "--best-over", "params.wd"),
         "error: --best-over params.wd: no such column"),
        (("smallest", plain, "--beats", "gpt-d2/pretrain", "--best-over", "params.tokens"),
         "error: --best-over params.tokens: it does not vary"),
        (("report", plain, "--best-over", "lr", "--out", tmp_path / "rep"),
         "error: --best-over lr: no such column"),
    ):  # fmt: skip
        code, out, err = cli(*args, capsys=capsys)
        assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()
    for best_over, message in (
        (["params.tokens"], "report.best_over: params.tokens does not vary in the grid"),
        (["lr"], "report.best_over: 'lr': write params.NAME or task.NAME"),
        (["params.lr", "params.lr"], "report.best_over: an axis is named twice"),
    ):
        bad = tiny_lm_spec(tmp_path / "bad.yaml", corpus, tmp_path / "out", models=MODELS,
                           params=PARAMS, report={"best_over": best_over})  # fmt: skip
        code, _, err = cli("report", bad, capsys=capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_report_csv_fits_the_envelope_beside_each_fixed_lr(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    sweep_table().to_csv(csv, index=False)
    out_dir = tmp_path / "rep"
    code, _, _ = cli("report", "--csv", csv, "--best-over", "params.lr", "--out", out_dir,
                     "--bootstrap", "20", capsys=capsys)  # fmt: skip
    assert code == 0
    page = (out_dir / "report.html").read_text()
    laws = page[page.index("<h2>Fitted laws</h2>") :]
    groups = re.findall(r"<td class='l'>val_loss vs non_embedding_params</td>"
                        r"<td class='l'>(.*?)</td>", laws)  # fmt: skip
    assert groups == ["best lr", "lr=0.001", "lr=0.003", "lr=0.01"]
    assert "alpha=0.25 [" in laws  # the envelope's exponent, with its interval
