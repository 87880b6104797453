"""Greedy generation batches prompts of different lengths (left padding + attention mask);
a request's output in a mixed batch must equal its output alone.

Random-weight tiny GPT-2 and Llama models (fp32, CPU) with the word-level test tokenizer of
tests/helpers.py: GPT-2 style without a pad token (pad = EOS) and with its own [PAD].
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from helpers import WORDS, _tokenizer

from scalelab.models.backends import GenRequest
from scalelab.models.backends import generation as gen
from scalelab.models.backends.local import LocalBackend


def _gpt2(vocab: int, eos: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=128,
        bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg)


def _llama(vocab: int, eos: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def backend(request):
    with_pad = request.param == "llama"  # Llama gets a separate [PAD]; GPT-2 pads with EOS
    tok = _tokenizer(with_pad=with_pad)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        build = _gpt2 if request.param == "gpt2" else _llama
        module = build(len(tok), tok.eos_token_id).eval()
    return LocalBackend.from_module(module, tok, batch_size=4)


def _requests(backend, n: int = 10, seed: int = 0) -> list[GenRequest]:
    """Prompts of 1..20 words and several token budgets; every third request stops at the
    third word its greedy text would have (so rows end early by a stop string)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
        req = GenRequest(prompt, max_tokens=rng.choice([3, 8, 12]))
        words = backend.generate([req])[0].split()
        if k % 3 == 0 and len(words) > 2:
            req = GenRequest(prompt, max_tokens=req.max_tokens, stop=(" " + words[2],))
        out.append(req)
    return out


def test_mixed_batch_equals_alone(backend, monkeypatch):
    reqs = _requests(backend)
    alone = [backend.generate_full([r])[0] for r in reqs]
    calls = []
    real = backend.module.generate

    def counted(**kw):
        calls.append(kw["input_ids"].shape)
        return real(**kw)

    monkeypatch.setattr(backend.module, "generate", counted)
    mixed = backend.generate_full(reqs)
    assert mixed == alone  # text, finish reason and both token counts
    # 10 requests of different lengths, batch_size 4: three calls, not ten
    assert [shape[0] for shape in calls] == [4, 4, 2]
    assert len({len(backend.tokenizer(r.prompt)["input_ids"]) for r in reqs}) > 3
    assert any(g.finish_reason == "stop" for g in mixed)  # stop words did end some rows


def test_batches_are_sorted_by_length_and_unsafe_modules_are_not_padded(monkeypatch):
    prepared = [([0] * n, 5) for n in (3, 7, 3, 5, 7, 1)]
    fake = SimpleNamespace(batch_size=2, module=SimpleNamespace(forward=lambda position_ids: 0))
    assert gen._greedy_batches(fake, prepared, list(range(6))) == [[1, 4], [3, 0], [2, 5]]
    # a forward without position_ids would see shifted positions: equal lengths only
    fake.module = SimpleNamespace(forward=lambda input_ids, attention_mask=None: 0)
    assert gen._greedy_batches(fake, prepared, list(range(6))) == [[1, 4], [3], [0, 2], [5]]
    # a PEFT wrapper takes **kwargs; the model it wraps decides
    inner = SimpleNamespace(forward=lambda input_ids, position_ids=None: 0)
    fake.module = SimpleNamespace(forward=lambda **kw: 0, get_base_model=lambda: inner)
    assert gen._greedy_batches(fake, prepared, list(range(6))) == [[1, 4], [3, 0], [2, 5]]


def test_left_pad_layout():
    x, mask = gen._left_pad([[5, 6, 7], [8]], pad=0, device="cpu")
    assert x.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
