"""The one interface every model a run touches goes through, local weights or a remote server.

Tasks are data (pairs of strings, prompts); a backend turns them into numbers and text:

* `loglikelihood([(context, continuation), ...]) -> [(logprob, is_greedy, n_tokens), ...]`:
  the sum of the natural-log probabilities of the continuation's tokens given the context,
  whether every one of those tokens is the model's argmax (greedy) choice, and how many
  tokens the continuation is (per-token losses divide by it).
* `loglikelihood_rolling([text, ...]) -> [logprob, ...]`: the whole text, every token scored.
* `generate([GenRequest, ...]) -> [text, ...]`: the completion only (prompt not repeated).
* `fingerprint`: a string that changes whenever the answers may change (weights digest,
  Hub revision); the request cache keys on it.

Which tokens belong to the continuation is decided the same way by every backend, from
character offsets into `context + continuation` (an OpenAI server's `text_offset` gives the
same thing): token i covers the characters [start_i, start_{i+1}), where start_i is where
token i-1 ended, and the continuation is every token from the one covering the first
continuation character on. Tokenizing the joined text (not the two halves apart) is what a
server sees, so local and HTTP scores agree; a token straddling the boundary counts as
continuation.
"""

from __future__ import annotations

import bisect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from scalelab.errors import ScalelabError


class Loglikelihood(NamedTuple):
    """One loglikelihood answer; unpacks as `(logprob, is_greedy, n_tokens)`."""

    logprob: float  # natural log, summed over the continuation's tokens (<= 0)
    is_greedy: bool  # every continuation token was the argmax given what precedes it
    n_tokens: int  # tokens of the continuation (see the module docstring for which)


@dataclass(frozen=True)
class GenRequest:
    """One generation request.

    prompt: the text to continue. max_tokens: the most new tokens (0 gives ""). temperature:
    0 is greedy (deterministic); above 0 samples from softmax(logits / temperature) with no
    top-k/top-p cut. stop: strings that end the completion (not included in it). seed: makes
    sampling reproducible; without one, a sampled request is never cached.
    """

    prompt: str
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a lone string is one stop sequence, not its chars
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        if not isinstance(self.prompt, str):
            raise ScalelabError(f"generation prompt must be a string, not {type(self.prompt)}")
        if self.max_tokens < 0:
            raise ScalelabError(f"max_tokens must be >= 0, not {self.max_tokens}")
        if self.temperature < 0:
            raise ScalelabError(f"temperature must be >= 0, not {self.temperature}")

    @property
    def deterministic(self) -> bool:
        """Greedy or seeded: the same request always gives the same text (so it is cacheable)."""
        return self.temperature == 0 or self.seed is not None

    def as_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class Generation:
    """A completion with what a server reports about it."""

    text: str
    finish_reason: str  # "stop" (eos or a stop string) or "length" (max_tokens reached)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # dollars, when the server reports them (e.g. OpenRouter's usage.cost)
    cached: bool = False  # answered from the request cache (its counts are the first call's)


@dataclass
class TokenScores:
    """Per-token scores of one text, as an OpenAI `echo` + `logprobs` response gives them.

    starts[i] is the character offset where token i begins (see the module docstring);
    logprobs[i] is log p(token i | tokens before it), None for the first token (nothing to
    condition on, or dropped by left truncation); greedy[i] says token i was the argmax;
    top[i] lists the k most likely (token text, logprob) at position i when asked for.
    """

    tokens: list[str]
    starts: list[int]
    logprobs: list[float | None]
    greedy: list[bool | None]
    top: list[list[tuple[str, float]] | None] = field(default_factory=list)


def span_start(starts: Sequence[int], ctx_len: int) -> int:
    """Index of the first continuation token: the token covering character `ctx_len`."""
    return max(bisect.bisect_right(list(starts), ctx_len) - 1, 0)


def continuation_score(
    scores: TokenScores, ctx_len: int, text_len: int, what: str
) -> Loglikelihood:
    """Sum the logprobs of the tokens from `span_start` on; the text ends at `text_len`."""
    if ctx_len >= text_len:  # empty continuation: log 1, and nothing to be greedy about
        return Loglikelihood(0.0, True, 0)
    i = span_start(scores.starts, ctx_len)
    span = scores.logprobs[i:]
    if i == 0 or any(lp is None for lp in span):
        raise ScalelabError(
            f"{what}: the continuation has no scored context before it (an empty or "
            "one-token context, or context + continuation longer than the model's window)"
        )
    logprob = float(sum(span))  # python floats: float64 sums, whatever the model dtype
    return Loglikelihood(logprob, all(bool(g) for g in scores.greedy[i:]), len(span))


def as_pairs(requests: Sequence) -> list[tuple[str, str]]:
    """Validate loglikelihood requests: each a (context, continuation) pair of strings."""
    pairs = []
    for r in requests:
        if isinstance(r, str) or len(r) != 2 or not all(isinstance(s, str) for s in r):
            raise ScalelabError(f"loglikelihood request must be (context, continuation): {r!r}")
        pairs.append((r[0], r[1]))
    return pairs


def canonical_json(obj: object) -> str:
    """The JSON a cache key hashes: sorted keys, no whitespace, so equal requests hash equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Backend(ABC):
    """A model that scores and generates text. Subclasses implement the three methods and
    `fingerprint`; local ones also expose `.module` (a trainable torch nn.Module) and
    `.tokenizer`. Every method takes a list and returns a list of the same length and order,
    so backends can batch; user mistakes raise `ScalelabError`."""

    kind = "base"

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever answers may change: a weights digest, Hub revision or server id."""

    @property
    def cache_salt(self) -> str:
        """Options that change answers without changing the model (the cache key holds them)."""
        return self.kind

    @abstractmethod
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        """[(context, continuation)] -> [(sum of continuation token logprobs, is_greedy,
        continuation tokens)].

        An empty context conditions on the tokenizer's BOS (or EOS) token; an empty
        continuation scores (0.0, True, 0).
        """

    @abstractmethod
    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """[text] -> [log p(text)]: every token scored, the first one given BOS/EOS."""

    @abstractmethod
    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        """[GenRequest] -> [completion text], stop strings and the prompt not included."""

    def generate_full(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """[GenRequest] -> [Generation]: the text with why it ended and what it cost in
        tokens. Backends that know those override this; the default knows only the text."""
        return [Generation(t, "unknown") for t in self.generate(requests)]

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release connections or threads (a no-op for most backends)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
