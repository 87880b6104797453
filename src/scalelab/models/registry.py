"""Model names: ladder rungs, registered pretrained models, local folders and Hub ids.

Every model goes through `from_pretrained` (a registered package model is first fetched to
a local folder), so Hub names and local paths share one code path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import ScalelabError
from scalelab.models.ladder import ladder_names, ladder_rung
from scalelab.registry import Registry


@dataclass(frozen=True)
class PretrainedEntry:
    """A named pretrained model: `locate()` returns a local folder for `from_pretrained`."""

    name: str
    arch: str  # "encoder" or "decoder"
    params_m: float  # total parameters, millions (for listings)
    description: str
    locate: Callable[[], Path]
    gguf_file: str | None = None  # for GGUF checkpoints loaded through transformers


PRETRAINED: Registry[PretrainedEntry] = Registry("pretrained model")


def register_pretrained(entry: PretrainedEntry) -> PretrainedEntry:
    return PRETRAINED.register(entry.name, entry)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """Where a model name points. kind: ladder | registered | local | hub."""

    name: str
    kind: str


def resolve_model(name: str) -> ModelRef:
    """Classify a model name, raising a clear error for names that match nothing."""
    from scalelab.builtins import load_builtins  # registers the pretrained entries

    load_builtins()
    if ladder_rung(name) is not None:
        return ModelRef(name, "ladder")
    if name in PRETRAINED:
        return ModelRef(name, "registered")
    if Path(name).expanduser().exists():
        return ModelRef(str(Path(name).expanduser()), "local")
    if _HUB_ID.match(name):
        return ModelRef(name, "hub")
    known = ", ".join(
        ["gpt-d1..gpt-d12", *[n for n in ladder_names() if not n.startswith("gpt-d")]]
    )
    known += ", " + ", ".join(PRETRAINED) if list(PRETRAINED) else ""
    raise ScalelabError(
        f"unknown model {name!r}: not a ladder name ({known}), not an existing local "
        "folder, and not an org/name Hugging Face id"
    )


def model_path(ref: ModelRef) -> tuple[str, dict]:
    """The `from_pretrained` argument and extra kwargs for a non-ladder model."""
    if ref.kind == "registered":
        entry = PRETRAINED.get(ref.name)
        kwargs = {"gguf_file": entry.gguf_file} if entry.gguf_file else {}
        return str(entry.locate()), kwargs
    if ref.kind in ("local", "hub"):
        return ref.name, {}
    raise ValueError(f"{ref.name} is a ladder model: build it from its config")
