"""The local backend against hand computations, and the request cache.

A tiny GPT-2 (1 layer, width 32) is trained for a few dozen steps on random sentences, so its
greedy text is plain words, and saved with a BPE tokenizer trained on the same sentences.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scalelab.data.tokenizer import bpe_tokenizer
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.models.backends import (
    Backend,
    CachingBackend,
    GenRequest,
    RequestCache,
    open_backend,
)
from scalelab.models.backends.local import LocalBackend

# Sentences with a learnable structure (each word mostly predicts the next one).
SENTENCES = [
    "the cat sat on the mat.",
    "a dog ran to the big house.",
    "it was one red tree.",
    "the big dog sat on two mats.",
    "a cat ran to the red tree.",
]
PAIRS = [
    ("the cat sat", " on the mat"),  # a clean token boundary
    ("a dog ran to", " the big red house and"),
    ("it was", " one"),
    ("the big", " "),  # continuation of whitespace only
    ("the red ho", "use was big"),  # the boundary falls inside a token
    ("", "the cat"),  # empty context: conditioned on <|endoftext|>
]


def sentences(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(SENTENCES) for _ in range(n))


def make_model(folder: Path, seed: int, steps: int = 40):
    """Train a tiny GPT-2 for a few steps and save it (with its tokenizer) to `folder`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    text = sentences(400)
    with pytest.MonkeyPatch.context() as mp:  # the BPE cache goes to a throwaway home
        mp.setenv("SCALELAB_HOME", str(folder.parent / f".home-{folder.name}"))
        tok = bpe_tokenizer(TokenizerSpec(kind="bpe", vocab_size=300), text)
    eos = tok.eos_token_id
    config = GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok), n_positions=64,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        ids = torch.tensor(tok(text)["input_ids"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - 33, (16,))
            batch = torch.stack([ids[s : s + 32] for s in starts])
            model(input_ids=batch, labels=batch).loss.backward()
            opt.step()
            opt.zero_grad()
    torch.set_num_threads(threads)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model.eval(), tok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model, tok = make_model(folder, seed=0)
    return folder, model, tok


def loaded(folder: Path) -> tuple:
    backend = open_backend(str(folder))
    return backend.module, backend.tokenizer


def manual(model, tok, context: str, continuation: str) -> tuple[float, bool, int]:
    """log p(continuation | context) from one unbatched forward pass and log_softmax."""
    ctx = tok(context)["input_ids"] if context else [tok.eos_token_id]
    ids = (
        tok(context + continuation)["input_ids"]
        if context
        else ctx + tok(continuation)["input_ids"]
    )  # noqa: E501
    # Which tokens are the continuation's: those ending after the context's last character.
    ends = [
        e for _, e in tok(context + continuation, return_offsets_mapping=True)["offset_mapping"]
    ]  # noqa: E501
    first = next(i for i, e in enumerate(ends) if e > len(context)) if context else 1
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    targets = range(first, len(ids))
    total = sum(logp[i - 1, ids[i]].item() for i in targets)
    greedy = all(logp[i - 1].argmax().item() == ids[i] for i in targets)
    return total, greedy, len(targets)


def test_loglikelihood_equals_manual_log_softmax(tiny):
    folder, model, tok = tiny
    backend = open_backend(str(folder))
    assert isinstance(backend, LocalBackend)  # local backends are not cached by default
    got = backend.loglikelihood(PAIRS)
    for (context, continuation), (logprob, greedy, n) in zip(PAIRS, got, strict=True):
        want, want_greedy, want_n = manual(model, tok, context, continuation)
        assert logprob == pytest.approx(want, abs=1e-5), (context, continuation)
        assert greedy == want_greedy and n == want_n
        assert logprob < 0
    assert backend.loglikelihood([("the cat", "")]) == [(0.0, True, 0)]


def test_batched_equals_unbatched(tiny):
    folder, _, _ = tiny
    pairs = PAIRS + [(sentences(1, seed=s), " the cat") for s in range(6)]
    batched = LocalBackend.from_module(*loaded(folder), batch_size=16)
    single = open_backend(str(folder), batch_size=1)
    for a, b in zip(batched.loglikelihood(pairs), single.loglikelihood(pairs), strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
        assert a.is_greedy == b.is_greedy


def test_greedy_generation_scores_as_greedy_and_is_deterministic(tiny):
    folder, _, _ = tiny
    backend = open_backend(str(folder))
    prompts = ["the cat sat", "a dog ran", "the red house", "it was one"]
    texts = backend.generate([GenRequest(p, max_tokens=6) for p in prompts])
    assert all(texts) and texts == [backend.generate([GenRequest(p, 6)])[0] for p in prompts]
    scored = backend.loglikelihood(list(zip(prompts, texts, strict=True)))
    assert all(s.is_greedy for s in scored), (texts, scored)
    stop = texts[0].split()[1]  # the second word: the completion ends before it
    (cut,) = backend.generate([GenRequest(prompts[0], 6, stop=[stop])])
    assert cut == texts[0][: texts[0].index(stop)]
    assert backend.generate([GenRequest("the cat", max_tokens=0)]) == [""]


def test_seeded_sampling_repeats_and_leaves_the_global_rng_alone(tiny):
    folder, _, _ = tiny
    backend = open_backend(str(folder))
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    reqs = [GenRequest("the cat", 12, temperature=1.5, seed=s) for s in (1, 1, 2)]
    a, b, c = backend.generate(reqs)
    assert a == b and a != c
    assert torch.equal(torch.rand(1), expected_next)


def test_rolling_equals_manual_and_long_texts_use_windows(tiny):
    folder, model, tok = tiny
    backend = open_backend(str(folder))
    text = "the cat sat on the mat"
    want, _, _ = manual(model, tok, "", text)
    long = sentences(20)  # several 64-token windows
    short_lp, long_lp = backend.loglikelihood_rolling([text, long])
    assert short_lp == pytest.approx(want, abs=1e-5)
    assert long_lp < short_lp and long_lp == pytest.approx(backend.loglikelihood_rolling([long])[0])


def test_fingerprints(tiny, tmp_path, monkeypatch):
    folder, _, _ = tiny
    import scalelab.data.sources as sources

    hashed = []
    real = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda p: hashed.append(p) or real(p))
    first = open_backend(str(folder)).fingerprint
    assert first.startswith("sha256:") and open_backend(str(folder)).fingerprint == first
    assert len(hashed) == len(list(folder.iterdir()))  # memoised: each file hashed once
    other = tmp_path / "other"
    make_model(other, seed=1, steps=2)
    assert open_backend(str(other)).fingerprint != first
    # In memory: the digest follows the weights through an optimizer step.
    live = LocalBackend.from_module(*loaded(folder))
    before = live.fingerprint
    with torch.no_grad():
        next(live.module.parameters()).add_(1.0)
    assert live.fingerprint != before
    # A Hub model is fingerprinted by id@revision without loading it (here: cached offline).
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "hf" / "models--org--name" / "snapshots" / "abc123").mkdir(parents=True)
    assert open_backend("org/name@abc123").fingerprint == "hub:org/name@abc123"


