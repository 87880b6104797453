"""Helpers for tests that drive the CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pandas as pd
import yaml

from scalelab.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The module `benchmarks/<name>.py` (the folder is no package), registered in
    sys.modules so dataclasses can look it up."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_spec(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def tiny_lm_spec(path: Path, corpus: Path, out: Path, **over) -> Path:
    """A fast grid on the test corpus: byte tokenizer, seq 32, a few dozen steps."""
    fields = {
        "name": "tiny",
        "output_dir": str(out),
        "models": ["gpt-d1", "gpt-20k", "gpt-d2"],
        "tasks": {
            "dataset": str(corpus),
            "kind": "lm",
            "seq_len": 32,
            "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 2000},
        },
        "methods": "pretrain",
        "params": {"tokens": 8 * 32 * 30, "batch_size": 8, "lr": 3e-3},
        "seeds": [0],
        "runtime": {"threads": 1},
    }
    fields.update(over)
    return write_spec(path, **fields)


def run_stages(tmp_path: Path, corpus: Path, stages: dict, capsys) -> pd.DataFrame:
    """Run a staged spec on the test corpus (byte tokens, seq 32) and return its table."""
    from scalelab.grid.api import load_experiment_tables

    task = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, "tokenizer": {"kind": "byte"},
            "eval": {"max_tokens": 1000}}  # fmt: skip
    spec = write_spec(tmp_path / "stages.yaml", name="staged", output_dir=str(tmp_path / "out"),
                      tasks=task, stages=stages, runtime={"threads": 1})  # fmt: skip
    code, out, _ = cli("run", spec, capsys=capsys)
    assert code == 0, out
    return load_experiment_tables(spec)[0]


def cli(*args: str, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


# Tiny classification assets (random 2-layer BERT / GPT-2 and a 3-class dataset), shared by
# the fine-tuning tests and the report tests.
WORDS = "the a cat dog bird sat ran flew on under over mat tree sky big small red".split()
LABEL_WORD = {0: "cat", 1: "dog", 2: "bird"}


def _tokenizer(with_pad: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[EOS]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    kw = {"pad_token": "[PAD]"} if with_pad else {}  # GPT-2 style: no pad, eos only
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", **kw)


def save_tiny(folder: Path, arch: str, n_layer: int = 2) -> Path:
    """A random 2-layer BERT (encoder) or GPT-2 (decoder) plus tokenizer, save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    vocab = 3 + len(WORDS)
    if arch == "bert":
        cfg = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=n_layer,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        model = BertModel(cfg)
    else:
        cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=n_layer, n_head=2, n_positions=64)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(folder)
    _tokenizer(with_pad=arch == "bert").save_pretrained(folder)
    return folder


