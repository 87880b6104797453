"""Helpers for tests that drive the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml

from scalelab.cli import main


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


def cli(*args: str, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err
