"""Backends: one interface (`Backend`) for every model a run touches, local or remote.

`open_backend(ref_or_name, **opts)` picks the backend for a model reference's kind: `local`
for a run's model folder, a local folder, a registered offline model or a Hub id; `http`
for an OpenAI-compatible endpoint (`http://host:port/v1#model-name`). A new backend is one
file plus one `register(...)` line below; its module is imported only when first opened, so
importing this package costs no torch, transformers or openai.

Options: `cache` (True, False, a path or a RequestCache: HTTP backends cache by default,
local ones do not, as they are cheap to rerun) and the backend's own keyword options.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalelab.errors import ScalelabError
from scalelab.models.backends.base import (
    Backend,
    Generation,
    GenRequest,
    Loglikelihood,
    TokenScores,
)
from scalelab.models.backends.cache import CachingBackend, RequestCache
from scalelab.models.registry import ModelRef, as_ref
from scalelab.registry import Registry

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendKind",
    "CachingBackend",
    "GenRequest",
    "Generation",
    "Loglikelihood",
    "RequestCache",
    "TokenScores",
    "open_backend",
    "register",
]


@dataclass(frozen=True)
class BackendKind:
    """A backend: the class (as "module:attr", imported on first use), the ModelRef kinds it
    serves, and whether its answers are cached unless told otherwise."""

    name: str
    target: str
    ref_kinds: tuple[str, ...]
    cache_by_default: bool

    def load(self) -> type[Backend]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


BACKENDS: Registry[BackendKind] = Registry("backend")


def register(name: str, target: str, ref_kinds: tuple[str, ...], cache: bool) -> BackendKind:
    return BACKENDS.register(name, BackendKind(name, target, ref_kinds, cache))


_LOCAL_KINDS = ("registered", "local", "run", "hub")
register("local", "scalelab.models.backends.local:LocalBackend", _LOCAL_KINDS, cache=False)
register("http", "scalelab.models.backends.http:HttpBackend", ("http",), cache=True)


def backend_for(ref: ModelRef) -> BackendKind:
    """The backend that serves this kind of model reference."""
    for _, kind in BACKENDS.items():
        if ref.kind in kind.ref_kinds:
            return kind
    if ref.kind == "ladder":
        raise ScalelabError(
            f"model {ref.name!r} is an untrained ladder config: open a trained run's model "
            "folder (runs/<run_id>/model) instead"
        )
    raise ScalelabError(f"model {ref.name!r}: no backend serves models of kind {ref.kind!r}")


def open_backend(
    ref: ModelRef | str, *, cache: bool | str | Path | RequestCache | None = None, **opts: Any
) -> Backend:
    """The backend for a model (a ModelRef or a name `resolve_model` understands).

    cache: None uses the backend's default; True the default file
    (`$SCALELAB_HOME/cache/requests.sqlite`); a path or RequestCache that file; False none.
    Unknown options are a ScalelabError naming the backend's options.
    """
    ref = as_ref(ref)
    kind = backend_for(ref)
    cls = kind.load()
    allowed = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in ("module", "tokenizer")
    ]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ScalelabError(
            f"unknown option(s) {', '.join(unknown)} for the {kind.name} backend "
            f"(options: {', '.join(allowed)}, cache)"
        )
    backend = cls(ref, **opts)
    if cache is None:
        cache = kind.cache_by_default
    if cache is False:
        return backend
    store = cache if isinstance(cache, RequestCache) else None
    if store is None:
        store = RequestCache(None if cache is True else cache)
    return CachingBackend(backend, store)
