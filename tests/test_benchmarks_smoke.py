"""Every benchmark script runs end to end with its tiniest settings (a smoke test, not a
measurement): tiny models and data written here, outputs under tmp_path."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers import load_benchmark as load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "analysis" / "data"  # published tables, in the repo


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> dict[str, Path]:
    """A random 2-layer BERT with a word-level tokenizer, and a 3-class jsonl dataset."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny_cls")
    words = "the a cat dog bird sat ran on under mat tree big small red".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    BertModel(cfg).save_pretrained(root / "bert")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                            pad_token="[PAD]").save_pretrained(root / "bert")  # fmt: skip
    rng = random.Random(0)
    with open(root / "data.jsonl", "w") as f:
        for i in range(90):
            text = " ".join([words[2 + i % 3]] + rng.sample(words[5:], rng.randint(1, 6)))
            f.write(json.dumps({"text": text, "label": i % 3}) + "\n")
    return {"model": root / "bert", "data": root / "data.jsonl"}


def test_engine_vs_loops(tmp_path, corpus, tiny_classifier):
    out = tmp_path / "evl.json"
    load("engine_vs_loops").main([
        "--quick", "--skip-warmup", "--rounds", "1", "--dataset", str(corpus),
        "--seq-len", "16", "--batch-size", "4", "--steps", "5", "--eval-tokens", "64",
        "--ft-model", str(tiny_classifier["model"]), "--ft-dataset", str(tiny_classifier["data"]),
        "--ft-train-size", "24", "--ft-val-size", "0", "--ft-max-length", "16",
        "--ft-batch-size", "8", "--threads", "1", "--out", str(out),
    ])  # fmt: skip
    summary = {s["setting"]: s for s in json.loads(out.read_text())["summary"]}
    assert summary["pretrain gpt-d1"]["losses_identical"]  # the engine replays the old loop
    assert summary["pretrain gpt-d1"]["metrics_identical"]
    assert len(summary) == 2


def test_finetune_vs_trainer(tmp_path, tiny_classifier):
    out = tmp_path / "fvt.json"
    load("finetune_vs_trainer").main([
        "--quick", "--model", str(tiny_classifier["model"]),
        "--dataset", str(tiny_classifier["data"]), "--train-size", "24", "--max-length", "16",
        "--batch-size", "8", "--threads", "1", "--out", str(out),
    ])  # fmt: skip
    summary = json.loads(out.read_text())["summary"]
    assert summary["ratio"]["median"] > 0
    assert 0 <= summary["trainer"]["test_accuracy"] <= 1


def test_train_throughput(tmp_path):
    out = tmp_path / "tt.json"
    load("train_throughput").main(["--quick", "--threads", "1", "--out", str(out)])
    names = {s["variant"] for s in json.loads(out.read_text())["summary"]}
    assert names == {"trainer", "scalelab-fp32", "scalelab-bf16"}


def test_bf16_loss_check(tmp_path, corpus):
    out = tmp_path / "bf16.json"
    load("bf16_loss_check").main([
        "--dataset", str(corpus), "--vocab-size", "300", "--seq-len", "16", "--batch-size", "4",
        "--steps", "4", "--eval-tokens", "64", "--seeds", "0", "--threads", "1",
        "--out", str(out),
    ])  # fmt: skip
    assert len(json.loads(out.read_text())["runs"]) == 2


def test_fit_speed(tmp_path):
    data = DATA / "chinchilla_svg_extracted_data.csv"
    out = tmp_path / "fit.json"
    load("fit_speed").main(["--baseline-starts", "3", "--bootstrap", "3", "--data", str(data),
                            "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text())["baseline_extrapolated"]


@pytest.mark.slow
def test_executor_overhead(tmp_path):
    out = tmp_path / "exec.json"
    load("executor_overhead").main(["--quick", "--steps", "4", "--seeds", "0", "--sides", "serial",
                                    "--parallel-workers", "0", "--out", str(out)])  # fmt: skip
    rows = {r["side"]: r for r in json.loads(out.read_text())["summary"]}
    assert set(rows) == {"loop w1", "serial w1"}
    assert rows["loop w1"]["overhead_per_run_s"] == 0


@pytest.mark.slow  # two fresh processes import transformers: ~40 s, minutes on a loaded host
def test_tokenize_scale(tmp_path):
    out = tmp_path / "ts.json"
    load("tokenize_scale").main([
        "--sizes", "300K", "--tokenizers", "byte", "--lib-bytes", "50K", "--no-wikitext",
        "--workdir", str(tmp_path / "work"), "--out", str(out),
    ])  # fmt: skip
    (row,) = json.loads(out.read_text())["rows"]
    assert row["scalelab"]["tokens"] == row["scalelab"]["bytes"] > 300_000
    assert row["library"]["bytes"] >= 50_000 and row["ratio"] > 0


@pytest.mark.slow  # two fresh `scalelab run` processes: ~30 s
def test_malloc_settings(tmp_path):
    from scalelab.testing import make_corpus

    out = tmp_path / "malloc.json"
    corpus = make_corpus(tmp_path / "corpus")
    load("malloc_settings").main(["--quick", "--dataset", str(corpus), "--out", str(out)])
    (row,) = json.loads(out.read_text())["summary"].values()
    assert row["same_val_loss"] and row["ratio"] > 0  # the allocator changes speed, not results
    assert all(mb > 50 for mb in row["peak_rss_mb"].values())  # the child's own peak RSS


def test_distill_cache(tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("SCALELAB_HOME", str(tmp_path / "home"))
    out = tmp_path / "dc.json"
    load("distill_cache").main(["--quick", "--dataset", str(corpus), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["ratio_cached_over_live"] > 0 and set(report["val_loss_by_target"]) == {
        "plain (alpha 0)", "full distribution", "top-4"}  # fmt: skip


def test_monitor_overhead(tmp_path, capsys):
    out = tmp_path / "monitor.json"
    load("monitor_overhead").main(["--quick", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["size"] == "gpt-d1" and row["point_ms"] > 0 and row["default_every"] == 10
    assert "every step" in capsys.readouterr().out


@pytest.mark.slow
def test_mc_eval_parity(tmp_path, capsys):
    out = tmp_path / "parity.json"
    code = load("mc_eval_parity").main(["--models", "tiny-gpt2", "--tasks", "piqa",
                                        "--shots", "0", "--limit", "4", "--no-fp64",
                                        "--out", str(out)])  # fmt: skip
    (row,) = json.loads(out.read_text())["rows"]
    assert code == 0 and row["acc_scalelab"] == row["acc_lm_eval"] and row["max_abs_dll"] <= 1e-4
    assert "piqa" in capsys.readouterr().out


@pytest.mark.slow  # fetches smollm2-135m (98 MB), loads it twice (transformers, llama.cpp)
def test_gguf_generation(tmp_path, capsys):
    pytest.importorskip("llama_cpp.server", reason="needs the optional scalelab[llama] extra")
    out = tmp_path / "gguf.json"
    assert load("gguf_generation").main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "smollm2-135m" and len(row["llama.cpp"]["texts"]) == 2
    assert row["transformers"]["seconds"] > 0 and row["llama.cpp"]["seconds"] > 0
    assert "llama.cpp" in capsys.readouterr().out
