"""An OpenAI-compatible HTTP server over a local backend (`scalelab serve`).

FastAPI + uvicorn rather than the stdlib `http.server`: the official `openai` client speaks
HTTP/1.1 with keep-alive and concurrent connections, which uvicorn handles properly on one
event loop, and pydantic validates request bodies into clear 400 errors. Both are imported
only by `scalelab serve`.

Endpoints: `GET /v1/models` (the entry carries `fingerprint`, `max_model_len` and
`prefix_text`, what an empty context means), `POST /v1/completions` (prompt a string or a
list; max_tokens 0 allowed; temperature; seed; stop; n; logprobs with echo: per-token
logprobs of the prompt, `text_offset` as base.py defines it, a prompt longer than the window
keeps its last tokens), `POST /v1/chat/completions` (the tokenizer's chat template, else the
messages joined as `role: content` lines), `GET /metrics` (request and batch counters) and
`GET /health`. No streaming, top_p 1 only.

Safety: with an API key every request must carry `Authorization: Bearer KEY` (else 401);
bodies over `max_request_bytes` are refused (413) before they are parsed; prompt length,
max_tokens, n and prompts per request are capped (`scalelab.serve.Limits`); anything
malformed is a 4xx with an OpenAI-style error body, never a 5xx.

Concurrent requests are gathered into shared forward passes by `scalelab.serve.batcher`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from scalelab.errors import ScalelabError
from scalelab.models.backends.base import GenRequest, TokenScores, span_start
from scalelab.serve import Limits, check_bind
from scalelab.serve.batcher import Batcher

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_STOPS = 4  # stop sequences per request, as OpenAI allows
MAX_STOP_CHARS = 128  # generation decodes ~4 tokens per stop character at every step
DRAIN_BYTES = 64 * 2**20  # how much of an oversized body is read (and dropped) at most


class Reject(Exception):
    """A request the server refuses: an HTTP status and an OpenAI-style error message."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


# --- request bodies ------------------------------------------------------------------------


def _utf8(text: str) -> str:
    """Refuse lone surrogates (JSON allows "\\ud800"): the tokenizer would fail on them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid unicode (it holds a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_utf8)]
Stop = Annotated[str, Field(max_length=MAX_STOP_CHARS), AfterValidator(_utf8)]
Stops = Annotated[list[Stop], Field(max_length=MAX_STOPS)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # what torch.manual_seed takes


class CompletionBody(BaseModel):
    model: Text
    prompt: Text | list[Text]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    stop: Stop | Stops | None = None
    seed: Seed | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    top_p: float = Field(1.0, ge=0.0, le=1.0)


class ContentPart(BaseModel):
    """One part of a message's content; only text parts reach the prompt."""

    model_config = ConfigDict(extra="allow")
    type: Text
    text: Text | None = None


class ChatMessage(BaseModel):
    role: Text
    content: Text | list[ContentPart] | None = None


class ChatBody(BaseModel):
    model: Text
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    stop: Stop | Stops | None = None
    seed: Seed | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    top_p: float = Field(1.0, ge=0.0, le=1.0)


