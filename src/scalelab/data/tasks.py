"""Task kinds: what a task entry in a spec may contain, per kind.

A task is data plus how it is presented to a model (tokenizer, sequence length, eval
windows). Kinds register a strict pydantic model; the kind of a registered dataset comes
from the catalog, so `tasks: {dataset: wikitext2}` needs no `kind:`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import PositiveInt, model_validator

from scalelab.config import Strict, validate
from scalelab.data.tokenizer_spec import TokenizerSpec
from scalelab.errors import ScalelabError
from scalelab.registry import Registry

TASK_KINDS: Registry[type[Strict]] = Registry("task kind")


def register_task_kind(kind: str, model: type[Strict]) -> type[Strict]:
    return TASK_KINDS.register(kind, model)


class EvalWindow(Strict):
    """Sliding-window perplexity (the transformers perplexity guide).

    window: tokens of context per forward pass (default: the task's seq_len);
    stride: tokens the window advances (default: window // 2); each token is scored once,
    with up to window-1 tokens of context. max_tokens caps the tokens scored (None = all).
    """

    window: PositiveInt | None = None
    stride: PositiveInt | None = None
    max_tokens: PositiveInt | None = None


class LMTask(Strict):
    """Language modelling on a text corpus (registered name or local file/folder)."""

    kind: Literal["lm"] = "lm"
    dataset: str
    tokenizer: TokenizerSpec = TokenizerSpec(kind="bpe", vocab_size=1024)
    seq_len: PositiveInt = 128
    eval: EvalWindow = EvalWindow()

    @model_validator(mode="after")
    def _check(self) -> LMTask:
        window = self.eval.window or self.seq_len
        if window > self.seq_len:
            raise ValueError(f"eval.window ({window}) cannot exceed seq_len ({self.seq_len})")
        if self.eval.stride and self.eval.stride > window:
            raise ValueError(
                f"eval.stride ({self.eval.stride}) cannot exceed the window ({window})"
            )
        return self


register_task_kind("lm", LMTask)


def dataset_kind(dataset: str) -> str | None:
    """The kind of a registered dataset; None for a local path; error for an unknown name."""
    from scalelab.data.catalog import DATASETS

    if dataset in DATASETS:
        return DATASETS.get(dataset).kind
    path = Path(dataset).expanduser()
    if path.exists():
        if not os.access(path, os.R_OK):
            raise ScalelabError(f"dataset file {path} is not readable")
        return None
    if "/" in dataset or path.suffix:
        raise ScalelabError(f"dataset file {path} does not exist")
    known = ", ".join(DATASETS)
    raise ScalelabError(f"unknown dataset {dataset!r} (known: {known}; or a path to a local file)")


def task_entry(raw: Any, where: str) -> tuple[dict[str, Any], type[Strict]]:
    """(the entry as a dict with its `kind` filled in, that kind's model), unvalidated."""
    if isinstance(raw, str):
        raw = {"dataset": raw}
    if not isinstance(raw, dict):
        raise ScalelabError(f"{where}: expected a mapping or a dataset name, got {raw!r}")
    if "dataset" not in raw:
        raise ScalelabError(f"{where}.dataset: field required")
    try:
        inferred = dataset_kind(str(raw["dataset"]))  # also checks that the dataset exists
    except ScalelabError as err:
        raise ScalelabError(f"{where}.dataset: {err}") from None
    kind = raw.get("kind") or inferred
    if kind is None:
        raise ScalelabError(
            f"{where}.kind: required for a local dataset (one of {', '.join(TASK_KINDS)})"
        )
    if kind not in TASK_KINDS:
        raise ScalelabError(
            f"{where}.kind: unknown task kind {kind!r} (known: {', '.join(TASK_KINDS)})"
        )
    return {**raw, "kind": kind}, TASK_KINDS.get(kind)


def parse_task(raw: Any, where: str) -> Strict:
    """Validate one task entry (dict, or a bare dataset name) into its kind's model."""
    entry, model = task_entry(raw, where)
    return validate(model, entry, where)
