"""User-facing errors.

Anything the user can fix (a bad YAML field, an unknown dataset, a missing file) raises
`ScalelabError`; the CLI prints its message as one line on stderr and exits with status 2.
Everything else is a bug and keeps its traceback.
"""


class ScalelabError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""

    exit_code = 2