# --- errors --------------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error answer."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# pydantic's names for the branches of a union ("str", "list[...]"): not a field name
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _telling(error: dict) -> tuple[bool, int]:
    """How telling a validation error is. Each branch of a union ("a string or a list of
    strings") reports its own error; the branch that matched the input's type but failed
    deeper (a bad list item) says more than "Input should be a valid string"."""
    return not str(error.get("type", "")).endswith("_type"), len(error.get("loc", ()))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """(message, param) for the most telling validation error, e.g. "max_tokens: Input
    should be greater than or equal to 0"."""
    errors = exc.errors()
    first = max(errors, key=_telling) if errors else {"loc": (), "msg": "invalid body"}
    if first.get("type") == "json_invalid":
        return f"body is not valid JSON: {first.get('ctx', {}).get('error', 'decode error')}", None
    if isinstance(first.get("input"), bytes):  # FastAPI left a non-JSON body undecoded
        return "body must be a JSON object (with Content-Type: application/json)", None
    parts = [
        str(p)
        for p in first.get("loc", ())
        if p != "body" and not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS))
    ]
    return f"{'.'.join(parts) or 'body'}: {first['msg']}", (parts[0] if parts else None)


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal, whatever raised it, answers with an OpenAI-style JSON body."""

    @app.exception_handler(Reject)
    async def _reject(_: Request, exc: Reject) -> JSONResponse:
        return _error(exc.status, str(exc), param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error(400, message, param=param)

    @app.exception_handler(HTTPException)  # unknown path (404), wrong method (405), ...
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "There was an error parsing the body" hides why: invalid UTF-8,
            # nesting too deep, an integer of thousands of digits. Say which.
            cause = str(exc.__cause__).splitlines()[0][:200]
            message = f"body is not valid JSON: {type(exc.__cause__).__name__}: {cause}"
        return _error(exc.status_code, message, headers=exc.headers)

    @app.exception_handler(ScalelabError)
    async def _user_error(_: Request, exc: ScalelabError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)  # a bug: uvicorn still logs the traceback
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}")


# --- the API key and the body size ---------------------------------------------------------


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class Guard:
    """ASGI middleware in front of every route: checks the API key (when one is set), then
    reads the whole body, refusing it (413) past `limits.max_request_bytes` before anything
    parses it.

    Tokens are compared as SHA-256 digests with `hmac.compare_digest`: equal lengths, so the
    time taken says nothing about the key, not even its length.
    """

    def __init__(self, app: Any, api_key: str | None, limits: Limits) -> None:
        self.app, self.limits, self.max_bytes = app, limits, limits.max_request_bytes
        self.key = _digest(api_key.encode()) if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.key is not None and not self._authorized(scope):
            message = "missing or wrong API key: send 'Authorization: Bearer KEY'"
            response = _error(
                401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        read = await self._read_body(receive)
        if read is None:  # the client left mid-body: nobody to answer
            return
        body, size = read
        if size > self.max_bytes:
            note = self.limits.exceeded("max_request_bytes", size, "the request body in bytes")
            await _error(413, str(note), code="limit_exceeded")(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorized(self, scope: Scope) -> bool:
        value = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = value.partition(b" ")
        given = _digest(token.strip()) if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(given, self.key or b"")

    async def _read_body(self, receive: Receive) -> tuple[bytes, int] | None:
        """(body, its size in bytes), or None if the client left. Past the cap the body is
        read on (and dropped) so the client gets to read the 413, not a reset connection;
        the size is then as far as it was read."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_bytes:
                chunks.append(chunk)
            if not message.get("more_body", False) or size > DRAIN_BYTES:
                return b"".join(chunks), size


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then defers to the client."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


# --- requests ------------------------------------------------------------------------------


def _cap(limits: Limits, limit: str, value: int, what: str, param: str, status: int) -> None:
    """Refuse the request (naming the limit and its option) when `value` is over `limit`."""
    message = limits.exceeded(limit, value, what)
    if message:
        raise Reject(status, message, param=param, code="limit_exceeded")


def _check_prompts(
    limits: Limits, prompts: list[str], n: int, count: Callable[[str], int], param: str
) -> None:
    """Prompts per request (times n) and tokens per prompt: too much is 413, as a body is."""
    if not prompts:
        raise Reject(400, f"{param}: empty list", param=param)
    _cap(limits, "max_prompts", len(prompts), "the number of prompts", param, 413)
    _cap(limits, "max_prompts", len(prompts) * n, f"prompts x n ({len(prompts)} x {n})", "n", 413)
    for i, text in enumerate(prompts):
        what = f"the length of prompt {i} in tokens" if len(prompts) > 1 else "the prompt in tokens"
        _cap(limits, "max_prompt_tokens", count(text), what, param, 413)