def write_dataset(path: Path, n: int = 60) -> Path:
    """jsonl of 3 learnable classes: the label is which animal the sentence mentions."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            label = i % 3
            words = [rng.choice(WORDS[:2]), LABEL_WORD[label]] + rng.sample(WORDS[6:], 3)
            f.write(
                json.dumps({"text": " ".join(words) + f" {'big ' * (i % 4)}", "label": label})
                + "\n"
            )
    return path


# A learning-rate sweep where the best lr differs per size (tests of sweep envelopes).
SWEEP_LRS = (1e-3, 3e-3, 1e-2)
# model -> (N, the lr that is best on validation)
SWEEP_MODELS = {
    "m1": (1e6, 1e-2),  # the largest lr swept: an edge
    "m2": (3e6, 3e-3),  # test would pick 1e-2 here (see `sweep_table`)
    "m3": (1e7, 3e-3),  # a single seed at 1e-3 is the best run; its mean is not
    "m4": (3e7, 1e-3),  # the smallest lr swept: an edge
    "m5": (1e8, 3e-3),
}


def sweep_val_loss(n: float) -> float:
    """The best validation loss of a model of `n` parameters in `sweep_table`."""
    return 2.0 + 40.0 * n**-0.25


def sweep_table() -> pd.DataFrame:
    """A synthetic runs table for sweep envelopes: 5 models x 3 lrs x 2 seeds; val_loss = a
    power law in N plus a bowl in log10(lr) around each model's best lr; test_loss =
    val_loss + 0.01, except where said."""
    rows = []
    for model, (n, best) in SWEEP_MODELS.items():
        for lr in SWEEP_LRS:
            for seed in (0, 1):
                val = sweep_val_loss(n) + 0.1 * math.log10(lr / best) ** 2 + 0.002 * seed
                test = val + 0.01
                if model == "m2" and lr == 1e-2:
                    test = val - 0.2  # best on test, not on validation
                if model == "m3" and lr == 1e-3:
                    val += -0.3 if seed == 0 else 0.4  # best single run, worse mean
                rows.append({"model": model, "method": "pretrain", "seed": seed,
                             "params.lr": lr, "params.tokens": 1_000_000,
                             "non_embedding_params": n, "val_loss": val,
                             "test_loss": test})  # fmt: skip
    return pd.DataFrame(rows)


def write_mc_task(folder: Path, name: str = "task", n: int = 30) -> Path:
    """A multiple-choice task file `<name>.yaml` and its data: which of three words ends a
    short sentence (the label is random: a tiny model is near chance, as it should be)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.jsonl", "w") as f:
        for _ in range(n):
            words = rng.sample(WORDS, 7)
            doc = {"text": " ".join(words[:4]), "options": words[4:], "label": rng.randrange(3)}
            f.write(json.dumps(doc) + "\n")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset: {name}.jsonl\ntest_split: test\n"
        "doc_to_text: '{{text}}'\ndoc_to_choice: '{{options}}'\ndoc_to_target: label\n"
    )
    return folder / f"{name}.yaml"


NAMES = ["Tom", "Ana", "Raj", "Mia", "Leo", "Kim"]
ITEMS = ["apples", "pens", "books", "coins", "cards"]


def math_problem(rng: random.Random) -> dict:
    """One GSM8K-format problem (question, answer with a rationale and `#### N`)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randrange(2, 20), rng.randrange(2, 20)
    return {
        "question": f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have?",
        "answer": f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.\n#### {a + b}",
    }


def write_math_dataset(folder: Path, sizes=(("train", 24), ("validation", 8), ("test", 8))) -> Path:
    """A folder of GSM8K-format train/validation/test `.jsonl` files of addition problems."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        with open(folder / f"{split}.jsonl", "w") as f:
            for _ in range(n):
                f.write(json.dumps(math_problem(rng)) + "\n")
    return folder


def save_tiny_math_lm(folder: Path, seed: int = 0, n_layer: int = 2) -> Path:
    """A random tiny GPT-2 with a byte-level BPE trained on math-problem text."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from scalelab.data.tokenizer import bpe_tokenizer
    from scalelab.data.tokenizer_spec import TokenizerSpec

    rng = random.Random(1)
    text = "\n".join(json.dumps(math_problem(rng)) + " [answer] Answer: Explanation: The answer is"
                     for _ in range(200))  # fmt: skip
    tok = bpe_tokenizer(TokenizerSpec(kind="bpe", vocab_size=400), text)
    eos = tok.eos_token_id
    config = GPT2Config(n_layer=n_layer, n_embd=32, n_head=2, vocab_size=len(tok), n_positions=256,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)  # fmt: skip
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_mcqa_file(path, n: int = 30, rationale: bool = False):
    """n two-to-four-option questions as local mcqa JSONL (answers alternate letter/index)."""
    rows = []
    for i in range(n):
        k = 2 + i % 3
        gold = i % k
        row = {"question": f"Which box holds ball {i}?",
               "choices": [f"box {j} of {i}" for j in range(k)],
               "answer": "ABCDEFGHIJ"[gold] if i % 2 else gold}  # fmt: skip
        if rationale:
            row["rationale"] = f"Ball {i} was put in box {gold}."
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def assert_spec_error(tmp_path, capsys, message: str, **spec) -> str:
    """`scalelab run --dry-run` of a spec made from `spec` fails with exit status 2 and one
    line matching the regex `message`, and writes nothing; returns the line."""
    import re

    path = write_spec(tmp_path / "bad.yaml", name="bad", output_dir=str(tmp_path / "out"), **spec)
    code, _, err = cli("run", path, "--dry-run", capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
    return err