def test_open_backend_errors(tiny):
    folder, _, _ = tiny
    with pytest.raises(ScalelabError, match="untrained ladder config"):
        open_backend("gpt-d1")
    with pytest.raises(ScalelabError, match="unknown option"):
        open_backend(str(folder), temperature=3)
    with pytest.raises(ScalelabError, match="unknown model"):
        open_backend("no such model")
    with pytest.raises(ScalelabError, match="loglikelihood request must be"):
        open_backend(str(folder)).loglikelihood(["just one string"])


def test_an_encoder_without_a_language_model_head_is_refused(tmp_path, capsys):
    """A BERT checkpoint loads as BertLMHeadModel with a random prediction head: scoring
    or serving it would answer noise under the weights' fingerprint, so it is refused."""
    from helpers import cli, save_tiny

    folder = save_tiny(tmp_path / "bert", "bert")
    with pytest.raises(ScalelabError, match=r"no trained language-model head.*BertLMHeadModel"):
        open_backend(str(folder)).module  # noqa: B018
    code, _, err = cli("serve", str(folder), "--port", "0", capsys=capsys)
    last = err.strip().splitlines()[-1]  # above it: transformers' own loading bars
    assert code == 2 and last.startswith("error: model") and "language-model head" in last, err


# --- the request cache -------------------------------------------------------------------

WRITER = """
import sys
from scalelab.models.backends.cache import RequestCache
cache = RequestCache(sys.argv[1])
me = int(sys.argv[2])
for start in range(0, 300, 10):
    # overlapping keys: both processes write keys 0..299, each its own batch order
    keys = [f"k{(start + i + me * 150) % 300}" for i in range(10)]
    cache.put_many({k: {"v": k, "by": me} for k in keys}, "test")
    assert set(cache.get_many(keys)) == set(keys)
"""