def _token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Counts a prompt's tokens with `tokenizer`, which must be the event loop's own copy:
    the batcher thread uses the backend's, and a fast tokenizer is not safe to share."""
    return lambda text: len(tokenizer(text)["input_ids"])


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    return (stop,) if isinstance(stop, str) else tuple(stop or ())


def _seeds(seed: int | None, n: int) -> list[int | None]:
    """Seeds for n samples of one prompt: seed, seed + 1, ...; n = 1 keeps the seed as sent
    and the n samples still differ from one another."""
    return [None if seed is None else seed + j for j in range(n)]


def _logprobs(s: TokenScores, first: int, k: int) -> dict:
    """The legacy completions `logprobs` object for tokens first..end of one text."""
    top: list = []
    for i in range(first, len(s.tokens)):
        row = s.top[i] if s.top else None
        best: dict[str, float] = {}
        for text, value in row or []:
            best.setdefault(text, value)  # two ids decoding alike: keep the likelier
        top.append(None if s.logprobs[i] is None else dict(list(best.items())[:k]))
    return {
        "tokens": s.tokens[first:],
        "token_logprobs": s.logprobs[first:],
        "top_logprobs": top,
        "text_offset": s.starts[first:],
    }


def chat_prompt(tokenizer: Any, messages: list[ChatMessage], adds_bos: bool) -> str:
    """The prompt text for a chat: the tokenizer's template, else `role: content` lines."""
    plain = []
    for m in messages:
        content = m.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.text or "" for p in content if p.type == "text")
        plain.append({"role": m.role, "content": content or ""})
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # templates raise on what they refuse (e.g. role order)
            message = f"messages: the chat template refused them: {exc}"
            raise Reject(400, message, param="messages") from None
        bos = tokenizer.bos_token
        if adds_bos and bos and text.startswith(bos):  # the tokenizer adds it again
            text = text[len(bos) :]
        return text
    return "".join(f"{m['role']}: {m['content']}\n" for m in plain) + "assistant:"


