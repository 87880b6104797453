"""The local backend: any Hugging Face causal LM on this machine (or an in-memory module).

Sources: a `save_pretrained` folder (a ladder run's product, kind local/run), a registered
offline model (`model_path(ref)` gives the folder and e.g. `gguf_file`), or a Hub id with an
optional revision (kind hub; needs the Hub). Scoring right-pads a batch and passes no
attention mask: in a causal model no real token attends to the padding after it, and the
unmasked kernel is the one an unbatched call uses, so batched and unbatched scores agree.
Greedy generation batches prompts of any lengths, left-padded with an attention mask
(`generation.py` says why a row's text is the same as alone).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from scalelab.errors import ScalelabError
from scalelab.models.backends import spans
from scalelab.models.backends.base import (
    Backend,
    Generation,
    GenRequest,
    Loglikelihood,
    TokenScores,
    as_pairs,
    span_start,
)
from scalelab.models.backends.fingerprint import folder_fingerprint, weights_digest
from scalelab.models.registry import ModelRef, model_path, quiet_gguf

# A packed row may differ from ordinary rows by float rounding (another attention kernel);
# a model that ignores the packed row's mask is off by far more.
PACK_CHECK_TOL = 1e-3


class LocalBackend(Backend):
    """A causal LM loaded in this process; `.module` is trainable, `.tokenizer` its tokenizer.

    Options: device ("cpu", "cuda", "auto"), dtype ("float32", "bfloat16", ...; default the
    checkpoint's), batch_size (sequences per forward pass) and batch_tokens (a cap on padded
    tokens per pass: the logits alone are batch_tokens x vocab floats).
    """

    kind = "local"

    def __init__(
        self,
        ref: ModelRef | None = None,
        *,
        module: Any = None,
        tokenizer: Any = None,
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int = 16,
        batch_tokens: int = 8192,
        fingerprint: str | None = None,
    ) -> None:
        if (ref is None) == (module is None):
            raise ValueError("LocalBackend needs exactly one of a model reference and a module")
        if ref is not None and ref.kind in ("ladder", "http"):
            what = "an untrained ladder config" if ref.kind == "ladder" else "an HTTP endpoint"
            raise ScalelabError(f"model {ref.name!r} is {what}, not local weights")
        if module is not None and tokenizer is None:
            raise ValueError("LocalBackend.from_module needs the module's tokenizer")
        self.ref, self._module, self._tokenizer = ref, module, tokenizer
        self.device, self.dtype = device, dtype
        self.batch_size, self.batch_tokens = max(1, batch_size), max(1, batch_tokens)
        self._fingerprint = fingerprint
        self._packing: bool | None = None  # packed scoring works here (checked on first use)
        if module is not None:
            self._finish_tokenizer()

    @classmethod
    def from_module(cls, module: Any, tokenizer: Any, **opts: Any) -> LocalBackend:
        """Wrap a model already in memory (e.g. mid-training); its fingerprint hashes its
        current weights unless `fingerprint=` is given."""
        return cls(module=module, tokenizer=tokenizer, **opts)

    # --- loading -------------------------------------------------------------------------

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        assert self.ref is not None
        path, kwargs = model_path(self.ref)
        extra = {"dtype": getattr(torch, self.dtype)} if self.dtype else {}
        where = "the Hugging Face Hub" if self.ref.kind == "hub" else path
        try:
            with quiet_gguf():
                tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
                module, info = AutoModelForCausalLM.from_pretrained(
                    path, output_loading_info=True, **kwargs, **extra
                )
        except (OSError, ValueError, ImportError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ScalelabError(
                f"cannot load model {self.ref.name!r} from {where}: {first}"
            ) from None
        if missing := info.get("missing_keys"):  # e.g. an encoder given a random LM head
            raise ScalelabError(
                f"model {self.ref.name!r} has no trained language-model head: loaded as "
                f"{type(module).__name__}, {len(missing)} weights are missing from its "
                f"checkpoint (e.g. {sorted(missing)[0]}); scoring and generation need a causal "
                "language model (a decoder such as GPT-2 or Llama)"
            )
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._module, self._tokenizer = module.to(device), tokenizer
        self._finish_tokenizer()

    def _finish_tokenizer(self) -> None:
        tok = self._tokenizer
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token

    @property
    def module(self) -> Any:
        """The torch `nn.Module` (loaded on first use); train it like any other."""
        if self._module is None:
            self._load()
        return self._module

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    @cached_property
    def max_length(self) -> int:
        """The most tokens one forward pass takes (the model's position table)."""
        config = self.module.config
        for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            if isinstance(getattr(config, name, None), int):
                return getattr(config, name)
        limit = getattr(self.tokenizer, "model_max_length", 0)
        return limit if 0 < limit < 1_000_000 else 2048

    @cached_property
    def prefix_text(self) -> str | None:
        """What an empty context means: "" when the tokenizer adds a BOS token itself, else
        the BOS (or EOS) token's text; None when there is neither."""
        tok = self.tokenizer
        ids = tok("a")["input_ids"]
        if tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id:
            return ""
        return tok.bos_token or tok.eos_token

    def _prefix(self, what: str) -> str:
        if self.prefix_text is None:
            raise ScalelabError(f"{what}: empty context, and the tokenizer has no BOS/EOS token")
        return self.prefix_text

    @property
    def fingerprint(self) -> str:
        """sha256 over the model folder's files, `hub:id@revision`, or (in memory) over the
        current weights."""
        if self._fingerprint:
            return self._fingerprint
        if self.ref is None:
            return weights_digest(self.module)
        if self.ref.kind == "hub":
            revision = self.ref.revision or getattr(self.module.config, "_commit_hash", None)
            return f"hub:{self.ref.path}@{revision or 'unknown'}"
        path, kwargs = model_path(self.ref)
        return folder_fingerprint(path, kwargs.get("gguf_file"))

    # --- scoring -------------------------------------------------------------------------

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode and no autograd for the call; a module being trained is left training."""
        import torch

        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.module.train(was_training)

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """(token ids, start offsets) of `text`; token i starts where token i-1 ended, so
        whitespace a tokenizer trims from its offsets stays with the token it precedes."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """`encode` of each text; a fast tokenizer encodes them all in one batch call (the
        same ids and offsets, a fraction of the per-call overhead)."""
        tok = self.tokenizer
        if not getattr(tok, "is_fast", False):  # no offsets: decode each prefix instead
            out = []
            for text in texts:
                ids = tok(text)["input_ids"]
                out.append((ids, [len(tok.decode(ids[:i])) for i in range(len(ids))]))
            return out
        enc = tok(list(texts), return_offsets_mapping=True)
        return [
            (ids, [0] + [end for _, end in offsets[:-1]])
            for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        ]

    def window_cut(self, n_tokens: int, first: int) -> int | None:
        """lm-eval's window rule for a request of `n_tokens` tokens whose continuation starts
        at token `first`: how many tokens are dropped from its start (the last
        `max_length` + 1 are kept; the last one is only scored, never fed), or None when no
        scored context is left before the continuation (it is too long for the window)."""
        cut = max(n_tokens - self.max_length - 1, 0)
        return cut if first - cut >= 1 else None

    def _batches(self, seqs: list[list[int]]) -> Iterator[list[int]]:
        """Indices of `seqs`, longest first, in batches within batch_size and batch_tokens."""
        return spans.batches([len(s) for s in seqs], self.batch_size, self.batch_tokens)

    def score_ids(self, seqs: list[list[int]], top_k: int = 0) -> list[dict[str, list]]:
        """Per sequence, for positions 1..n-1: "logprobs" (log p(token | before)), "greedy"
        (token is the argmax) and, with top_k, "top" ([(id, logprob)] best first)."""
        import torch

        out: list[dict[str, list]] = [{"logprobs": [], "greedy": [], "top": []} for _ in seqs]
        pad = self.tokenizer.pad_token_id or 0
        device = next(self.module.parameters()).device
        for batch in self._batches(seqs):
            width = len(seqs[batch[0]])
            if width < 2:
                continue
            x = torch.full((len(batch), width), pad, dtype=torch.long)
            for r, i in enumerate(batch):
                x[r, : len(seqs[i])] = torch.tensor(seqs[i])
            x = x.to(device)
            with self._inference():
                logits = self.module(input_ids=x).logits[:, :-1].float()
                lse = logits.logsumexp(-1)
                chosen = logits.gather(-1, x[:, 1:, None])[..., 0]
                greedy = chosen >= logits.max(-1).values
                logprobs = chosen - lse
                if top_k:
                    top_val, top_id = logits.topk(min(top_k, logits.shape[-1]), -1)
                    top_val = top_val - lse[..., None]
            for r, i in enumerate(batch):
                n = len(seqs[i]) - 1
                out[i]["logprobs"] = logprobs[r, :n].tolist()
                out[i]["greedy"] = greedy[r, :n].tolist()
                if top_k:
                    ids, vals = top_id[r, :n].tolist(), top_val[r, :n].tolist()
                    out[i]["top"] = [
                        list(zip(a, b, strict=True)) for a, b in zip(ids, vals, strict=True)
                    ]
        return out

    def token_scores(
        self, texts: Sequence[str], top_k: int = 0, token_text: bool = False
    ) -> list[TokenScores]:
        """Per-token scores of each text (what a server's echo returns). A text longer than
        the model's window keeps its last `max_length` tokens; the first one kept has no
        score. token_text: also decode each token (and each top-k alternative)."""
        encoded = [self.encode(t) for t in texts]
        encoded = [(ids[-self.max_length :], st[-self.max_length :]) for ids, st in encoded]
        raw = self.score_ids([ids for ids, _ in encoded], top_k)
        tok = self.tokenizer
        result = []
        for (ids, starts), r in zip(encoded, raw, strict=True):
            tokens = [tok.decode([i]) for i in ids] if token_text else []
            top = []
            if top_k and ids:
                top = [None] + [[(tok.decode([j]), v) for j, v in row] for row in r["top"]]
            lead: list = [None] if ids else []
            result.append(
                TokenScores(tokens, starts, lead + r["logprobs"], lead + r["greedy"], top)
            )
        return result

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[Loglikelihood]:
        """Continuation scores (see Backend). Only the continuations' logits are computed,
        and requests with one context (a question's choices) run it once: packed into one
        row per question, many questions a batch, else through the key/value cache
        (`spans.py`). A text longer than the window keeps its last `max_length` + 1
        tokens (lm-eval's rule: the last token is only scored, never fed)."""
        pairs = [(c or self._prefix("loglikelihood"), x) for c, x in as_pairs(requests)]
        encoded = self.encode_many([context + continuation for context, continuation in pairs])
        seqs, firsts = [], []
        for i, ((context, continuation), (ids, starts)) in enumerate(
            zip(pairs, encoded, strict=True)
        ):
            first = span_start(starts, len(context)) if continuation else len(ids)
            cut = self.window_cut(len(ids), first)
            if cut is None:
                raise ScalelabError(
                    f"loglikelihood request {i}: the continuation has no scored context "
                    "before it (an empty or one-token context, or context + continuation "
                    "longer than the model's window)"
                )
            seqs.append(ids[cut:])
            firsts.append(first - cut)
        scored = self._score_spans(seqs, firsts)
        return [Loglikelihood(float(sum(lp)), all(g), len(lp)) for lp, g in scored]

    def _score_spans(self, seqs: list[list[int]], firsts: list[int]) -> list[spans.Span]:
        todo = [i for i, (s, f) in enumerate(zip(seqs, firsts, strict=True)) if f < len(s)]
        out: list[spans.Span] = [([], [])] * len(seqs)  # empty continuations: (0.0, True)
        shared, rest = spans.plan_groups(
            [seqs[i] for i in todo], [firsts[i] for i in todo], spans.PACK_MIN_TOKENS
        )
        shared = [(first, [todo[m] for m in members]) for first, members in shared]
        rest = [todo[m] for m in rest]
        pad = self.tokenizer.pad_token_id or 0
        with self._inference():
            packing = self._packing
            if shared and packing is None:
                # a group where two choices have tokens after their first: the mask matters
                telling = [g for g in shared if sum(len(seqs[i]) > g[0] + 1 for i in g[1]) > 1]
                packing = self._packing_agrees(seqs, (telling or shared)[0], pad)
                if telling or not packing:
                    self._packing = packing
            if packing:
                out = self._score_packed(seqs, shared, out, pad)
                shared = []
            else:  # the cache path pays for short contexts with an extra call each
                rest = sorted(
                    rest + [i for f, g in shared if f < spans.SHARE_MIN_TOKENS for i in g]
                )
                shared = [(f, g) for f, g in shared if f >= spans.SHARE_MIN_TOKENS]
            for first, idx_all in shared:
                for k in range(0, len(idx_all), self.batch_size):
                    idx = idx_all[k : k + self.batch_size]
                    got = spans.score_shared(self.module, [seqs[i] for i in idx], first)
                    out = _put(out, idx, got)
            for batch in self._batches([seqs[i] for i in rest]):
                idx = [rest[b] for b in batch]
                got = spans.score_batch(
                    self.module, [seqs[i] for i in idx], [firsts[i] for i in idx], pad
                )
                out = _put(out, idx, got)
        return out

    def _score_packed(self, seqs: list, groups: list, out: list, pad: int) -> list:
        """Groups of requests sharing a context, one packed row per group, in batches
        within batch_size rows and batch_tokens padded tokens."""
        lengths = [spans.packed_length(f, [len(seqs[i]) for i in idx]) for f, idx in groups]
        for batch in spans.batches(lengths, self.batch_size, self.batch_tokens):
            items = [
                (seqs[groups[g][1][0]][: groups[g][0]],
                 [seqs[i][groups[g][0] :] for i in groups[g][1]])
                for g in batch
            ]  # fmt: skip
            got = spans.score_packed(self.module, items, pad)
            for g, spans_ in zip(batch, got, strict=True):
                out = _put(out, groups[g][1], spans_)
        return out

    def _packing_agrees(self, seqs: list, group: tuple[int, list[int]], pad: int) -> bool:
        """Whether this model scores a packed row (custom 4D mask, per-choice position
        ids, boolean logits_to_keep) as it scores the same sequences one per row: checked
        once per backend on a real group where the mask matters (until one comes, each
        call checks its first group); a model that ignores or rejects the mask gets the
        key/value-cache path instead."""
        first, idx = group
        idx = sorted(idx, key=lambda i: -len(seqs[i]))[:4]
        try:
            packed = self._score_packed(seqs, [(first, idx)], [None] * len(seqs), pad)
        except (TypeError, ValueError, RuntimeError, IndexError):
            return False
        plain = spans.score_batch(self.module, [seqs[i] for i in idx], [first] * len(idx), pad)
        for i, (lp, _) in zip(idx, plain, strict=True):
            if len(packed[i][0]) != len(lp):
                return False
            if any(abs(a - b) > PACK_CHECK_TOL for a, b in zip(packed[i][0], lp, strict=True)):
                return False
        return True

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Whole-text log-likelihoods. A text longer than the window is cut into windows of
        `max_length` tokens overlapping by one, each token scored once."""
        prefix = self._prefix("loglikelihood_rolling") if texts else ""
        windows: list[list[int]] = []
        owner: list[tuple[int, int]] = []  # (text index, first position to count)
        for t, text in enumerate(texts):
            if not text:
                continue
            ids, starts = self.encode(prefix + text)
            first, s, width = max(span_start(starts, len(prefix)), 1), 0, self.max_length
            while True:
                windows.append(ids[s : s + width])
                owner.append((t, max(first - s - 1, 0)))  # skip targets before `first`
                if s + width >= len(ids):
                    break
                s += width - 1
        totals = [0.0] * len(texts)
        for (t, skip), r in zip(owner, self.score_ids(windows), strict=True):
            totals[t] += float(sum(r["logprobs"][skip:]))
        return totals

    # --- generation ----------------------------------------------------------------------

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        return [g.text for g in self.generate_full(requests)]

    def generate_full(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Like `generate`, with finish reasons and token counts (for the server)."""
        from scalelab.models.backends.generation import run_generation

        return run_generation(self, list(requests))


def _put(out: list, idx: list[int], got: list) -> list:
    for i, g in zip(idx, got, strict=True):
        out[i] = g
    return out