def test_cache_concurrent_first_use_by_two_processes(tmp_path):
    path = tmp_path / "fresh" / "requests.sqlite"
    path.parent.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(me)], stderr=subprocess.PIPE)  # noqa: E501
        for me in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    cache = RequestCache(path)
    got = cache.get_many([f"k{i}" for i in range(300)])
    assert len(got) == 300 and all(v["v"] == k for k, v in got.items())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


class Counting(Backend):
    """A real local backend that counts the requests reaching it."""

    def __init__(self, inner: LocalBackend) -> None:
        self.inner, self.calls = inner, 0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def loglikelihood(self, requests):
        self.calls += len(requests)
        return self.inner.loglikelihood(requests)

    def loglikelihood_rolling(self, texts):
        self.calls += len(texts)
        return self.inner.loglikelihood_rolling(texts)

    def generate(self, requests):
        self.calls += len(requests)
        return self.inner.generate(requests)


def test_caching_backend_reruns_free_and_never_serves_another_model(tiny, tmp_path):
    folder, _, _ = tiny
    other = tmp_path / "other"
    make_model(other, seed=2, steps=2)
    cache = RequestCache(tmp_path / "c.sqlite")
    counting = Counting(open_backend(str(folder)))
    backend = CachingBackend(counting, cache)
    gens = [GenRequest("the cat", 5), GenRequest("a dog", 5, temperature=1.0)]  # 2nd: unseeded
    first = (backend.loglikelihood(PAIRS + PAIRS[:1]), backend.generate(gens))
    assert counting.calls == len(PAIRS) + 2  # a repeated request is computed once
    again = (backend.loglikelihood(PAIRS), backend.generate(gens[:1]))
    assert counting.calls == len(PAIRS) + 2 and again[0] == first[0][: len(PAIRS)]
    assert again[1] == first[1][:1]
    backend.generate(gens[1:])  # sampling without a seed is never cached
    assert counting.calls == len(PAIRS) + 3
    # A damaged row is recomputed, not trusted.
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE requests SET value = '[0.0, true]' WHERE method LIKE '%loglik%'")
    counting.calls = 0
    assert backend.loglikelihood(PAIRS[:2]) == first[0][:2] and counting.calls == 2
    # Other weights, same cache: every answer is recomputed, none read back.
    swapped = CachingBackend(Counting(open_backend(str(other))), cache)
    fresh = swapped.loglikelihood(PAIRS)
    assert swapped.inner.calls == len(PAIRS) and fresh != first[0][: len(PAIRS)]


def test_choices_sharing_a_long_context_score_as_alone(tiny, monkeypatch):
    """A question's choices run their shared context once (spans.score_shared): each score
    must equal the independent log_softmax of that request alone."""
    from scalelab.models.backends import spans

    folder, model, tok = tiny
    context = sentences(4, seed=3)
    # The tiny model's 64-token window: a lower bar for "long", and count the shared calls.
    monkeypatch.setattr(spans, "SHARE_MIN_TOKENS", 16)
    assert len(tok(context)["input_ids"]) >= 16
    calls = []
    real = spans.score_shared
    monkeypatch.setattr(spans, "score_shared", lambda *a: calls.append(a) or real(*a))
    choices = [" the cat sat", " the cat ran to the big red house", " a", "", " the big dog"]
    pairs = [(context, c) for c in choices] + [("a dog", " ran")]  # plus a short request
    backend = open_backend(str(folder), batch_size=3)  # the choices split over two chunks
    backend._packing = False  # the key/value-cache path (packing is tested below)
    got = backend.loglikelihood(pairs)
    for (ctx, cont), (logprob, greedy, n) in zip(pairs, got, strict=True):
        if not cont:
            assert (logprob, greedy, n) == (0.0, True, 0)
            continue
        want, want_greedy, want_n = manual(model, tok, ctx, cont)
        assert logprob == pytest.approx(want, abs=1e-4), cont
        assert (greedy, n) == (want_greedy, want_n)
    assert [len(c[1]) for c in calls] == [3, 1]  # four choices (one empty) in chunks of 3


def _packed_pairs():
    """Three questions (one context each, choices of 1..8 tokens, one empty) and lone
    requests, interleaved as score_questions never would."""
    pairs = []
    for seed, choices in (
        (3, [" the cat sat", " the cat ran to the big red house", " a", "", " the big dog"]),
        (5, [" it", " was"]),  # one-token choices: scored from the context's last logits
        (7, [" on the mat.", " to the red tree.", " house"]),
    ):
        pairs += [(sentences(2, seed=seed), c) for c in choices]
    return pairs + [("a dog", " ran"), ("", "the cat"), ("the red ho", "use was big")]


