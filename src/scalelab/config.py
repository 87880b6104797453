"""Shared validation of user input: strict pydantic models whose errors become one readable
line, the YAML loader every spec goes through, and checks of user-given paths.

The loader and the path checks exist because the standard tools fail badly on hostile
input: PyYAML recurses once per nesting level (RecursionError at a few thousand), expands
aliases without limit (a 1.4 KB "billion laughs" file is 10^9 values) and keeps the last of
two equal keys silently; `Path.exists()` raises on a NUL byte or an over-long name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from scalelab.errors import ScalelabError, clip, shown

MAX_YAML_DEPTH = 64  # nesting levels; a real spec uses about 5
MAX_YAML_VALUES = 100_000  # values of a document with every alias expanded
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_PATH_BYTES = 4096  # a whole path (PATH_MAX on Linux)
MAX_INT = 2**63 - 1  # the store keeps settings in SQLite, whose integers are 64-bit


_Model = TypeVar("_Model", bound="Strict")


class Strict(BaseModel):
    """Unknown keys are errors; every float is finite (`.nan` or `.inf` in a YAML file is
    an error naming the field: no setting means it); instances are frozen, and a copy with
    changes is validated like the original (`model_copy(update=...)`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _fits_64_bits(cls, value: Any) -> Any:
        """Every integer setting fits in 64 bits: a bigger one (`tokens: 1e29` written out)
        is a typo, and would fail later in the store. Scalars only: nested models and
        per-run params run this check on their own fields, so the error names the field."""
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ValueError(f"integers must be at most 2^63 - 1 (got {value:.3g})")
        return value

    def model_copy(
        self: _Model, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> _Model:
        """A copy with `update` applied, validated: pydantic's own `model_copy` trusts
        `update`, which let a CLI override (`--output-dir`) skip the checks of a field.
        Raises ScalelabError naming the field of an invalid update."""
        copy = super().model_copy(update=update, deep=deep)
        if not update:
            return copy
        # The fields as set (nested models stay as they are: they are already valid).
        return validate(type(self), {name: getattr(copy, name) for name in copy.model_fields_set})


def _close_key(model: type[BaseModel] | None, loc: tuple) -> str | None:
    """The field of `model` (followed through nested models along `loc`) closest to the
    unknown key `loc[-1]`, if one is close (`verbalisers` -> `verbalizers`)."""
    import difflib
    import typing

    for part in loc[:-1]:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        kinds = [field.annotation, *typing.get_args(field.annotation)]
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
    if model is None or not isinstance(loc[-1], str):
        return None
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.75)
    return close[0] if close else None


def error_line(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """`prefix.field.sub: message (got value)` for the first error, plus a count of the
    others; keys and values are echoed cut short (`errors.shown`). With `model`, an
    unknown key names the closest field when one is close ("did you mean ...?")."""
    first = err.errors(include_url=False)[0]
    parts = (*([prefix] if prefix else []), *(clip(p, 40) for p in first["loc"]))
    loc = ".".join(str(p) for p in parts)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        close = _close_key(model, tuple(first["loc"]))
        msg = "unknown key" + (f" (did you mean {close!r}?)" if close else "")
    value = first.get("input")
    # A model-level check (loc: the section) gets the whole section as input: the message
    # says what is wrong, echoing the section would only hide it.
    whole_section = first["type"] == "value_error" and isinstance(value, Mapping)
    quiet = first["type"] in ("extra_forbidden", "missing") or whole_section
    shown_input = "" if quiet else f" (got {shown(value)})"
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    # A check of the whole spec names its fields in its message.
    return f"{loc}: {msg}{shown_input}{extra}" if loc else f"{msg}{shown_input}{extra}"


def validate(model: type[BaseModel], data: Any, prefix: str = ""):
    """`model.model_validate(data)`, turning a ValidationError into a ScalelabError line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ScalelabError(error_line(err, prefix, model)) from None


# --- YAML -------------------------------------------------------------------------------


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what would exhaust the stack or the memory, and keys
    given twice. Each composed node's size (values, aliases expanded) and depth are known
    once its children are, so the limits are checked without expanding anything."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._size: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), expanded

    def fetch_flow_collection_start(self, TokenClass: type) -> None:  # PyYAML's names
        # The scanner looks ahead across open flow collections (`[[[[...`), in time
        # quadratic in their depth: stop before the composer would.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(
                None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)  # the anchored node (or an error)
            if id(node) not in self._size:  # `&a [*a]`: the alias is inside its own anchor
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"alias *{clip(event.anchor, 40)} refers to itself",
                    event.start_mark,
                )
            return node
        self._depth += 1
        mark = self.peek_event().start_mark
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels", mark
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._size[id(node)] = size = self._measure(node)
        if size[0] > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_YAML_VALUES:,} values once aliases are expanded", mark
            )
        if size[1] > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"aliases nest deeper than {MAX_YAML_DEPTH} levels", mark
            )
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """(values, depth) of `node` with aliases expanded, from its children's."""
        if isinstance(node, yaml.ScalarNode):
            return 1, 1
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
        )
        sizes = [self._size[id(c)] for c in children]
        return 1 + sum(s[0] for s in sizes), 1 + max((s[1] for s in sizes), default=0)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        """A key written twice is an error (PyYAML keeps the last one silently); keys that
        a merge (`<<: *base`) brings in may be overridden, as YAML intends."""
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = self.construct_object(key_node)
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shown(key, 40)} (first at line {first_line[key] + 1})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line


