"""`scalelab serve` in a real subprocess, read through the HTTP backend and the openai client.

The HTTP backend must agree with the local backend on the same weights (scores to 1e-5, the
same greedy flags and greedy text); a rerun through the cache must send the server no
completion requests (counted by the server itself, at /metrics); and new weights behind the
same URL and name must change the fingerprint, so no stale answer is read back.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from scalelab.cli import main
from scalelab.data.tokenizer import bpe_tokenizer
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.models.backends import GenRequest, open_backend
from scalelab.models.backends.http import HttpBackend
from scalelab.models.backends.local import LocalBackend
from scalelab.testing import ServeProcess

SENTENCES = [
    "the cat sat on the mat.",
    "a dog ran to the big house.",
    "it was one red tree.",
    "the big dog sat on two mats.",
    "a cat ran to the red tree.",
]
PAIRS = [
    ("the cat sat", " on the mat"),
    ("a dog ran to", " the big red house and"),
    ("it was", " one"),
    ("the red ho", "use was big"),  # the boundary falls inside a token
    ("", "the cat"),  # empty context: the server reports what to condition on
    ("the cat", ""),
]
PROMPTS = ["the cat sat", "a dog ran", "the red house", "it was one", "a"]


def make_model(folder: Path, seed: int, steps: int = 40) -> None:
    """A tiny GPT-2 trained a few steps on simple sentences, saved with its BPE tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    rng = random.Random(0)
    text = " ".join(rng.choice(SENTENCES) for _ in range(400))
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


class Server:
    """Restartable `scalelab serve` (scalelab.testing.ServeProcess): `spawn` starts it,
    `wait` reads the URL it prints; a restart keeps the port of the first start.

    `args` are extra `scalelab serve` options (limits, `--host`, `--api-key`), `env` extra
    environment variables; both apply to every start."""

    def __init__(self, tmp: Path, args: Sequence[str] = (), env: dict[str, str] | None = None):
        self.tmp, self.port, self.starts = tmp, 0, 0
        self.args, self.env = list(args), dict(env or {})
        self.serve: ServeProcess | None = None

    def start(self, folder: Path, name: str = "tiny") -> None:
        self.spawn(folder, name)
        self.wait()

    def spawn(self, folder: Path, name: str = "tiny") -> None:
        self.starts += 1
        log = self.tmp / f"serve-{self.starts}.log"
        self.serve = ServeProcess(folder, log, name=name, port=self.port, args=self.args,
                                  env=self.env, home=self.tmp / "home")  # fmt: skip

    def wait(self, timeout: float = 600) -> None:
        assert self.serve is not None
        self.serve.wait(timeout)
        self.port = self.serve.port  # a restart listens on it again

    @property
    def url(self) -> str:
        return self.serve.url if self.serve else ""

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop()

    def metrics(self) -> dict:
        assert self.serve is not None
        return self.serve.get_json("/metrics", timeout=30)

    @property
    def model(self) -> str:
        return f"{self.url}#tiny"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """Model a (served first) and model b (other weights); b is made by `server`."""
    root = tmp_path_factory.mktemp("served")
    make_model(root / "a", seed=0)
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    srv.spawn(models[0])
    try:
        make_model(models[1], seed=1, steps=5)  # while the server imports torch
        srv.wait()
        yield srv
    finally:
        srv.stop()


def greedy_pairs(local: LocalBackend) -> list[tuple[str, str]]:
    """PAIRS plus greedy continuations, so both values of is_greedy are compared."""
    texts = local.generate([GenRequest(p, max_tokens=5) for p in PROMPTS[:3]])
    return PAIRS + list(zip(PROMPTS[:3], texts, strict=True))


def test_http_scores_equal_local_scores(models, server):
    local = open_backend(str(models[0]))
    pairs = greedy_pairs(local)
    http = open_backend(server.model, cache=False, batch_size=2, concurrency=4)
    assert isinstance(http, HttpBackend)
    want, got = local.loglikelihood(pairs), http.loglikelihood(pairs)
    for pair, w, g in zip(pairs, want, got, strict=True):
        assert g.logprob == pytest.approx(w.logprob, abs=1e-5), pair
        assert g.is_greedy == w.is_greedy, pair
    assert any(g.is_greedy for g in got[len(PAIRS) - 1 :]) and not all(g.is_greedy for g in got)
    texts = ["the cat sat on the mat.", "a dog"]
    assert http.loglikelihood_rolling(texts) == pytest.approx(
        local.loglikelihood_rolling(texts), abs=1e-5
    )
    assert http.fingerprint == local.fingerprint  # the server reports the weights digest


