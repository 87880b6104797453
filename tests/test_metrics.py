"""Metric declarations: every method has them, readers agree with them, runs honour them."""

from __future__ import annotations

import json

import pytest
from helpers import cli, tiny_lm_spec

from scalelab import metrics as mx
from scalelab.errors import ScalelabError
from scalelab.grid.store import ResultsStore
from scalelab.methods.base import METHODS, MethodDef


def test_every_registered_method_declares_its_metrics():
    assert len(METHODS.items()) >= 3  # pretrain, full, lora at least
    for name, method in METHODS.items():
        defs = method.metrics
        names = [d.name for d in defs]
        assert defs and all(isinstance(d, mx.MetricDef) for d in defs), name
        assert len(names) == len(set(names)), f"{name} declares a metric twice"
        assert "wall_s" in names, name  # the engine times every run
        if "model" not in method.products:  # no model to select and report (rationales)
            assert any(d.is_quality for d in defs), name
            continue
        for split in mx.SPLITS:  # a selection metric and a reported one
            assert any(d.is_quality and mx.split_of(d.name) == split for d in defs), (name, split)


def test_the_declarations_readers_rely_on():
    pre = {d.name: d for d in mx.metrics_for(["pretrain"])}
    assert list(pre)[:3] == ["non_embedding_params", "total_params", "tokens"]
    assert all(pre[m].higher_is_better is False for m in ("val_loss", "test_ppl", "bits_per_byte"))
    assert pre["wall_s"].higher_is_better is None and pre["steps"].kind == "info"
    ft = {d.name: d for d in mx.metrics_for(["lora"])}
    assert ft["test_accuracy"].higher_is_better and ft["val_macro_f1"].higher_is_better
    assert ft["val_loss"].higher_is_better is False and ft["trainable_frac"].kind == "size"
    assert mx.metrics_for(["full"]) == mx.metrics_for(["lora"])


def test_union_keeps_declaration_order_and_refuses_opposite_directions(monkeypatch):
    union = [d.name for d in mx.metrics_for(["pretrain", "full", "pretrain"])]
    pre = [d.name for d in mx.metrics_for(["pretrain"])]
    assert union[: len(pre)] == pre and len(union) == len(set(union))
    assert union.index("test_accuracy") < union.index("val_accuracy")  # full's order after

    backwards = mx.MetricDef("val_loss", True, ".4f", "a loss someone called a score")
    fake = MethodDef("backwards", dict, "x:y", ("lm",), metrics=(backwards,))
    monkeypatch.setitem(METHODS._entries, "backwards", fake)
    with pytest.raises(ValueError, match="'val_loss' is declared lower is better by method "):
        mx.metrics_for(["pretrain", "backwards"])
    assert mx.metrics_for(["backwards"])[0].higher_is_better is True  # alone, no conflict

    with pytest.raises(ScalelabError, match="unknown method 'nope'"):
        mx.metrics_for(["nope"])
    assert mx.metrics_for(["nope", float("nan"), "pretrain"], skip_unknown=True)[0].name == (
        "non_embedding_params"
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(name="acc", higher_is_better=None), "quality metrics need"),
        (dict(name="wall", higher_is_better=False, kind="cost"), "quality metrics need"),
        (dict(name="x", higher_is_better=True, kind="speed"), "kind must be one of"),
        (dict(name="x", higher_is_better=True, fmt=".4q"), "bad format spec"),
        (dict(name="a b", higher_is_better=True), "without spaces"),
    ],
)
def test_bad_declarations_fail_at_import_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mx.MetricDef(**kwargs)


def test_default_metric_prefers_held_out_splits():
    assert mx.default_metric(["pretrain"]) == "val_loss"  # never train_loss by default
    assert mx.default_metric(["pretrain"], "test") == "test_loss"
    assert mx.default_metric(["full", "lora"], "test") == "test_accuracy"
    assert mx.default_metric(["full"], "val") == "val_accuracy"
    assert mx.default_metric(["full"], lower_is_better=True) == "val_loss"
    assert mx.default_metric(["full"], "test", available={"test_loss", "val_accuracy"}) == (
        "test_loss"
    )
    assert mx.default_metric(["full"], "test", available={"val_accuracy"}) == "val_accuracy"
    assert mx.default_metric(["no-such-method"]) is None


def test_metric_def_lookup():
    assert mx.metric_def("val_ppl").higher_is_better is False
    assert mx.metric_def("test_macro_f1").higher_is_better is True
    assert mx.metric_def("wall_s") is mx.WALL_S and mx.metric_def("no_such_metric") is None


