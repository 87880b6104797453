"""User-facing errors.

Anything the user can fix (a bad YAML field, an unknown dataset, a missing file) raises
`ScalelabError`; the CLI prints its message as one line on stderr and exits with status 2.
Everything else is a bug and keeps its traceback.

A message echoes what the user wrote through `shown` / `clip`, never whole: a value may be
a 100,000-character name or a YAML alias bomb whose full repr is hundreds of megabytes.
"""

from __future__ import annotations

import re
import reprlib

ECHO_LIMIT = 80  # characters of a user's value that a message repeats
LINE_LIMIT = 299  # characters of a whole `error: ...` line (the CLI cuts longer ones)

# Bounded repr: it stops descending after a few levels and items, so it never builds the
# text of a huge value just to cut it.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = ECHO_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


class ScalelabError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""

    exit_code = 2


def clip(text: object, limit: int = ECHO_LIMIT) -> str:
    """`str(text)` cut to at most `limit` characters, keeping its start and its end (the
    end of a path names the file)."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 3) * 2 // 3
    return f"{text[:head]}...{text[len(text) - (limit - 3 - head) :]}"


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user's value as a message echoes it: its repr, at most `limit` characters."""
    if isinstance(value, str):
        return clip(repr(clip(value, limit)), limit)
    return clip(_REPR.repr(value), limit)


def one_line(message: str, limit: int = LINE_LIMIT) -> str:
    """`message` with its line breaks folded into spaces, at most `limit` characters."""
    return clip(re.sub(r"\s*[\r\n]+\s*", " ", message).strip(), limit)
