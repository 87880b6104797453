"""`scalelab smallest EXP --beats MODEL/METHOD` on a real (tiny) stored experiment."""

from __future__ import annotations

import html
import json
import re

from helpers import cli, tiny_lm_spec


def test_smallest_reads_the_store_and_answers_per_method(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out",
                        models=["gpt-d1", "gpt-d2"], seeds=[0, 1])  # fmt: skip
    code, _, err = cli("smallest", spec, "--beats", "gpt-d2/pretrain", capsys=capsys)
    assert code == 2 and err.strip() == (
        f"error: no results yet for {spec} (run `scalelab run {spec}` first)"
    )
    assert cli("run", spec, "--quiet", capsys=capsys)[0] == 0
    code, out, _ = cli("smallest", spec, "--beats", "gpt-d2/pretrain", "--bootstrap", "0",
                       capsys=capsys)  # fmt: skip
    assert code == 0 and out.startswith("val_loss (lower is better) against gpt-d2/pretrain")
    assert "gpt-d1" in out and "(paired t, 2 seeds)" in out and "  answer: " in out
    code, out, _ = cli("smallest", spec, "--beats", "gpt-d2/pretrain", "--json", capsys=capsys)
    report = json.loads(out)
    assert report["metric"] == "val_loss" and report["cells"][0]["model"] == "gpt-d1"
    for bad, message in (
        ("gpt-d2", "write MODEL/METHOD"),
        ("gpt-d9/pretrain", "no finished runs of such a cell"),
    ):
        code, _, err = cli("smallest", spec, "--beats", bad, capsys=capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1

    # The same answer heads the report: asked for on the command line, or by the spec.
    out_dir = tmp_path / "rep"
    code, _, err = cli("report", spec, "--beats", "gpt-d9/pretrain", "--out", out_dir,
                       capsys=capsys)  # fmt: skip
    assert code == 2 and "no finished runs of such a cell" in err and not out_dir.exists()
    assert cli("report", spec, "--beats", "gpt-d2/pretrain", "--out", out_dir, "--bootstrap",
               "0", capsys=capsys)[0] == 0  # fmt: skip
    page = (out_dir / "report.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads[0] == "The answer: the smallest model that beats gpt-d2/pretrain"
    assert html.escape(report["answers"][0]["statement"]) in page  # what `smallest` says
    assert 'alt="answer"' in page and (out_dir / "answer.png").is_file()
    declared = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out",
                            models=["gpt-d1", "gpt-d2"], seeds=[0, 1],
                            report={"beats": "gpt-d2/pretrain"})  # fmt: skip
    code, out, _ = cli("smallest", declared, "--bootstrap", "0", capsys=capsys)
    assert code == 0 and "against gpt-d2/pretrain (mean " in out
    assert cli("report", declared, "--out", out_dir, "--bootstrap", "0", capsys=capsys)[0] == 0
    assert (
        "<h2>The answer: the smallest model that beats gpt-d2/pretrain</h2>"
        in (out_dir / "report.html").read_text()
    )


def test_smallest_reaches_a_named_value_from_the_command_line_the_spec_and_the_report(
    tmp_path, corpus, capsys
):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out",
                        models=["gpt-d1", "gpt-d2"], seeds=[0, 1])  # fmt: skip
    assert cli("run", spec, "--quiet", capsys=capsys)[0] == 0
    code, out, _ = cli("smallest", spec, "--beats", "gpt-d2/pretrain", "--json", capsys=capsys)
    losses = [c["mean"] for c in json.loads(out)["cells"]] + [json.loads(out)["reference_mean"]]
    easy, hard = max(losses) + 1.0, min(losses) - 1.0  # every model reaches / none does
    code, out, _ = cli("smallest", spec, "--reaches", str(easy), "--bootstrap", "0",
                       capsys=capsys)  # fmt: skip
    assert code == 0 and out.startswith(f"val_loss (lower is better) reaching {easy:g}")
    assert "(one-sample t, 2 seeds)  reaches" in out and "diff = mean - target" in out
    assert "  answer: gpt-d1 (non_embedding_params " in out
    assert "is the smallest pretrain model that reaches val_loss" in out
    code, out, _ = cli("smallest", spec, "--reaches", str(hard), "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == 0 and doc["target"] == hard and not any(c["reaches"] for c in doc["cells"])
    assert doc["answers"][0]["statement"].startswith("no pretrain model reaches val_loss")
    code, out, _ = cli("smallest", spec, "--reaches", str(easy), "--beats", "gpt-d2/pretrain",
                       "--bootstrap", "0", capsys=capsys)  # fmt: skip
    assert code == 0 and "reaching" in out and "against gpt-d2/pretrain" in out  # both asked
    code, out, _ = cli("smallest", spec, "--reaches", str(easy), "--beats", "gpt-d2/pretrain",
                       "--bootstrap", "0", "--json", capsys=capsys)  # fmt: skip
    both = json.loads(out)  # one document; NaN intervals are null (strict JSON)
    assert set(both) == {"reaches", "beats"} and both["reaches"]["target"] == easy
    for flag, value in (("--margin", "0.01"), ("--chance", "0.25")):
        asked = ("--reaches", str(easy)) if flag == "--margin" else ("--beats", "gpt-d2/pretrain")
        code, _, err = cli("smallest", spec, *asked, flag, value, capsys=capsys)
        assert code == 2 and f"{flag} applies to" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("smallest", spec, "--reaches", "nan", capsys=capsys)
    assert code == 2 and "a finite value of val_loss" in err and len(err.strip().splitlines()) == 1
    one_seed = tiny_lm_spec(
        tmp_path / "one.yaml", corpus, tmp_path / "out", models=["gpt-d1", "gpt-d2"], seeds=[0]
    )  # fmt: skip (runs stored)
    code, out, _ = cli("smallest", one_seed, "--reaches", str(easy), "--json", capsys=capsys)
    assert code == 0 and "NaN" not in out  # strict JSON: an interval one seed cannot give is null
    assert [c["lo"] for c in json.loads(out)["cells"]] == [None, None]

    declared = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out",
                            models=["gpt-d1", "gpt-d2"], seeds=[0, 1],
                            report={"reaches": easy})  # fmt: skip
    code, out, _ = cli("smallest", declared, "--bootstrap", "0", capsys=capsys)
    assert code == 0 and out.startswith(f"val_loss (lower is better) reaching {easy:g}")
    out_dir = tmp_path / "rep"
    assert cli("report", declared, "--out", out_dir, "--bootstrap", "0", capsys=capsys)[0] == 0
    page = (out_dir / "report.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads[0] == f"The answer: the smallest model that reaches val_loss {easy:g}"
    assert (out_dir / "reaches.png").is_file() and "is the smallest pretrain model" in page