def create_app(
    backend: Any,
    name: str,
    *,
    limits: Limits | None = None,
    api_key: str | None = None,
    max_wait_ms: float = 5.0,
) -> FastAPI:
    """The FastAPI app serving `backend` (a LocalBackend) as model `name`; with `api_key`,
    every request must carry it as a bearer token."""
    limits = limits or Limits()
    model_entry = {
        "id": name, "object": "model", "created": int(time.time()), "owned_by": "scalelab",
        "fingerprint": backend.fingerprint, "max_model_len": backend.max_length,
        "prefix_text": backend.prefix_text,
    }  # fmt: skip
    batcher = Batcher(backend, limits.max_batch, max_wait_ms / 1000)
    tokenizer = copy.deepcopy(backend.tokenizer)  # the event loop's own: not thread-safe
    count = _token_counter(tokenizer)
    requests: Counter[str] = Counter()
    app = FastAPI(title="scalelab serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, api_key=api_key, limits=limits)
    _add_error_handlers(app)

    async def run(kind: str, items: list, top_k: int = 0) -> list:
        return await asyncio.wrap_future(batcher.submit(kind, items, top_k))

    def check(body: CompletionBody | ChatBody, endpoint: str, max_tokens: int) -> tuple[str, ...]:
        """The checks both endpoints share (cheapest first); returns the stop strings."""
        requests[endpoint] += 1
        if body.model != name:
            message = f"model {body.model!r} is not served here (this serves {name!r})"
            raise Reject(404, message, param="model", code="model_not_found")
        if body.stream:
            raise Reject(400, "stream: streaming is not supported", param="stream")
        if body.top_p != 1.0:
            raise Reject(400, "top_p: only 1 is supported (no nucleus sampling)", param="top_p")
        _cap(limits, "max_n", body.n, "n", "n", 400)
        _cap(limits, "max_tokens", max_tokens, "max_tokens", "max_tokens", 400)
        return _stops(body.stop)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> dict:
        return {"requests": dict(requests), **batcher.stats}

    @app.get("/v1/models")
    async def models() -> dict:
        requests["models"] += 1
        return {"object": "list", "data": [model_entry]}

    @app.post("/v1/completions")
    async def completions(body: CompletionBody) -> dict:
        limit, k = 16 if body.max_tokens is None else body.max_tokens, body.logprobs
        stop = check(body, "completions", limit)
        given = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        _check_prompts(limits, given, body.n, count, "prompt")
        prompts = [p for p in given for _ in range(body.n)]  # each prompt's n choices together
        seeds = [s for _ in given for s in _seeds(body.seed, body.n)]
        gens = None
        if limit > 0:
            reqs = [
                GenRequest(p, limit, body.temperature, stop, seed)
                for p, seed in zip(prompts, seeds, strict=True)
            ]
            gens = await run("generate", reqs)
        texts = [p + g.text for p, g in zip(prompts, gens, strict=True)] if gens else prompts
        scores = await run("score", texts, k) if k is not None and (gens or body.echo) else None
        choices = []
        for i, p in enumerate(prompts):
            text = texts[i] if body.echo else texts[i][len(p) :]
            lp = None
            if scores is not None:
                first = 0 if body.echo else span_start(scores[i].starts, len(p))
                if not body.echo and len(texts[i]) == len(p):  # nothing was generated
                    first = len(scores[i].tokens)
                lp = _logprobs(scores[i], first, k or 0)
            reason = gens[i].finish_reason if gens else "length"
            choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": reason})
        used = [len(s.tokens) for s in scores] if scores else [0] * len(prompts)
        made = [g.completion_tokens for g in gens] if gens else [0] * len(prompts)
        prompt_tokens = sum(g.prompt_tokens for g in gens) if gens else sum(used)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(made),
                      "total_tokens": prompt_tokens + sum(made)},
        }  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> dict:
        limit = body.max_completion_tokens
        limit = body.max_tokens if limit is None else limit
        if limit is None:  # OpenAI's "up to the window"; keep room for the prompt
            limit = min(256, backend.max_length // 2, limits.max_tokens)
        stop = check(body, "chat", limit)
        prompt = chat_prompt(tokenizer, body.messages, backend.prefix_text == "")
        _check_prompts(limits, [prompt], body.n, count, "messages")
        reqs = [
            GenRequest(prompt, limit, body.temperature, stop, s) for s in _seeds(body.seed, body.n)
        ]
        gens = await run("generate", reqs)
        made = sum(g.completion_tokens for g in gens)
        choices = [
            {"index": j, "message": {"role": "assistant", "content": g.text},
             "finish_reason": g.finish_reason, "logprobs": None}
            for j, g in enumerate(gens)
        ]  # fmt: skip
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": name, "choices": choices,
            "usage": {"prompt_tokens": gens[0].prompt_tokens, "completion_tokens": made,
                      "total_tokens": gens[0].prompt_tokens + made},
        }  # fmt: skip

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one); a busy port is a ScalelabError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ScalelabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def run_server(
    backend: Any,
    name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    api_key: str | None = None,
    announce: Callable[[str], None] = print,
    sock: socket.socket | None = None,
) -> None:
    """Load the model, listen (on `sock` when given: a `listen` socket opened before the
    model loaded, so a busy port is said at once), call `announce(base_url)`, then serve
    until interrupted. Listening beyond loopback without `api_key` is refused (a
    ScalelabError)."""
    import uvicorn

    check_bind(host, api_key)
    app = create_app(backend, name, limits=limits, api_key=api_key)  # loads the model first
    sock = sock or listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    announce(f"http://{shown}:{sock.getsockname()[1]}/v1")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