def read_yaml_model(path: Path, model: type[BaseModel], what: str) -> Any:
    """The YAML file at `path` validated as `model` (a file of `what` keys: "task",
    "prompt"). Raises ScalelabError naming the file: unreadable, invalid YAML, not a
    mapping, or the first invalid field (`error_line`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScalelabError(f"cannot read {what} file {clip(path)}: {err}") from None
    raw = load_yaml(text, clip(path))
    if not isinstance(raw, dict):
        raise ScalelabError(f"{clip(path)}: expected a mapping of {what} keys")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ScalelabError(f"{clip(path)}: {error_line(err)}") from None


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document with the limits above.

    Raises ScalelabError `source: invalid YAML at line L, column C: problem` for a syntax
    error, nesting deeper than MAX_YAML_DEPTH, more than MAX_YAML_VALUES values with aliases
    expanded, an alias inside its own anchor, or a duplicate key.
    """
    loader = None
    try:
        loader = _LimitedLoader(text)  # the reader refuses control characters here
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScalelabError(f"{source}: invalid YAML{where}: {clip(problem)}") from None
    finally:
        if loader is not None:
            loader.dispose()


# --- paths ------------------------------------------------------------------------------


def check_path_text(text: str) -> Path:
    """`text` as a Path (`~` expanded), refusing what the OS would fail on with a traceback.

    Raises ValueError (a message without the path; callers name the field and echo it) for
    an empty path, a NUL byte, a name over MAX_NAME_BYTES or a path over MAX_PATH_BYTES.
    """
    if not text:
        raise ValueError("the path is empty")
    if "\0" in text:
        raise ValueError("the path contains a NUL character")
    path = Path(text).expanduser()
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ValueError(f"the path is longer than {MAX_PATH_BYTES} bytes")
    if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in path.parts):
        raise ValueError(f"a name in the path is longer than {MAX_NAME_BYTES} bytes")
    return path


def stat_or_none(path: Path) -> os.stat_result | None:
    """`os.stat(path)` (links followed), None when nothing is there (what `Path.exists()`
    says); ValueError for any other failure (a loop of links, no permission)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise ValueError(f"cannot look at the path: {err.strerror or err}") from None


def path_error(text: str, err: ValueError) -> ScalelabError:
    """The error for a path check that failed outside a pydantic model, echoing the path
    as pydantic does (`what failed (got 'path')`); the caller prefixes the field."""
    return ScalelabError(f"{err} (got {shown(text)})")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: {"params": {"lr": 1e-3}} -> {"params.lr": 1e-3};
    lists and tuples as JSON text (the store's columns, logged parameters, run labels)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str) if isinstance(v, (list, tuple)) else v
    return out