def test_http_greedy_text_equals_local(models, server):
    local = open_backend(str(models[0]))
    reqs = [GenRequest(p, max_tokens=8) for p in PROMPTS]
    reqs += [GenRequest("the cat sat", 8, stop=["mat", "."]), GenRequest("a dog", 0)]
    http = open_backend(server.model, cache=False, batch_size=3)
    want = local.generate(reqs)
    assert http.generate(reqs) == want
    assert want[-1] == "" and "mat" not in want[-2]


def test_rerun_through_the_cache_sends_no_completion_requests(models, server, tmp_path):
    cache = tmp_path / "requests.sqlite"
    reqs = [GenRequest(p, max_tokens=6) for p in PROMPTS]
    first_backend = open_backend(server.model, cache=cache)
    first = (first_backend.loglikelihood(PAIRS), first_backend.generate(reqs))
    before = server.metrics()["requests"]
    rerun_backend = open_backend(server.model, cache=cache)  # a new backend, as a rerun
    again = (rerun_backend.loglikelihood(PAIRS), rerun_backend.generate(reqs))
    after = server.metrics()["requests"]
    assert again == first
    assert after.get("completions", 0) == before.get("completions", 0)
    assert after.get("chat", 0) == before.get("chat", 0)


def test_openai_client_against_the_server(models, server):
    import openai

    local = open_backend(str(models[0]))
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    (entry,) = client.models.list().data
    assert entry.id == "tiny" and entry.model_extra["fingerprint"] == local.fingerprint
    done = client.completions.create(
        model="tiny", prompt="the cat sat", max_tokens=6, temperature=0
    )  # noqa: E501
    assert done.choices[0].text == local.generate([GenRequest("the cat sat", 6)])[0]
    echo = client.completions.create(
        model="tiny", prompt=["a dog", "the cat"], max_tokens=0, echo=True, logprobs=2
    )
    assert [c.text for c in echo.choices] == ["a dog", "the cat"]
    assert echo.choices[0].logprobs.token_logprobs[0] is None
    assert all(len(t) <= 2 for t in echo.choices[1].logprobs.top_logprobs[1:])
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "the cat"}], max_tokens=5,
        temperature=0,
    )  # fmt: skip
    # No chat template: the messages are joined as "role: content" lines.
    want = local.generate([GenRequest("user: the cat\nassistant:", 5)])[0]
    assert chat.choices[0].message.content == want
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="x", max_tokens=-1)


def test_new_weights_at_the_same_url_never_read_stale_answers(models, server, tmp_path):
    cache = tmp_path / "requests.sqlite"
    backend = open_backend(server.model, cache=cache)  # one backend across the restart
    old_fingerprint = backend.fingerprint
    old = backend.loglikelihood(PAIRS)
    server.stop()
    server.start(models[1])  # same port, same name, other weights
    assert server.model.startswith(f"http://127.0.0.1:{server.port}/")
    calls = server.metrics()["requests"].get("completions", 0)
    assert backend.fingerprint != old_fingerprint
    new = backend.loglikelihood(PAIRS)
    assert server.metrics()["requests"]["completions"] > calls  # asked the server again
    assert new != old
    want = open_backend(str(models[1])).loglikelihood(PAIRS)
    assert [g.logprob for g in new] == pytest.approx([w.logprob for w in want], abs=1e-5)


def test_unreachable_endpoint_retries_then_names_it():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = open_backend(
        f"http://127.0.0.1:{port}/v1#x", cache=False, max_retries=2, backoff=0.01
    )  # noqa: E501
    with pytest.raises(ScalelabError, match=rf"127.0.0.1:{port}.*failed after 3 tries"):
        backend.generate([GenRequest("hi", 3)])