def _check_against_manual(model, tok, pairs, got, tol=1e-4):
    for (ctx, cont), (logprob, greedy, n) in zip(pairs, got, strict=True):
        if not cont:
            assert (logprob, greedy, n) == (0.0, True, 0)
            continue
        want, want_greedy, want_n = manual(model, tok, ctx, cont)
        assert logprob == pytest.approx(want, abs=tol), (ctx, cont)
        assert (greedy, n) == (want_greedy, want_n), (ctx, cont)


def test_packed_questions_score_as_alone(tiny, monkeypatch):
    """Several questions packed into one batch (spans.score_packed: context once, each
    choice's tokens masked from the other choices, positions restarting per choice) give
    each request the score of its own unbatched log_softmax, in one forward call."""
    from scalelab.models.backends import spans

    folder, model, tok = tiny
    calls = []
    real = spans.score_packed
    monkeypatch.setattr(spans, "score_packed", lambda *a: calls.append(a) or real(*a))
    pairs = _packed_pairs()
    backend = open_backend(str(folder), batch_size=8)
    got = backend.loglikelihood(pairs)
    assert backend._packing is True  # the first group agreed with ordinary rows
    _check_against_manual(model, tok, pairs, got)
    # one call for the agreement check, then one for all three questions
    assert [len(c[1]) for c in calls] == [1, 3]
    assert sorted(len(item[1]) for item in calls[1][1]) == [2, 3, 4]  # the empty one skipped
    # in batches of 2 questions: the same numbers
    small = open_backend(str(folder), batch_size=2)
    for a, b in zip(small.loglikelihood(pairs), got, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5) and a[1:] == b[1:]


@pytest.mark.parametrize("failure", ["raises", "ignores the mask"])
def test_packing_falls_back_when_the_model_does_not_honour_it(tiny, monkeypatch, failure):
    """A model whose packed scores disagree with ordinary rows (or that rejects the packed
    call) is scored through the key/value cache and ordinary batches, with right numbers."""
    from scalelab.models.backends import spans

    folder, model, tok = tiny

    real = spans.score_packed

    class MaskIgnored:  # what a model that drops the custom mask computes
        def __init__(self, module):
            self.module = module

        def parameters(self):
            return self.module.parameters()

        def __call__(self, **kwargs):
            kwargs.pop("attention_mask")
            return self.module(**kwargs)

    def broken(module, items, pad):
        if failure == "raises":
            raise TypeError("forward() got an unexpected keyword argument 'position_ids'")
        return real(MaskIgnored(module), items, pad)

    monkeypatch.setattr(spans, "score_packed", broken)
    monkeypatch.setattr(spans, "SHARE_MIN_TOKENS", 16)
    pairs = _packed_pairs()
    backend = open_backend(str(folder), batch_size=8)
    one_token = [(sentences(2, seed=5), c) for c in (" it", " was")]
    got = backend.loglikelihood(one_token)  # one-token choices: the mask cannot matter
    assert backend._packing is (False if failure == "raises" else None)
    _check_against_manual(model, tok, one_token, got)
    got = backend.loglikelihood(pairs)
    assert backend._packing is False
    _check_against_manual(model, tok, pairs, got)


def test_long_requests_keep_lm_evals_window(tiny):
    """A request longer than the window keeps its last max_length + 1 tokens and feeds all
    but the last (lm-eval's left truncation), on every path: alone, packed, via the cache."""
    folder, model, tok = tiny
    context = sentences(20, seed=1)  # several times the 64-token window
    choices = [" the cat sat", " a dog ran to the big house", " it"]
    pairs = [(context, c) for c in choices]
    want = []
    for c in choices:
        ids = tok(context + c)["input_ids"]
        n = len(tok(context + c)["input_ids"]) - len(tok(context)["input_ids"])
        window = ids[-65:]  # n_positions + 1
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([window[:-1]])).logits[0], -1)
        want.append(sum(logp[i - 1, window[i]].item() for i in range(65 - n, 65)))
    for packing in (None, False):
        backend = open_backend(str(folder), batch_size=4)
        backend._packing = packing
        got = [r.logprob for r in backend.loglikelihood(pairs)]
        assert got == pytest.approx(want, abs=1e-4), packing
        got = [backend.loglikelihood([p])[0].logprob for p in pairs]  # alone
        assert got == pytest.approx(want, abs=1e-4)
