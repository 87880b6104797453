"""`scalelab report EXP.yaml` on a real (tiny) experiment from the store."""

from __future__ import annotations

from helpers import cli, tiny_lm_spec


def test_report_for_an_experiment_in_the_store(tmp_path, corpus, capsys):
    # Four sizes: the power law E + A N^-alpha has three parameters.
    models = ["gpt-d1", "gpt-20k", "gpt-50k", "gpt-d2"]
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, tmp_path / "out", models=models)
    assert cli("run", spec, "--quiet")[0] == 0
    out = tmp_path / "report"
    code, _, err = cli("report", spec, "--out", out, "--bootstrap", "20", capsys=capsys)
    assert code == 0, err
    html = (out / "report.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 2, pngs  # the scaling plot and the learning curves
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "alpha" in html and "No laws could be fitted" not in html


def test_report_before_any_run_is_a_clear_error(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "exp.yaml", corpus, tmp_path / "out")
    code, _, err = cli("report", spec, "--out", tmp_path / "r", capsys=capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # bad input writes nothing


def test_a_runs_csv_with_nothing_to_show_writes_nothing(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    names = ",".join(f"column_{i}" for i in range(40))
    csv.write_text(f"run_id,{names}\nr0,{','.join('1' * 40)}\n")
    out = tmp_path / "rep"
    code, _, err = cli("report", "--csv", csv, "--out", out, capsys=capsys)
    assert code == 2 and "nothing to report" in err and err.count("\n") == 1, err
    assert "more (41 in all)" in err  # a cut column list says it is cut
    assert not out.exists()


def test_beats_or_reaches_on_a_csv_without_methods_says_so_and_writes_nothing(tmp_path, capsys):
    from pathlib import Path

    csv = Path(__file__).parents[1] / "analysis" / "data" / "llm_line_tasks.csv"
    for flag, value in (("--beats", "x/y"), ("--reaches", "0.5")):
        out = tmp_path / flag.strip("-")
        code, _, err = cli("report", "--csv", csv, flag, value, "--out", out, capsys=capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"{flag}: the CSV has no 'method' column" in err
        assert not out.exists()
