"""scalelab's HttpBackend against a real llama.cpp server (`python -m llama_cpp.server`, the
optional `scalelab[llama]` extra) on the registered SmolLM2-135M GGUF (98 MB from PyPI).

What works (llama-cpp-python 0.3.36): greedy generation, one prompt per request
(`batch_size=1`; several prompts in one request are an HTTP 500, which the backend's error
names), with requests in flight on `concurrency` threads (the server answers them one at a
time). What does not: scoring. Echo with max_tokens=0 generates on (0 means "no limit"
there), and its echoed prompt logprobs are shifted by one token for a model that adds no
BOS; the backend refuses that with an error saying to score with the local backend.

Skipped where llama_cpp is not installed or pip cannot reach PyPI.
"""

from __future__ import annotations

import pytest

from scalelab.errors import ScalelabError
from scalelab.models.backends import GenRequest, open_backend

try:
    import llama_cpp.server  # noqa: F401
except ImportError:
    pytest.skip(
        "llama_cpp (llama-cpp-python[server]) is not installed: pip install 'scalelab[llama]'",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

PROMPT = "Question: What is 2+3?\nAnswer:"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A llama.cpp server on smollm2-135m's GGUF file (fetched into this module's first
    test's scalelab home), stopped after the module."""
    from scalelab.models.registry import PRETRAINED
    from scalelab.testing import LlamaCppServer

    entry = PRETRAINED.get("smollm2-135m")
    try:
        gguf = entry.locate() / str(entry.gguf_file)
    except ScalelabError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI unreachable: {exc}")
        raise
    log = tmp_path_factory.mktemp("llama") / "server.log"
    # A small context bounds what the server generates when it is (wrongly) asked to score.
    proc = LlamaCppServer(gguf, log, name="smollm2", n_ctx=512, threads=1)
    try:
        proc.wait()
        yield proc
    finally:
        proc.stop()


def test_generate_through_http_backend(server):
    backend = open_backend(server.model, cache=False, batch_size=1, concurrency=2)
    prompts = [PROMPT, "Question: What is 10-4?\nAnswer:", PROMPT]
    texts = backend.generate([GenRequest(p, max_tokens=16) for p in prompts])
    assert texts[0].strip().startswith("5")  # measured: " 5\nExplanation: The answer is 5."
    assert texts[2] == texts[0]  # greedy: the same prompt gives the same text
    assert texts[1].strip() and texts[1] != texts[0]  # measured: " 10-4 = 2\nThe answer is: 2"
    stopped = backend.generate([GenRequest(PROMPT, max_tokens=16, stop=("\n",))])
    assert stopped == [texts[0].split("\n")[0]]
    assert backend.fingerprint == f"{server.url}#smollm2"  # /models lists the alias


def test_several_prompts_per_request_are_named(server):
    backend = open_backend(server.model, cache=False, batch_size=4, max_retries=0)
    with pytest.raises(ScalelabError, match="2 prompts.*pass batch_size=1"):
        backend.generate([GenRequest(PROMPT, 4), GenRequest("Hello", 4)])


def test_scoring_is_refused_with_a_clear_error(server):
    backend = open_backend(server.model, cache=False, batch_size=1, max_retries=0)
    with pytest.raises(ScalelabError, match="cannot score.*local backend"):
        backend.loglikelihood([("The capital of France is", " Paris")])
