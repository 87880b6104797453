"""Back-translation augmentation (`task.augment: {method: back_translation, ...}`).

Each chosen training text is translated into the pivot language and back into the source
language by a model behind a backend (Sennrich et al. 2016, "Improving Neural Machine
Translation Models with Monolingual Data"; as text-classification augmentation: Xie et al.
2020, "Unsupervised Data Augmentation for Consistency Training", Section 3.2):

    augment: {method: back_translation, model: "http://127.0.0.1:8000/v1#my-model",
              pivot: fr, ratio: 0.5}

`model` is anything `resolve_model` understands: a registered model or a local folder (a
causal LM on the `local` backend, loaded on the GPU when there is one) or an
OpenAI-compatible endpoint (any model the server runs, seq2seq included; `chat: true` asks
through chat completions). Both directions go through the backend's `generate` and the
SQLite request cache (`models/backends/cache.py`, keyed by the model's fingerprint and the
exact request), as teachers' rationales do: a second run, or another grid point with the
same texts, asks the model nothing. Greedy (temperature 0) gives one copy per text; with
temperature > 0 each of n_aug copies samples with its own seed, drawn from (data_seed,
position, copy), so sampled answers are cached too. A model that does not resolve fails
the spec; one that cannot be loaded or reached fails the run with one line naming it.
"""

from __future__ import annotations

from scalelab.data.augment import (
    Augmenter,
    BackTranslationAugment,
    copy_rng,
    language_name,
    register_augmenter,
)
from scalelab.errors import ScalelabError

PROMPT = (
    "Translate the following {src} text into {dst}. Write only the translation.\n\n"
    "{src}: {text}\n{dst}:"
)


def translation_prompt(text: str, src: str, dst: str) -> str:
    """The instruction asking for `text` in language `dst` (names or ISO codes)."""
    return PROMPT.format(src=language_name(src), dst=language_name(dst), text=text.strip())


def first_line(text: str) -> str:
    """A translation as the first non-empty line of the answer, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _requests(texts: list[str], seeds: list[int | None], src: str, dst: str, o):
    from scalelab.models.backends import GenRequest

    stop = () if o.chat else ("\n",)  # a completion model would go on to the next line
    return [GenRequest(translation_prompt(t, src, dst), o.max_tokens, o.temperature, stop, s)
            for t, s in zip(texts, seeds, strict=True)]  # fmt: skip


def back_translate(
    texts: list[str], positions: list[int], options: BackTranslationAugment, data_seed: int,
    **backend_opts,
) -> list[list[str]]:  # fmt: skip
    """Per text, its back-translations (up to options.n_aug; an empty answer is dropped).
    `backend_opts` go to `open_backend` (e.g. max_retries for an endpoint). Raises
    ScalelabError `task.augment.model ...: why` when the model cannot be loaded or reached."""
    from scalelab.models.backends import open_backend

    o = options
    jobs = [(i, j) for i in range(len(texts)) for j in range(o.n_aug)]
    seeds = [
        None if o.temperature == 0 else copy_rng("bt", data_seed, positions[i], j).getrandbits(31)
        for i, j in jobs
    ]
    opts = {"chat": o.chat} if o.model.startswith(("http://", "https://")) else {"device": "auto"}
    try:
        with open_backend(o.model, cache=True, **{**opts, **backend_opts}) as backend:
            pivots = backend.generate(_requests([texts[i] for i, _ in jobs], seeds, o.source,
                                                o.pivot, o))  # fmt: skip
            pivots = [first_line(p) for p in pivots]
            done = [k for k, p in enumerate(pivots) if p]  # an empty pivot has no way back
            back_seeds = [None if seeds[k] is None else seeds[k] + 1 for k in done]
            backs = backend.generate(
                _requests([pivots[k] for k in done], back_seeds, o.pivot, o.source, o)
            )
    except ScalelabError as err:
        raise ScalelabError(f"task.augment.model {o.model!r}: {err}") from None
    out: list[list[str]] = [[] for _ in texts]
    for k, back in zip(done, backs, strict=True):
        if text := first_line(back):
            out[jobs[k][0]].append(text)
    return out


def check(options: BackTranslationAugment) -> None:
    """Spec time: the model name resolves to something a backend serves (nothing loaded,
    no endpoint asked). Raises ScalelabError."""
    from scalelab.models.backends import backend_for
    from scalelab.models.registry import resolve_model

    ref = resolve_model(options.model)
    if ref.kind == "ladder":
        raise ScalelabError(
            f"model {options.model!r} is an untrained ladder config, not a translator"
        )
    backend_for(ref)


register_augmenter("back_translation", Augmenter(back_translate, check))
