"""Classification by label names: verbalisers, in-context examples and prompts.

A classification task's labels become words a model can score (`verbalizers`): the spec's
`params.verbalizers` ({label name: word(s)}), else the catalog dataset's defaults
(`verbalizers.yaml`: TREC's `DESC` is "description", `HUM` "person", ...), else the label
name with "_" and "-" read as spaces. A label named by digits alone ("0", "1": a local
table with integer labels) has no default word: the spec must give one.

A decoder scores each label's verbaliser as a continuation of one prompt per example
(lm-evaluation-harness's multiple-choice layout, `data/multiple_choice.py`):

    description + k x (template(shot text) + target_delimiter + shot verbaliser
    + fewshot_delimiter) + template(text)      continuation: target_delimiter + verbaliser

`template` holds `{text}` (default "Text: {text}\\nLabel:"); `{labels}` in the description
is the verbalisers joined by ", ". The k examples (`draw_shots`) come from the training
split, one set for the whole run (every scored example sees the same examples in the same
order, as in Zhao et al. 2021, "Calibrate Before Use"), drawn with the task's `data_seed`
and the params' `shot_seed`. The draw is balanced over classes: round robin over the
classes in a seeded random order, a seeded random example of each class per round, then
the k shuffled, so k >= the number of classes shows every label and no label gets more
than one example more than another (an unbalanced set biases the prediction towards its
majority label, Zhao et al. 2021, Sec. 4). Only validation and test examples are scored,
so an example is never among its own shots.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from scalelab.errors import ScalelabError, clip, shown

VERBALIZERS_FILE = Path(__file__).with_name("verbalizers.yaml")
_DIGITS = re.compile(r"^[+-]?\d+$")


@lru_cache(maxsize=1)
def default_verbalizers() -> dict[str, dict[str, str]]:
    """dataset -> {label name: verbaliser} of the catalog datasets (`verbalizers.yaml`)."""
    from scalelab.config import load_yaml

    data = load_yaml(VERBALIZERS_FILE.read_text(encoding="utf-8"), str(VERBALIZERS_FILE))
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data.items()}


def resolve_verbalizers(
    label_names: list[str], dataset: str, given: dict[str, str] | None
) -> list[str]:
    """One verbaliser per label, in label order (see the module docstring for the rules).

    Raises ScalelabError (naming `params.verbalizers`) for a given label that is not one of
    `label_names`, an empty verbaliser, two labels with one verbaliser, or a label of
    digits alone with none given."""
    given = dict(given or {})
    names = ", ".join(label_names)
    if unknown := [k for k in given if k not in label_names]:
        raise ScalelabError(
            f"params.verbalizers: unknown label {shown(unknown[0])} (labels: {clip(names, 200)})"
        )
    defaults = default_verbalizers().get(dataset, {})
    out = []
    for name in label_names:
        word = given.get(name, defaults.get(name))
        if word is None:
            if _DIGITS.match(name.strip()):
                raise ScalelabError(
                    f"params.verbalizers: label {shown(name)} is a number, which no model can "
                    f"read as a class; give each label a word ({{{name}: ...}}; labels: "
                    f"{clip(names, 120)})"
                )
            word = re.sub(r"[_-]+", " ", name)
        word = word.strip()
        if not word:
            raise ScalelabError(f"params.verbalizers: label {shown(name)} has an empty verbaliser")
        out.append(word)
    if len(set(out)) < len(out):
        twice = next(w for w in out if out.count(w) > 1)
        raise ScalelabError(f"params.verbalizers: two labels read as {shown(twice)}")
    return out


def draw_shots(labels: list[int], k: int, seed: int, shot_seed: int = 0) -> list[int]:
    """Positions of `k` examples among `labels` (the training split's), balanced over the
    classes present (see the module docstring), in prompt order. The same arguments give
    the same positions; numpy's generator seeded by (seed, shot_seed).

    Raises ScalelabError when `k` is larger than the split."""
    import numpy as np

    if k > len(labels):
        raise ScalelabError(
            f"params.shots: {k} examples asked, the training split has {len(labels)}"
        )
    if k <= 0:
        return []
    rng = np.random.default_rng([seed, shot_seed])
    y = np.asarray(labels, dtype=np.int64)
    classes = rng.permutation(np.unique(y))
    pools = [rng.permutation(np.flatnonzero(y == c)).tolist() for c in classes]
    picked: list[int] = []
    for r in range(max(len(p) for p in pools)):
        picked += [p[r] for p in pools if r < len(p)][: k - len(picked)]
        if len(picked) == k:
            break
    return [picked[i] for i in rng.permutation(k)]


def check_template(template: str) -> str:
    """The template, if it holds `{text}`; else ValueError (a params validator)."""
    if "{text}" not in template:
        raise ValueError("must hold {text}, where the example's text goes")
    return template


def render(template: str, text: str) -> str:
    """`template` with `{text}` replaced by the text, stripped of surrounding whitespace
    (nothing else in the template is read: braces in texts or templates are kept)."""
    return template.replace("{text}", text.strip())


def build_prefix(
    shots: list[dict], verbalizers: list[str], template: str, target_delimiter: str,
    fewshot_delimiter: str, description: str = "",
) -> str:  # fmt: skip
    """The part of every prompt before the scored example: the description (`{labels}`
    replaced by the verbalisers joined by ", ") and each shot ({"text", "label"}) with its
    label's verbaliser."""
    out = description.replace("{labels}", ", ".join(verbalizers))
    for shot in shots:
        out += render(template, shot["text"]) + target_delimiter
        out += verbalizers[shot["label"]] + fewshot_delimiter
    return out
