"""Training-set augmentation of classification tasks: EDA and back-translation.

    tasks: {dataset: trec, train_size: 500,
            augment: {method: eda, ratio: [0, 0.5, 1.0], n_aug: 4, alpha_sr: 0.1}}

A list inside `augment` sweeps it like any task field (`grid/spec.py` expands lists in
nested settings). `ratio` is the fraction of the training examples that get augmented
copies (0: none, so exactly the original training set); each chosen example gets `n_aug`
copies, which join the training set with its label. Augmentation runs in
`data/classification.load_task_data` after the `train_size` subsample and the `half` cut,
on the training examples only: validation, test and the held-out half never see it.

EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on
Text Classification Tasks", EMNLP-IJCNLP, Section 2): each augmented sentence applies one
operation chosen at random: synonym replacement (SR: n non-stop words replaced by a random
WordNet synonym), random insertion (RI: a synonym of a random non-stop word inserted at a
random place, n times), random swap (RS: two words swapped, n times) and random deletion
(RD: each word removed with probability alpha_rd), with n = max(1, floor(alpha * l)) for a
sentence of l words. The paper's recommended settings (Table 3): alpha = 0.05 and n_aug =
16 for 500 training examples, alpha = 0.05 and n_aug = 8 for 2,000, alpha = 0.1 and n_aug =
4 from 5,000 on. Unlike the authors' script, which lowercases the text and strips digits,
apostrophes and punctuation before augmenting, this keeps them: words are whitespace
chunks whose leading and trailing punctuation stays in place, numbers are never replaced,
and a replaced capitalised word stays capitalised (whitespace runs become one space). Every
random choice comes from a generator seeded by (data_seed, the example's position in the
training split, the copy's index), so the output never depends on the order, the process
or the other examples.

Back-translation (Sennrich et al. 2016; Xie et al. 2020, UDA) goes through a model backend
and is registered by `models/backtranslate.py` (this stage cannot import models): see there.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Discriminator, Field, PositiveInt, Tag, model_validator

from scalelab.config import Strict
from scalelab.errors import ScalelabError
from scalelab.registry import Registry

Synonyms = Callable[[str], Sequence[str]]  # word -> its synonyms (never the word itself)
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
# ISO 639-1 codes spelled out in back-translation prompts (any other value is used as is).
LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
             "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "zh": "Chinese",
             "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi"}  # fmt: skip
_CHUNK = re.compile(r"(\W*)(.*?)(\W*)", re.DOTALL)  # leading punctuation, word, trailing


class EdaAugment(Strict):
    """EDA (Wei & Zou 2019, Section 2). ratio: fraction of the training examples augmented;
    n_aug: copies per augmented example (the paper's n_aug); alpha_sr, alpha_ri, alpha_rs:
    fraction of a sentence's words replaced / inserted / swapped (n = max(1, alpha * l));
    alpha_rd: probability of deleting each word. An alpha of 0 turns its operation off.
    SR and RI need WordNet (Debian `wordnet-base`, read through nltk)."""

    method: Literal["eda"]
    ratio: Rate = 1.0
    n_aug: PositiveInt = Field(4, le=64)
    alpha_sr: Rate = 0.1
    alpha_ri: Rate = 0.1
    alpha_rs: Rate = 0.1
    alpha_rd: Rate = 0.1

    @model_validator(mode="after")
    def _check(self) -> EdaAugment:
        if not any((self.alpha_sr, self.alpha_ri, self.alpha_rs, self.alpha_rd)):
            raise ValueError("every alpha is 0: no EDA operation is left to apply")
        if self.ratio > 0 and (self.alpha_sr or self.alpha_ri):
            from scalelab.data.wordnet import wordnet_problem

            if problem := wordnet_problem():
                raise ValueError(f"alpha_sr / alpha_ri > 0 need WordNet: {problem}")
        return self


class BackTranslationAugment(Strict):
    """Back-translation: each chosen text translated into `pivot` and back into `source`
    by `model` (a registered name, a local folder or `http://host:port/v1#name`), asked
    through its backend's `generate`; answers are cached (`models/backtranslate.py`).
    ratio, n_aug: as EDA's; temperature: 0 is greedy (then n_aug must be 1), above 0
    samples, seeded per copy; max_tokens: the most tokens of each translation; chat: ask an
    HTTP endpoint through chat completions (instruction-tuned models)."""

    method: Literal["back_translation"]
    model: str = Field(min_length=1, max_length=4096)
    pivot: str = Field("fr", pattern=r"^[A-Za-z][A-Za-z -]{0,39}$")
    source: str = Field("en", pattern=r"^[A-Za-z][A-Za-z -]{0,39}$")
    ratio: Rate = 1.0
    n_aug: PositiveInt = Field(1, le=16)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: PositiveInt = Field(128, le=1024)
    chat: bool = False

    @model_validator(mode="after")
    def _check(self) -> BackTranslationAugment:
        if self.n_aug > 1 and self.temperature == 0:
            raise ValueError(
                "n_aug > 1 with temperature 0 gives n_aug equal copies: set temperature > 0"
            )
        if self.pivot.lower() == self.source.lower():
            raise ValueError(f"pivot {self.pivot!r} is the source language")
        if "back_translation" in AUGMENTERS and (check := AUGMENTERS.get("back_translation").check):
            try:
                check(self)
            except ScalelabError as err:  # pydantic names the field of a ValueError
                raise ValueError(str(err)) from None
        return self


def _method_of(value: object) -> object:
    return value.get("method") if isinstance(value, dict) else getattr(value, "method", None)


# `method` picks the model; errors name the method (`augment.eda.alpha_sr: ...`).
Augment = Annotated[
    Annotated[EdaAugment, Tag("eda")] | Annotated[BackTranslationAugment, Tag("back_translation")],
    Discriminator(
        _method_of,
        custom_error_type="augment_method",
        custom_error_message="expected a mapping with method: eda or back_translation",
    ),
]


@dataclass(frozen=True)
class Augmenter:
    """How one `augment.method` makes copies: `make(texts, positions, options, data_seed)`
    returns, per text, its copies (at most options.n_aug); `check(options)`, if given, runs
    at spec time and raises ValueError or ScalelabError with one line."""

    make: Callable[[list[str], list[int], Strict, int], list[list[str]]]
    check: Callable[[Strict], None] | None = None


AUGMENTERS: Registry[Augmenter] = Registry("augmentation method")


def register_augmenter(method: str, augmenter: Augmenter) -> Augmenter:
    return AUGMENTERS.register(method, augmenter)


def chosen(positions: Sequence[int], ratio: float, data_seed: int) -> list[int]:
    """The indices (into `positions`) of the round(ratio * n) examples that get copies: those
    whose sha256(data_seed, position) is smallest, so the choice does not depend on the
    order, and a larger ratio keeps every example a smaller one chose."""
    k = int(ratio * len(positions) + 0.5)
    rank = sorted(
        range(len(positions)), key=lambda i: (_hash(f"pick/{data_seed}/{positions[i]}"), i)
    )
    return sorted(rank[:k])


def augment_training(
    train: list[dict], positions: list[int], options: Strict | None, data_seed: int
) -> tuple[list[dict], list[int]]:
    """(the training examples followed by the augmented copies, their positions: a copy
    carries its source's position). `options` None or ratio 0 returns the input unchanged.
    Raises ScalelabError from the augmenter (e.g. a model that cannot be reached)."""
    if options is None or options.ratio == 0 or not train:
        return train, positions
    pick = chosen(positions, options.ratio, data_seed)
    made = AUGMENTERS.get(options.method).make(
        [train[i]["text"] for i in pick], [positions[i] for i in pick], options, data_seed
    )
    extra, extra_pos = [], []
    for i, copies in zip(pick, made, strict=True):
        extra += [{**train[i], "text": text} for text in copies]
        extra_pos += [positions[i]] * len(copies)
    return train + extra, positions + extra_pos


# --- EDA -------------------------------------------------------------------------------


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def copy_rng(what: str, data_seed: int, position: int, index: int) -> random.Random:
    """The generator of one copy: seeded by a string of (what, data_seed, position, index)
    (Python seeds a str through sha512: the same in every process, whatever PYTHONHASHSEED)."""
    return random.Random(f"{what}/{data_seed}/{position}/{index}")


Chunk = list[str]  # [leading punctuation, word, trailing punctuation]


def split_words(text: str) -> list[Chunk]:
    """Whitespace chunks of `text`, each as [leading punctuation, word, trailing
    punctuation]; a chunk of punctuation only has an empty word ("?" -> ["?", "", ""])."""
    return [list(_CHUNK.fullmatch(c).groups()) for c in text.split()]


def join_words(chunks: list[Chunk]) -> str:
    return " ".join(t for t in ("".join(c) for c in chunks) if t)


def _replaceable(word: str, stop_words: frozenset[str]) -> bool:
    """A word SR and RI may take synonyms of: has a letter, no digit, not a stop word."""
    return (any(ch.isalpha() for ch in word) and not any(ch.isdigit() for ch in word)
            and word.lower() not in stop_words)  # fmt: skip


def _like(word: str, synonym: str) -> str:
    """The synonym capitalised as the word it replaces ("Quick" -> "Fast")."""
    if word[:1].isupper() and synonym[:1].islower():
        return synonym[:1].upper() + synonym[1:]
    return synonym


def _synonyms_of(word: str, synonyms: Synonyms) -> list[str]:
    """The source's synonyms of `word`, without the word itself, in a fixed order."""
    return sorted({s for s in synonyms(word) if s and s.lower() != word.lower()})


def synonym_replacement(
    chunks: list[Chunk], n: int, rng: random.Random, synonyms: Synonyms,
    stop_words: frozenset[str],
) -> list[Chunk]:  # fmt: skip
    """SR: up to n distinct non-stop words (in a random order; those without synonyms are
    skipped) each replaced, wherever it occurs, by one random synonym."""
    out = [list(c) for c in chunks]
    words = sorted({c[1] for c in out if _replaceable(c[1], stop_words)})
    rng.shuffle(words)
    done = 0
    for word in words:
        if done >= n:
            break
        if options := _synonyms_of(word, synonyms):
            new = _like(word, rng.choice(options))
            for c in out:
                if c[1] == word:
                    c[1] = new
            done += 1
    return out


def random_insertion(
    chunks: list[Chunk], n: int, rng: random.Random, synonyms: Synonyms,
    stop_words: frozenset[str],
) -> list[Chunk]:  # fmt: skip
    """RI, n times: a random synonym of a random non-stop word (the first, in a random
    order, that has one) inserted as a word before a random word (so a closing mark stays
    last); stops when no word has one."""
    out = [list(c) for c in chunks]
    for _ in range(n):
        places = [i for i, c in enumerate(out) if _replaceable(c[1], stop_words)]
        rng.shuffle(places)
        options = next((s for i in places if (s := _synonyms_of(out[i][1], synonyms))), None)
        if not options:
            break
        before = rng.choice([i for i, c in enumerate(out) if c[1]])
        out.insert(before, ["", rng.choice(options), ""])
    return out


def random_swap(chunks: list[Chunk], n: int, rng: random.Random) -> list[Chunk]:
    """RS, n times: two random words trade places (their punctuation stays where it was)."""
    out = [list(c) for c in chunks]
    places = [i for i, c in enumerate(out) if c[1]]
    if len(places) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(places, 2)
        out[i][1], out[j][1] = out[j][1], out[i][1]
    return out


def random_deletion(chunks: list[Chunk], p: float, rng: random.Random) -> list[Chunk]:
    """RD: each word removed with probability p (its punctuation stays); a one-word
    sentence is left whole, and if every word would go, one random word stays."""
    out = [list(c) for c in chunks]
    places = [i for i, c in enumerate(out) if c[1]]
    if len(places) < 2:
        return out
    gone = {i for i in places if rng.random() < p}
    if len(gone) == len(places):
        gone.discard(rng.choice(places))
    for i in gone:
        out[i][1] = ""
    return [c for c in out if any(c)]


def eda_copies(
    text: str, options: EdaAugment, data_seed: int, position: int, synonyms: Synonyms,
    stop_words: frozenset[str],
) -> list[str]:  # fmt: skip
    """The options.n_aug EDA copies of one text: copy j applies one operation, drawn
    uniformly from those whose alpha is > 0, with `copy_rng("eda", data_seed, position, j)`
    (Wei & Zou 2019, Section 2). A copy may equal the text (no synonym found, one word)."""
    ops = [(name, a) for name, a in (("sr", options.alpha_sr), ("ri", options.alpha_ri),
           ("rs", options.alpha_rs), ("rd", options.alpha_rd)) if a > 0]  # fmt: skip
    chunks = split_words(text)
    n_words = sum(1 for c in chunks if c[1])
    out = []
    for j in range(options.n_aug):
        rng = copy_rng("eda", data_seed, position, j)
        op, alpha = rng.choice(ops)
        n = max(1, int(alpha * n_words))
        if op == "sr":
            new = synonym_replacement(chunks, n, rng, synonyms, stop_words)
        elif op == "ri":
            new = random_insertion(chunks, n, rng, synonyms, stop_words)
        elif op == "rs":
            new = random_swap(chunks, n, rng)
        else:
            new = random_deletion(chunks, alpha, rng)
        out.append(join_words(new))
    return out


@lru_cache(maxsize=1)
def english_stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (318 words, lowercase)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _no_synonyms(word: str) -> list[str]:
    return []


def _make_eda(texts: list[str], positions: list[int], options, data_seed: int) -> list[list[str]]:
    if options.alpha_sr or options.alpha_ri:
        from scalelab.data.wordnet import wordnet_synonyms

        synonyms, stop = wordnet_synonyms(), english_stop_words()
    else:  # RS and RD only: no WordNet, no stop words needed
        synonyms, stop = _no_synonyms, frozenset()
    return [eda_copies(t, options, data_seed, p, synonyms, stop)
            for t, p in zip(texts, positions, strict=True)]  # fmt: skip


register_augmenter("eda", Augmenter(_make_eda))


def language_name(code: str) -> str:
    """A language as prompts name it: "fr" -> "French"; others as written ("Swahili")."""
    return LANGUAGES.get(code.lower(), code)
