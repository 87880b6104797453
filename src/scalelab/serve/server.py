"""An OpenAI-compatible HTTP server over a local backend (`scalelab serve`).

FastAPI + uvicorn rather than the stdlib `http.server`: the official `openai` client speaks
HTTP/1.1 with keep-alive and concurrent connections, which uvicorn handles properly on one
event loop, and pydantic validates request bodies into clear 400 errors. Both are imported
only by `scalelab serve`.

Endpoints: `GET /v1/models` (the entry carries `fingerprint`, `max_model_len` and
`prefix_text`, what an empty context means), `POST /v1/completions` (prompt a string or a
list; max_tokens 0 allowed; temperature; seed; stop; logprobs with echo: per-token logprobs
of the prompt, `text_offset` as base.py defines it, a prompt longer than the window keeps
its last tokens), `POST /v1/chat/completions` (the tokenizer's chat template, else the
messages joined as `role: content` lines), `GET /metrics` (request and batch counters) and
`GET /health`. No streaming, n = 1 only, top_p 1 only.

Concurrent requests are gathered into shared forward passes by `scalelab.serve.batcher`.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from scalelab.errors import ScalelabError
from scalelab.models.backends.base import GenRequest, TokenScores, span_start
from scalelab.serve.batcher import Batcher


class Reject(Exception):
    """A request the server refuses: an HTTP status and an OpenAI-style error message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CompletionBody(BaseModel):
    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0.0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    top_p: float = 1.0


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    top_p: float = 1.0


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


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
            content = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        plain.append({"role": m.role, "content": content or ""})
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        bos = tokenizer.bos_token
        if adds_bos and bos and text.startswith(bos):  # the tokenizer adds it again
            text = text[len(bos) :]
        return text
    return "".join(f"{m['role']}: {m['content']}\n" for m in plain) + "assistant:"


def create_app(
    backend: Any, name: str, *, max_batch: int = 32, max_wait_ms: float = 5.0
) -> FastAPI:
    """The FastAPI app serving `backend` (a LocalBackend) as model `name`."""
    model_entry = {
        "id": name, "object": "model", "created": int(time.time()), "owned_by": "scalelab",
        "fingerprint": backend.fingerprint, "max_model_len": backend.max_length,
        "prefix_text": backend.prefix_text,
    }  # fmt: skip
    batcher = Batcher(backend, max_batch, max_wait_ms / 1000)
    requests: Counter[str] = Counter()
    app = FastAPI(title="scalelab serve", docs_url=None, redoc_url=None)

    @app.exception_handler(Reject)
    async def _reject(_: Request, exc: Reject) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(400, f"{where}: {first['msg']}" if where else first["msg"])

    @app.exception_handler(ScalelabError)
    async def _user_error(_: Request, exc: ScalelabError) -> JSONResponse:
        return _error(400, str(exc))

    async def run(kind: str, items: list, top_k: int = 0) -> list:
        return await asyncio.wrap_future(batcher.submit(kind, items, top_k))

    def check(body: CompletionBody | ChatBody, endpoint: str) -> tuple[str, ...]:
        requests[endpoint] += 1
        if body.model != name:
            raise Reject(404, f"model {body.model!r} is not served here (this serves {name!r})")
        if body.stream or body.n != 1 or body.top_p != 1.0:
            raise Reject(400, "stream, n > 1 and top_p < 1 are not supported")
        return (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())

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
        stop = check(body, "completions")
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise Reject(400, "prompt: empty list")
        limit, k = 16 if body.max_tokens is None else body.max_tokens, body.logprobs
        gens = None
        if limit > 0:
            reqs = [GenRequest(p, limit, body.temperature, stop, body.seed) for p in prompts]
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
        stop = check(body, "chat")
        prompt = chat_prompt(backend.tokenizer, body.messages, backend.prefix_text == "")
        limit = body.max_completion_tokens or body.max_tokens
        if limit is None:  # OpenAI's "up to the window"; keep room for the prompt
            limit = min(256, backend.max_length // 2)
        (g,) = await run("generate", [GenRequest(prompt, limit, body.temperature, stop, body.seed)])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                         "finish_reason": g.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                      "total_tokens": g.prompt_tokens + g.completion_tokens},
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
    max_batch: int = 32,
    announce: Callable[[str], None] = print,
) -> None:
    """Load the model, listen, call `announce(base_url)`, then serve until interrupted."""
    import uvicorn

    app = create_app(backend, name, max_batch=max_batch)  # loads the model: errors come first
    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    announce(f"http://{shown}:{sock.getsockname()[1]}/v1")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
