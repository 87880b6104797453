"""The HTTP backend: any OpenAI-compatible endpoint (`scalelab serve`, vLLM, llama.cpp, ...).

A model is named `http://host:port/v1#model-name` (ModelRef kind http: `ref.path` is the
base URL, `ref.remote` the served model's name).

* loglikelihood: `POST /completions` with the joined text, `echo=True, max_tokens=0,
  logprobs=k`; the continuation's tokens are found from `text_offset` (see base.py) and a
  token is greedy when its logprob equals the best of `top_logprobs`.
* generation: `POST /completions` with several prompts per request (same settings), or with
  `chat=True` one `POST /chat/completions` per prompt (the prompt as one user message).
* Requests run on `concurrency` threads. Connection errors, timeouts, 429 and 5xx are
  retried with exponential backoff (longer if the server sends Retry-After); any other
  refusal is a ScalelabError naming the endpoint. The key is `OPENAI_API_KEY` if set.
* llama.cpp's server (`python -m llama_cpp.server`, llama-cpp-python 0.3.36) generates but
  cannot score: it takes one prompt per request (more is an HTTP 500: use batch_size=1),
  reads max_tokens=0 as "no limit", and its echoed prompt logprobs are shifted by one token
  for a model whose tokenizer adds no BOS (SmolLM2). A scoring answer whose text runs past
  the prompt is refused as such (score with the local backend on the same GGUF instead).
* fingerprint: what the server's `/models` entry reports (`scalelab serve` reports the
  weights digest), read on every access so a restarted server with new weights is noticed;
  else `url#model`, plus `@revision` when given (then the server is not asked).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scalelab.errors import ScalelabError
from scalelab.models.backends.base import (
    Backend,
    Generation,
    GenRequest,
    Loglikelihood,
    TokenScores,
    as_pairs,
    continuation_score,
)
from scalelab.models.registry import ModelRef


class HttpBackend(Backend):
    """A model behind an OpenAI-compatible API.

    Options: batch_size (prompts per request), concurrency (requests in flight), timeout
    (seconds per request), max_retries, backoff (first retry delay, seconds; doubles each
    time), chat (generate through chat completions), revision (pins the fingerprint instead
    of asking the server), prefix_text (what an empty context means, when the server does
    not say), top_logprobs (k asked for when scoring; >= 1), api_key.
    """

    kind = "http"

    def __init__(
        self,
        ref: ModelRef,
        *,
        batch_size: int = 16,
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        chat: bool = False,
        revision: str | None = None,
        prefix_text: str | None = None,
        top_logprobs: int = 1,
        api_key: str | None = None,
    ) -> None:
        if ref.kind != "http" or not ref.path or not ref.remote:
            raise ScalelabError(f"model {ref.name!r} is not an http://host:port/v1#model name")
        self.url, self.model = ref.path, ref.remote
        self.batch_size, self.concurrency = max(1, batch_size), max(1, concurrency)
        self.timeout, self.max_retries, self.backoff = timeout, max(0, max_retries), backoff
        self.chat, self.revision, self.prefix_text = chat, revision, prefix_text
        self.top_logprobs = max(1, top_logprobs)
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self._client: Any = None
        self._lock = threading.Lock()

    # --- plumbing ------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        import openai

        with self._lock:
            if self._client is None:  # retries are ours (below), not the client's
                self._client = openai.OpenAI(
                    base_url=self.url, api_key=self.api_key, timeout=self.timeout, max_retries=0
                )
        return self._client

    def _delay(self, attempt: int, exc: Exception) -> float:
        delay = self.backoff * 2**attempt * random.uniform(1.0, 1.5)  # jitter: no stampede
        response = getattr(exc, "response", None)
        after = response.headers.get("retry-after") if response is not None else None
        try:
            delay = max(delay, float(after)) if after else delay
        except ValueError:  # an HTTP date: the backoff will do
            pass
        return min(delay, 60.0)

    def _call(
        self, what: str, fn: Callable[[], Any], missing_ok: bool = False, prompts: int = 1
    ) -> Any:
        """Run one API call, retrying transient failures; errors name the endpoint. A
        request of several `prompts` that keeps failing with a 5xx says that some servers
        (llama.cpp's) take one prompt per request."""
        import openai

        error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except (
                openai.APIConnectionError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as exc:
                error = exc
                if attempt < self.max_retries:
                    time.sleep(self._delay(attempt, exc))
            except openai.APIStatusError as exc:
                if missing_ok and exc.status_code == 404:
                    return None
                message = getattr(exc, "message", str(exc))
                raise ScalelabError(
                    f"{self.url} refused {what} for model {self.model!r}: "
                    f"HTTP {exc.status_code}: {message}"
                ) from None
        hint = ""
        if prompts > 1 and isinstance(error, openai.InternalServerError):
            hint = (
                f" (the request held {prompts} prompts; servers such as llama.cpp's take one "
                "prompt per request: pass batch_size=1)"
            )
        raise ScalelabError(
            f"{self.url}: {what} failed after {self.max_retries + 1} tries: "
            f"{type(error).__name__}: {error}{hint}"
        ) from None

    def _map(self, fn: Callable[[Any], Any], items: list) -> list:
        """fn over items on up to `concurrency` threads, results in order."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def _entry(self) -> dict | None:
        """This model's `/models` entry (extra fields included), None if the server lists none."""
        page = self._call("GET /models", lambda: self.client.models.list(), missing_ok=True)
        entries = list(page.data) if page is not None else []
        for m in entries:
            if m.id == self.model:
                return {**(m.model_extra or {}), "id": m.id}
        if entries:
            served = ", ".join(m.id for m in entries[:10])
            raise ScalelabError(f"{self.url} serves no model {self.model!r} (it serves: {served})")
        return None

    @property
    def fingerprint(self) -> str:
        if self.revision:
            return f"{self.url}#{self.model}@{self.revision}"
        entry = self._entry() or {}
        reported = entry.get("fingerprint")
        return str(reported) if reported else f"{self.url}#{self.model}"

    @property
    def cache_salt(self) -> str:
        return "http-chat" if self.chat else "http"

    def _prefix(self) -> str:
        if self.prefix_text is not None:
            return self.prefix_text
        prefix = (self._entry() or {}).get("prefix_text")
        if prefix is None:
            raise ScalelabError(
                f"{self.url}#{self.model}: an empty context needs the model's BOS/EOS text, "
                "which the server does not report; pass the prefix_text option"
            )
        self.prefix_text = prefix
        return prefix

    # --- scoring -------------------------------------------------------------------------

    def _echo_chunk(self, prompts: list[str]) -> list[TokenScores]:
        response = self._call(
            "a scoring request (echo, max_tokens=0)",
            lambda: self.client.completions.create(
                model=self.model, prompt=prompts, echo=True, max_tokens=0,
                logprobs=self.top_logprobs, temperature=0,
            ),
            prompts=len(prompts),
        )  # fmt: skip
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != len(prompts):
            raise ScalelabError(f"{self.url}: {len(choices)} answers to {len(prompts)} prompts")
        out = []
        for c, prompt in zip(choices, prompts, strict=True):
            if c.text and len(c.text) > len(prompt) and c.text.startswith(prompt):
                # Its logprobs then cover generated tokens too (and, in llama-cpp-python,
                # are shifted by one token for a model without BOS): no score is trustworthy.
                raise ScalelabError(
                    f"{self.url}#{self.model} cannot score: asked to echo the text with "
                    "max_tokens=0, it generated more after it (llama.cpp's server reads 0 as "
                    "no limit); score with the local backend on the same weights (e.g. the "
                    "registered GGUF model) and use this server to generate"
                )
            lp = c.logprobs
            if lp is None or not lp.token_logprobs or lp.text_offset is None:
                raise ScalelabError(
                    f"{self.url}#{self.model} returned no prompt logprobs: the server must "
                    "support echo=True with logprobs on /completions"
                )
            top = list(lp.top_logprobs or [None] * len(lp.token_logprobs))
            greedy = [
                None if v is None or not t else v >= max(t.values())
                for v, t in zip(lp.token_logprobs, top, strict=True)
            ]
            tops = [None if t is None else sorted(t.items(), key=lambda kv: -kv[1]) for t in top]
            out.append(
                TokenScores(lp.tokens or [], lp.text_offset, lp.token_logprobs, greedy, tops)
            )
        return out

    def _echo(self, texts: list[str]) -> list[TokenScores]:
        chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        return [s for chunk in self._map(self._echo_chunk, chunks) for s in chunk]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        pairs = as_pairs(requests)
        prefix = self._prefix() if any(not c and x for c, x in pairs) else ""
        contexts = [c or prefix for c, _ in pairs]
        todo = [i for i, (_, x) in enumerate(pairs) if x]  # an empty continuation needs no call
        scores = self._echo([contexts[i] + pairs[i][1] for i in todo])
        out = [Loglikelihood(0.0, True, 0)] * len(pairs)
        for i, s in zip(todo, scores, strict=True):
            full = len(contexts[i]) + len(pairs[i][1])
            out[i] = continuation_score(s, len(contexts[i]), full, f"loglikelihood request {i}")
        return out

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Whole-text log-likelihoods in one echo request each; a text longer than the
        server's window is an error (the server keeps only its last tokens)."""
        texts = list(texts)
        prefix = self._prefix() if any(texts) else ""
        todo = [i for i, t in enumerate(texts) if t]
        scores = self._echo([prefix + texts[i] for i in todo])
        out = [0.0] * len(texts)
        for i, s in zip(todo, scores, strict=True):
            full = len(prefix) + len(texts[i])
            out[i] = continuation_score(s, len(prefix), full, f"rolling text {i}").logprob
        return out

    # --- generation ----------------------------------------------------------------------

    def _complete(self, reqs: list[GenRequest]) -> list[Generation]:
        """One request for prompts that share their settings. The server reports tokens
        (and, some, dollars) for the whole request: they are shared out over its answers,
        so totals are right and each answer carries its part."""
        r = reqs[0]
        extra: dict[str, Any] = {"stop": list(r.stop)} if r.stop else {}
        if r.seed is not None:
            extra["seed"] = r.seed
        if self.chat:
            response = self._call(
                "a chat completion",
                lambda: self.client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": r.prompt}],
                    max_tokens=r.max_tokens, temperature=r.temperature, **extra,
                ),
            )  # fmt: skip
            choices = [(response.choices[0].message.content or "", response.choices[0])]
        else:
            response = self._call(
                "a completion",
                lambda: self.client.completions.create(
                    model=self.model, prompt=[q.prompt for q in reqs], max_tokens=r.max_tokens,
                    temperature=r.temperature, **extra,
                ),
                prompts=len(reqs),
            )  # fmt: skip
            choices = [(c.text, c) for c in sorted(response.choices, key=lambda c: c.index)]
        usage = getattr(response, "usage", None)
        n = len(choices)
        shares = [_share(getattr(usage, f, None) or 0, n)
                  for f in ("prompt_tokens", "completion_tokens")]  # fmt: skip
        cost = float(getattr(usage, "cost", None) or 0.0)
        return [
            Generation(text or "", _finish(c), shares[0][i], shares[1][i], cost / n)
            for i, (text, c) in enumerate(choices)
        ]

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        return [g.text for g in self.generate_full(requests)]

    def generate_full(self, requests: Sequence[GenRequest]) -> list[Generation]:
        reqs = list(requests)
        for r in reqs:
            if not isinstance(r, GenRequest):
                raise ScalelabError(f"generate takes GenRequest objects, not {type(r).__name__}")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            if r.max_tokens > 0:
                same = (r.max_tokens, r.temperature, r.stop, r.seed)
                groups.setdefault(same if not self.chat else (i,), []).append(i)
        jobs = [
            idx[k : k + self.batch_size]
            for idx in groups.values()
            for k in range(0, len(idx), self.batch_size)
        ]
        answers = self._map(lambda job: self._complete([reqs[i] for i in job]), jobs)
        out = [Generation("", "length") for _ in reqs]
        for job, gens in zip(jobs, answers, strict=True):
            for i, g in zip(job, gens, strict=True):
                out[i] = g
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _share(total: int, n: int) -> list[int]:
    """`total` split into n integer parts that sum to it (the first ones one larger)."""
    base, extra = divmod(int(total), n)
    return [base + (i < extra) for i in range(n)]


def _finish(choice: Any) -> str:
    """A choice's finish reason in `Generation`'s terms ("stop" or "length")."""
    reason = getattr(choice, "finish_reason", None) or "stop"
    return "length" if reason == "length" else "stop"
