"""`scalelab smallest EXP --beats MODEL/METHOD` on a real (tiny) stored experiment."""

from __future__ import annotations

import json

from helpers import cli, tiny_lm_spec


def test_smallest_reads_the_store_and_answers_per_method(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out",
                        models=["gpt-d1", "gpt-d2"], seeds=[0, 1])  # fmt: skip
    code, _, err = cli("smallest", spec, "--beats", "gpt-d2/pretrain", capsys=capsys)
    assert code == 2 and err.strip() == "error: no results yet (run `scalelab run` first)"
    assert cli("run", spec, "--quiet", capsys=capsys)[0] == 0
    code, out, _ = cli("smallest", spec, "--beats", "gpt-d2/pretrain", "--bootstrap", "0",
                       capsys=capsys)  # fmt: skip
    assert code == 0 and out.startswith("val_loss (lower is better) against gpt-d2/pretrain")
    assert "gpt-d1" in out and "(paired t, 2 seeds)" in out and "  answer: " in out
    code, out, _ = cli("smallest", spec, "--beats", "gpt-d2/pretrain", "--json", capsys=capsys)
    report = json.loads(out)
    assert report["metric"] == "val_loss" and report["cells"][0]["model"] == "gpt-d1"
    for bad, message in (("gpt-d2", "write MODEL/METHOD"), ("gpt-d9/pretrain", "no such cell")):
        code, _, err = cli("smallest", spec, "--beats", bad, capsys=capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
