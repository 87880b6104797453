"""What `scalelab serve` refuses, against real server processes over real HTTP.

One server runs with small caps (so each is cheap to cross) and no key; every cap and every
kind of malformed request must get its 4xx with an OpenAI-style error body naming the limit,
and the server must answer a valid request right after each. A second server listens on all
interfaces with an API key: no token or a wrong one is 401, the right one 200. Without a key
a non-loopback `--host` is refused before the model loads.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_serve import Server, make_model

from scalelab.cli import main
from scalelab.models.backends import GenRequest, open_backend

KEY = "test-key-0123456789"
CAPS = {
    "--max-prompts": "4", "--max-n": "2", "--max-tokens": "8", "--max-prompt-tokens": "64",
    "--max-request-bytes": "16384", "--max-batch": "2",
}  # fmt: skip
CHAT = "/v1/chat/completions"
DONE = "/v1/completions"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("limits") / "m"
    make_model(folder, seed=0, steps=2)  # the weights do not matter here, only the refusals
    return folder


@pytest.fixture(scope="module")
def servers(folder, tmp_path_factory):
    """(capped server, keyed server on 0.0.0.0), started side by side (imports dominate)."""
    capped = Server(tmp_path_factory.mktemp("capped"), [a for kv in CAPS.items() for a in kv])
    keyed = Server(tmp_path_factory.mktemp("keyed"), ["--host", "0.0.0.0", "--api-key", KEY])
    try:
        capped.spawn(folder)
        keyed.spawn(folder)
        capped.wait()
        keyed.wait()
        yield capped, keyed
    finally:
        capped.stop()
        keyed.stop()


@pytest.fixture(scope="module")
def capped(servers) -> Server:
    return servers[0]


@pytest.fixture(scope="module")
def keyed(servers) -> Server:
    return servers[1]


def call(
    server: Server,
    path: str,
    body: bytes | dict | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict | None]:
    """(status, JSON answer or None) for one request; `body` bytes are sent as they are."""
    where = urlsplit(server.url)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": "application/json", **(headers or {})}
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, None


def assert_openai_error(status: int, answer: dict | None, want: int) -> str:
    """The status is `want` and the body is {"error": {message, type, param, code}}."""
    assert status == want, answer
    assert answer is not None and set(answer["error"]) >= {"message", "type", "param", "code"}
    assert answer["error"]["type"] == "invalid_request_error"
    return answer["error"]["message"]


def assert_still_serving(server: Server, headers: dict[str, str] | None = None) -> None:
    status, answer = call(
        server, DONE, {"model": "tiny", "prompt": "the cat", "max_tokens": 2, "temperature": 0},
        headers=headers,
    )  # fmt: skip
    assert status == 200, answer
    assert len(answer["choices"]) == 1


def completion(**fields) -> dict:
    return {"model": "tiny", "prompt": "the cat", "max_tokens": 2, **fields}


def chat(**fields) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **fields}


LONG = "the cat sat on the mat. " * 16  # well over 64 tokens, well under 16 kB

CAP_CASES = {
    "prompts": (DONE, completion(prompt=["a"] * 5), 413, "--max-prompts"),
    "prompts_times_n": (DONE, completion(prompt=["a"] * 3, n=2), 413, "--max-prompts"),
    "n": (DONE, completion(n=3), 400, "--max-n"),
    "max_tokens": (DONE, completion(max_tokens=9), 400, "--max-tokens"),
    "prompt_tokens": (DONE, completion(prompt=["a", LONG]), 413, "--max-prompt-tokens"),
    "chat_n": (CHAT, chat(n=3), 400, "--max-n"),
    "chat_max_tokens": (CHAT, chat(max_tokens=9), 400, "--max-tokens"),
    "chat_max_completion_tokens": (CHAT, chat(max_completion_tokens=99), 400, "--max-tokens"),
    "chat_prompt_tokens": (
        CHAT,
        chat(messages=[{"role": "user", "content": LONG}]),
        413,
        "--max-prompt-tokens",
    ),  # fmt: skip
    "body_bytes": (DONE, completion(prompt="a" * 17_000), 413, "--max-request-bytes"),
    "body_megabyte": (DONE, completion(prompt="a" * 2**20), 413, "--max-request-bytes"),
}


@pytest.mark.parametrize("case", list(CAP_CASES))
def test_each_cap_is_a_4xx_naming_its_limit(capped, case):
    path, body, want, option = CAP_CASES[case]
    message = assert_openai_error(*call(capped, path, body), want)
    assert option in message and "limit" in message
    assert_still_serving(capped)


def test_within_the_caps_is_answered_in_batches_no_larger_than_max_batch(capped):
    status, answer = call(capped, DONE, completion(prompt=["a", "b"], n=2, temperature=0))
    assert status == 200, answer
    texts = [c["text"] for c in answer["choices"]]
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: each prompt's n agree
    status, answer = call(capped, CHAT, chat(n=2, max_tokens=8, seed=1))
    assert status == 200 and len(answer["choices"]) == 2, answer
    status, answer = call(capped, DONE, completion(prompt=["a"] * 4, echo=True, logprobs=1))
    assert status == 200 and len(answer["choices"]) == 4, answer
    assert call(capped, "/metrics", method="GET")[1]["largest_batch"] <= 2


SURROGATE = b'{"model": "tiny", "prompt": "ab\\ud800cd"}'
MALFORMED = {
    "bad_json": (DONE, b'{"model": "tiny", "prompt": ', 400),
    "trailing_garbage": (DONE, b'{"model": "tiny", "prompt": "x"} }', 400),
    "empty_body": (DONE, b"", 400),
    "array_body": (DONE, b"[1, 2]", 400),
    "null_body": (DONE, b"null", 400),
    "string_body": (DONE, b'"hello"', 400),
    "not_json_content_type": (DONE, "text/plain", 400),
    "prompt_int": (DONE, completion(prompt=5), 400),
    "prompt_token_ids": (DONE, completion(prompt=[1, 2, 3]), 400),
    "prompt_dict": (DONE, completion(prompt={"a": 1}), 400),
    "model_list": (DONE, completion(model=["tiny"]), 400),
    "max_tokens_string": (DONE, completion(max_tokens="lots"), 400),
    "max_tokens_fraction": (DONE, completion(max_tokens=2.5), 400),
    "echo_object": (DONE, completion(echo={"a": 1}), 400),
    "stop_number": (DONE, completion(stop=5), 400),
    "messages_string": (CHAT, chat(messages="hi"), 400),
    "message_no_role": (CHAT, chat(messages=[{"content": "hi"}]), 400),
    "content_number": (CHAT, chat(messages=[{"role": "user", "content": 5}]), 400),
    "missing_model": (DONE, {"prompt": "x"}, 400),
    "missing_prompt": (DONE, {"model": "tiny"}, 400),
    "missing_messages": (CHAT, {"model": "tiny"}, 400),
    "negative_max_tokens": (DONE, completion(max_tokens=-1), 400),
    "negative_n": (DONE, completion(n=-1), 400),
    "zero_n": (CHAT, chat(n=0), 400),
    "negative_logprobs": (DONE, completion(logprobs=-2), 400),
    "negative_temperature": (DONE, completion(temperature=-0.5), 400),
    "negative_chat_max_tokens": (CHAT, chat(max_tokens=-5), 400),
    "huge_max_tokens": (DONE, completion(max_tokens=10**30), 400),
    "huge_n": (DONE, completion(n=10**20), 400),
    "huge_logprobs": (DONE, completion(logprobs=10**9), 400),
    "huge_seed": (DONE, completion(seed=10**30, temperature=1.0), 400),
    "huge_temperature": (DONE, completion(temperature=1e308), 400),
    "infinite_temperature": (DONE, b'{"model": "tiny", "prompt": "x", "temperature": 1e999}', 400),
    "nan_temperature": (DONE, b'{"model": "tiny", "prompt": "x", "temperature": NaN}', 400),
    "nan_top_p": (CHAT, json.dumps(chat(top_p=float("nan"))).encode(), 400),
    "int_of_5000_digits": (
        DONE,
        b'{"model": "tiny", "prompt": "x", "n": 1' + b"0" * 5000 + b"}",
        400,
    ),
    "deep_nesting": (DONE, b'{"model": "tiny", "prompt": ' + b"[" * 10_000, 400),
    "lone_surrogate_prompt": (DONE, SURROGATE, 400),
    "lone_surrogate_in_list": (DONE, b'{"model": "tiny", "prompt": ["ok", "\\udfff"]}', 400),
    "lone_surrogate_chat": (
        CHAT,
        b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud83d"}]}',
        400,
    ),  # fmt: skip
    "lone_surrogate_part": (
        CHAT,
        b'{"model": "tiny", "messages": [{"role": "user", '
        b'"content": [{"type": "text", "text": "\\udc00"}]}]}',
        400,
    ),
    "lone_surrogate_stop": (DONE, b'{"model": "tiny", "prompt": "x", "stop": "\\ud800"}', 400),
    "lone_surrogate_model": (DONE, b'{"model": "\\ud800", "prompt": "x"}', 400),
    "invalid_utf8": (DONE, b'{"model": "tiny", "prompt": "\xff\xfe\xc3"}', 400),
    "empty_prompt_list": (DONE, completion(prompt=[]), 400),
    "empty_messages": (CHAT, chat(messages=[]), 400),
    "too_many_stops": (DONE, completion(stop=["a", "b", "c", "d", "e"]), 400),
    "stop_too_long": (DONE, completion(stop="x" * 1000), 400),
    "stream": (DONE, completion(stream=True), 400),
    "top_p": (CHAT, chat(top_p=0.5), 400),
    "unknown_model": (DONE, completion(model="other"), 404),
    "unknown_path": ("/v1/embeddings", completion(), 404),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_a_4xx_and_the_server_keeps_serving(capped, case):
    path, body, want = MALFORMED[case]
    headers = None
    if body == "text/plain":  # valid JSON, but not declared as JSON
        body, headers = json.dumps(completion()).encode(), {"Content-Type": "text/plain"}
    message = assert_openai_error(*call(capped, path, body, headers=headers), want)
    assert message and "Traceback" not in message
    assert_still_serving(capped)


def test_wrong_method_is_a_405_with_an_openai_error(capped):
    assert_openai_error(*call(capped, DONE, method="GET"), 405)


def test_unicode_that_is_valid_is_answered(capped):
    """Odd but valid text (NUL, emoji, RTL, combining marks, the last code point) is 200."""
    odd = "\x00 \U0001f600 \u202e\u0301\u0301 \U0010ffff \ufeff 漢字"
    status, answer = call(capped, DONE, completion(prompt=[odd, ""], echo=True, logprobs=1))
    assert status == 200 and answer["choices"][0]["text"].startswith(odd), answer
    messages = [{"role": "user", "content": [{"type": "text", "text": odd}, {"type": "image"}]}]
    status, answer = call(capped, CHAT, chat(messages=messages, max_tokens=3))
    assert status == 200, answer


def test_non_loopback_host_without_a_key_is_refused_at_once(folder, monkeypatch, capsys):
    monkeypatch.delenv("SCALELAB_API_KEY", raising=False)
    for host in ("0.0.0.0", "192.168.1.7", "::", "example.com"):
        started = time.monotonic()
        assert main(["serve", str(folder), "--host", host, "--port", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: refusing to listen on {host}")
        assert "--api-key" in err[0] and "SCALELAB_API_KEY" in err[0]
        assert time.monotonic() - started < 5  # refused before the model loads
    monkeypatch.setenv("SCALELAB_API_KEY", "")  # an empty key is no key
    assert main(["serve", str(folder), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "refusing to listen" in capsys.readouterr().err
    # With the key in the environment the bind is allowed: the next check is the model's.
    monkeypatch.setenv("SCALELAB_API_KEY", KEY)
    assert main(["serve", "no-such-model-here", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown model 'no-such-model-here'")


AUTH = {"Authorization": f"Bearer {KEY}"}
WRONG = {
    "none": {},
    "wrong_token": {"Authorization": "Bearer not-the-key"},
    "key_prefix": {"Authorization": f"Bearer {KEY[:-1]}"},
    "key_longer": {"Authorization": f"Bearer {KEY}x"},
    "empty_token": {"Authorization": "Bearer "},
    "basic_scheme": {"Authorization": f"Basic {KEY}"},
    "bare_key": {"Authorization": KEY},
}


@pytest.mark.parametrize("case", list(WRONG))
def test_with_a_key_every_request_without_it_is_401(keyed, case):
    headers = WRONG[case]
    for path, body, method in [
        (DONE, completion(), "POST"), (CHAT, chat(), "POST"), ("/v1/models", None, "GET"),
        ("/health", None, "GET"), ("/metrics", None, "GET"), ("/nowhere", None, "GET"),
        (DONE, b"{not json", "POST"),
    ]:  # fmt: skip
        status, answer = call(keyed, path, body, method=method, headers=headers)
        assert_openai_error(status, answer, 401)
        assert answer["error"]["code"] == "invalid_api_key"
    assert_still_serving(keyed, AUTH)


def test_with_the_key_requests_are_answered(keyed, monkeypatch):
    assert_still_serving(keyed, AUTH)
    assert call(keyed, "/v1/models", method="GET", headers=AUTH)[0] == 200
    lower = {"authorization": f"bearer {KEY}"}  # header name and scheme are case-blind
    assert call(keyed, CHAT, chat(max_tokens=2), headers=lower)[0] == 200
    # The HTTP backend sends OPENAI_API_KEY as its bearer token.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = open_backend(keyed.model, cache=False, max_retries=0)
    assert backend.generate([GenRequest("the cat", 3)])[0] is not None
    assert backend.fingerprint.startswith("sha256:")


def test_a_busy_port_is_said_before_the_model_loads(tmp_path, capsys):
    import socket

    # An empty folder resolves as a local model but cannot load: had the model been loaded
    # first, the error would be about its weights, not the port.
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", str(empty), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot listen on 127.0.0.1:{port}"), err
