"""`scalelab serve`: an OpenAI-compatible server over any local backend.

`scalelab.serve.server` (FastAPI + uvicorn, imported only when serving) holds the app, the
request batcher and `run_server`. This package itself imports nothing heavy: it holds what
the CLI needs before the model loads, the request limits and the rule on where the server
may listen, so `--help` stays fast and a refused `--host` is refused at once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from scalelab.errors import ScalelabError


@dataclass(frozen=True)
class Limits:
    """The most one request may ask of the server; each field is a `scalelab serve` option
    (`max_tokens` is `--max-tokens`). Without caps one request could hold the model for
    minutes or fill the server's memory while every other client waits."""

    max_prompt_tokens: int = 4096  # tokens in one prompt (a chat's after its template)
    max_tokens: int = 1024  # new tokens in one completion
    max_n: int = 8  # completions per prompt
    max_prompts: int = 64  # prompts in one request, times n
    max_batch: int = 32  # prompts in one forward pass
    max_request_bytes: int = 4 * 2**20  # the request body, before it is parsed

    def exceeded(self, limit: str, value: int, what: str) -> str | None:
        """The refusal naming `limit` and its option when `value` is over it, else None."""
        cap = getattr(self, limit)
        if value <= cap:
            return None
        option = "--" + limit.replace("_", "-")
        return f"{what} is {value}, over this server's limit of {cap} ({option})"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: localhost, 127.0.0.0/8 and ::1.

    Any other name counts as public: a host name may resolve to anything."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key (ScalelabError: exit 2)."""
    if not api_key and not is_loopback(host):
        raise ScalelabError(
            f"refusing to listen on {host} without an API key (anyone who reaches it could "
            "use the model): pass --api-key KEY or set SCALELAB_API_KEY, or keep --host "
            "127.0.0.1"
        )
