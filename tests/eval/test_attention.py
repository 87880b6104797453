"""Attention maps: a distribution per query row, causal for decoders, a layers x heads
grid, and `scalelab inspect` on a trained run of an experiment."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import cli, save_tiny, tiny_lm_spec

from scalelab.eval.attention import attention_maps
from scalelab.models.registry import resolve_model
from scalelab.report.attention import attention_figure


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_each_query_row_is_a_distribution_and_decoders_never_look_ahead(tmp_path, arch):
    folder = save_tiny(tmp_path / arch, arch, n_layer=3)
    maps = attention_maps(resolve_model(str(folder)), "the cat sat on the mat")
    layers, heads, t, t2 = maps.weights.shape
    assert (layers, heads) == (3, 2) and t == t2 == len(maps.tokens) >= 6
    assert np.allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    upper = np.triu(np.ones((t, t), bool), k=1)
    ahead = maps.weights[..., upper]
    assert (ahead.max() == 0.0) if arch == "gpt2" else (ahead.max() > 0.0)
    fig = attention_figure(maps, max_heads=12)
    assert len(fig.axes) == layers * heads  # one panel per layer and head


def test_inspect_draws_a_trained_runs_attention(tmp_path, corpus, capsys):
    spec = tiny_lm_spec(tmp_path / "s.yaml", corpus, tmp_path / "out", models=["gpt-d2"])
    assert cli("run", spec, "--quiet")[0] == 0
    from scalelab.grid.store import ResultsStore

    run_id = ResultsStore(tmp_path / "out" / "results.sqlite").table()["run_id"].iloc[0]
    png = tmp_path / "att.png"
    code, out, err = cli("inspect", run_id[:8], "--experiment", spec, "--attention",
                         "the quick brown fox", "--out", png, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert "2 layers x 2 heads" in out and png.stat().st_size > 5_000
    for args, message in [
        (["gpt-d2"], "untrained ladder rung"),
        (["ffffffff", "--experiment", spec], "matches no run"),
        ([run_id[:8], "--experiment", spec, "--out", tmp_path / "a.txt"], "write a .png"),
    ]:
        code, _, err = cli("inspect", *args, "--attention", "x", capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
