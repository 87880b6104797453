"""Shared pydantic base: strict models whose errors become one readable line."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from scalelab.errors import ScalelabError


class Strict(BaseModel):
    """Unknown keys are errors; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def error_line(err: ValidationError, prefix: str = "") -> str:
    """`prefix.field.sub: message` for the first error, plus a count of the others."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"]))
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    value = first.get("input")
    shown = "" if first["type"] in ("extra_forbidden", "missing") else f" (got {value!r})"
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{loc or '<root>'}: {msg}{shown}{extra}"


def validate(model: type[BaseModel], data: Any, prefix: str = ""):
    """`model.model_validate(data)`, turning a ValidationError into a ScalelabError line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ScalelabError(error_line(err, prefix)) from None