def test_serve_bad_model_is_one_error_line(capsys):
    assert main(["serve", "no-such-model-here", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'no-such-model-here'")


@contextmanager
def fake_endpoint(answer: Callable[[dict], tuple[int, dict]]) -> Iterator[str]:
    """A stdlib HTTP server standing in for a remote OpenAI-compatible API (one behaviour a
    real one has, on demand): `answer(body) -> (status, JSON)` for each completion request;
    GET (the model list) names one model `m`. Yields the model reference `http://.../v1#m`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Endpoint(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

        def do_POST(self):  # noqa: N802
            self._send(*answer(json.loads(self.rfile.read(int(self.headers["Content-Length"])))))

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1#m"
    finally:
        httpd.shutdown()


def completion(texts: list[str], logprobs: dict | None = None, **extra) -> dict:
    """An OpenAI completions response with one choice per text."""
    return {"id": "x", "object": "text_completion", "created": 0, "model": "m", **extra,
            "choices": [{"index": i, "text": t, "finish_reason": "length",
                         "logprobs": logprobs} for i, t in enumerate(texts)]}  # fmt: skip


def test_http_backend_retries_429_and_5xx_but_not_400():
    """An endpoint that fails twice (503, then 429) before answering."""
    hits: list[str] = []

    def flaky(body: dict) -> tuple[int, dict]:
        hits.append(body["prompt"][0])
        status = 400 if body["prompt"][0] == "bad" else {1: 503, 2: 429}.get(len(hits), 200)
        return status, completion([" ok"]) if status == 200 else {"error": {"message": "no"}}

    with fake_endpoint(flaky) as url:
        backend = open_backend(url, cache=False, backoff=0.01, max_retries=3)
        assert backend.generate([GenRequest("hi", 2)]) == [" ok"] and len(hits) == 3
        with pytest.raises(ScalelabError, match="refused a completion.*HTTP 400"):
            backend.generate([GenRequest("bad", 2)])
        assert len(hits) == 4  # a 400 is not retried


def test_http_backend_names_what_a_llama_cpp_like_server_cannot_do():
    """An endpoint that acts as llama-cpp-python's 0.3.36 server does: several prompts in
    one request are a 500; echo with max_tokens=0 generates on after the prompt."""

    def llama_like(body: dict) -> tuple[int, dict]:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if len(prompts) > 1:
            return 500, {"error": {"message": ""}}
        if body.get("echo"):
            return 200, completion([prompts[0] + " and on"], {
                "tokens": ["a", " b"], "text_offset": [0, 1], "token_logprobs": [None, -1.0],
                "top_logprobs": [None, {" b": -1.0}]})  # fmt: skip
        return 200, completion([" ok"])

    with fake_endpoint(llama_like) as url:
        batched = open_backend(url, cache=False, backoff=0.01, max_retries=1)
        with pytest.raises(ScalelabError, match="2 prompts.*pass batch_size=1"):
            batched.generate([GenRequest("hi", 2), GenRequest("ho", 2)])
        one = open_backend(url, cache=False, batch_size=1, max_retries=0)
        assert one.generate([GenRequest("hi", 2), GenRequest("ho", 2)]) == [" ok", " ok"]
        with pytest.raises(ScalelabError, match="cannot score.*max_tokens=0.*local backend"):
            one.loglikelihood([("a", " b")])


def test_generations_carry_the_usage_and_dollars_an_endpoint_reports(tmp_path):
    """A hosted API reports tokens (and, some, dollars) per request: shared over its answers
    so totals stay right, kept through the request cache."""
    from dataclasses import replace

    hits: list[int] = []

    def billing(body: dict) -> tuple[int, dict]:
        hits.append(len(body["prompt"]))
        answer = completion([f" a{i}" for i in range(len(body["prompt"]))], usage={
            "prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12, "cost": 0.002})  # fmt: skip
        answer["choices"][0]["finish_reason"] = "stop"
        return 200, answer

    with fake_endpoint(billing) as url:
        backend = open_backend(url, cache=tmp_path / "requests.sqlite", batch_size=2)
        reqs = [GenRequest("p0", 3), GenRequest("p1", 3)]
        first = backend.generate_full(reqs)
        again = backend.generate_full(reqs)
    assert hits == [2]  # one request for both prompts; the second call is all cache hits
    assert [(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens) for g in first] == [
        (" a0", "stop", 4, 3), (" a1", "length", 3, 2)]  # fmt: skip
    assert sum(g.cost for g in first) == pytest.approx(0.002)
    assert not any(g.cached for g in first) and all(g.cached for g in again)
    assert [replace(g, cached=False) for g in again] == first
    assert backend.stats == {"hits": 2, "misses": 2}