def test_format_value_and_summary_line():
    assert mx.format_value(mx.TOTAL_PARAMS, 1234567.0) == "1,234,567"
    assert mx.format_value(mx.TRAINABLE_FRAC, 0.0123) == "1.23%"
    assert mx.format_value(mx.WALL_S, 12.345) == "12.3"
    assert mx.format_value(mx.VAL_LOSS, float("nan")) == "n/a"
    assert mx.format_value(mx.VAL_LOSS, None) == "n/a"
    assert mx.format_value(None, 0.123456) == "0.1235" and mx.format_value(None, "x") == "x"
    assert mx.format_value(mx.TOTAL_PARAMS, 2.5) == "2.5"  # not an int: shown as is

    pre = {"train_loss": 2.0, "val_loss": 3.21012, "test_loss": 3.3, "val_ppl": 24.8}
    assert mx.summary_line("pretrain", pre) == "val_loss=3.2101  test_loss=3.3000"
    assert mx.summary_line("pretrain", {"train_loss": 2.0, "val_ppl": 24.78}) == (
        "val_ppl=24.780  train_loss=2.0000"
    )
    ft = {"test_accuracy": 0.85, "val_accuracy": 0.905, "val_loss": 0.3, "wall_s": 3.0}
    assert mx.summary_line("full", ft) == "val_accuracy=0.9050  test_accuracy=0.8500"
    assert mx.summary_line("full", ft, n=1) == "val_accuracy=0.9050"
    assert mx.summary_line("full", {"wall_s": 3.0}) == ""
    assert mx.summary_line("no-such-method", ft) == ""
    # one method, two task kinds (`distill`): each run leads with its own kind's metrics
    kd_lm = {**pre, "bits_per_byte": 4.6, "test_ppl": 27.1, "train_kd": 0.4}
    assert mx.summary_line("distill", kd_lm) == "val_loss=3.2101  test_loss=3.3000"
    kd_clf = {**ft, "test_loss": 0.4, "val_macro_f1": 0.8, "test_macro_f1": 0.8}
    assert mx.summary_line("distill", kd_clf) == "val_accuracy=0.9050  test_accuracy=0.8500"


def test_a_pretrain_run_reports_exactly_what_pretrain_declares(tmp_path, corpus, capsys):
    """The contract end to end: the stored metrics are the declared ones, and `results`
    shows them in their declared formats (info metrics only in csv/json)."""
    spec = tiny_lm_spec(
        tmp_path / "exp.yaml",
        corpus,
        tmp_path / "out",
        models=["gpt-d1"],
        params={"tokens": 8 * 32 * 2, "batch_size": 8},
    )
    code, out, err = cli("run", spec, capsys=capsys)
    assert code == 0 and "val_loss=" in out + err and "test_loss=" in out + err  # summary_line
    row = ResultsStore(tmp_path / "out" / "results.sqlite").table().iloc[0]
    assert _metric_keys(tmp_path) == {d.name for d in mx.metrics_for(["pretrain"])}

    code, out, _ = cli("results", spec, capsys=capsys)
    header = out.splitlines()[0].split()
    assert code == 0 and "val_loss" in header and "wall_s" in header
    assert "vocab_size" not in header and "steps" not in header  # kind "info"
    assert header.index("non_embedding_params") < header.index("val_loss") < header.index("wall_s")
    assert f"{int(row['non_embedding_params']):,}" in out  # ",d": thousands separators
    code, out, _ = cli("results", spec, "--format", "json", capsys=capsys)
    assert json.loads(out)[0]["vocab_size"] == 257  # byte tokenizer: 256 bytes + EOS


def _metric_keys(tmp_path) -> set[str]:
    """The metric names as stored (the JSON of the row), independent of table flattening."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(tmp_path / "out" / "results.sqlite")) as conn:
        (blob,) = conn.execute("SELECT metrics FROM runs").fetchone()
    return set(json.loads(blob))


def test_an_evaluation_column_is_declared_as_its_metric():
    from scalelab.metrics import metric_def

    acc = metric_def("acc@piqa-5shot")
    assert acc is not None and acc.name == "acc@piqa-5shot" and acc.higher_is_better
    assert metric_def("val_loss@news2017").higher_is_better is False
    assert metric_def("no_such_metric@piqa") is None and metric_def("acc@") is None


def test_a_methods_variants_declare_metrics_too():
    """`evaluate` on math or mcqa reports test_exact_match: tables show it for those runs."""
    from scalelab.builtins import load_builtins
    from scalelab.metrics import metrics_for

    load_builtins()
    names = [d.name for d in metrics_for(["evaluate"])]
    assert {"acc", "val_loss", "test_exact_match", "test_no_answer"} <= set(names)
