"""The `scalelab` command line. Each command's signature is its CLI (typer); one module per
thing a user does: `run` (run, results, models, methods), `analysis` (fit), `report`,
`compare` (compare, sweep), `smallest`, `w2s`, `data_scaling` (data-scaling), `active`,
`inspect`, `data`, `evaluate` (eval), `serve`."""

from __future__ import annotations

import functools
import sys

import typer
import typer.main

from scalelab.cli import (
    active,
    analysis,
    compare,
    data,
    data_scaling,
    evaluate,
    inspect,
    report,
    serve,
    smallest,
    w2s,
)
from scalelab.cli import run as run_cmds
from scalelab.errors import ScalelabError, one_line

# Usage errors are click's exceptions, which newer typer vendors (`typer._click`): take
# their module from the class typer exports, so either layout works.
_click_errors = sys.modules[typer.BadParameter.__module__]
_ClickException = _click_errors.ClickException
_NoArgsIsHelp = getattr(_click_errors, "NoArgsIsHelpError", ())  # click >= 8.2
_Abort = (typer.Abort, getattr(_click_errors, "Abort", typer.Abort))

app = typer.Typer(
    help="scalelab: how small can a model be for this task, and which method gets it there?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[default: ...]" must print as written
)

# One module per thing a user does; each adds its commands here.
for _module in (run_cmds, analysis, report, compare, smallest, w2s, data_scaling, active, inspect,
                data, evaluate, serve):  # fmt: skip
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line on stderr and exit with status 2.

    That holds for typer's own usage errors too (unknown option, bad value, missing
    argument): click runs outside its standalone mode, so they come here as exceptions
    instead of a usage block. `--help`, and a command group given no command, still print
    their help. Commands return None; `typer.Exit(n)` is how one sets the exit status.
    """
    from scalelab.builtins import load_builtins

    load_builtins()  # the one place names are registered for every command (no torch import)
    try:
        status = _command().main(args=argv, prog_name="scalelab", standalone_mode=False)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except _NoArgsIsHelp as err:
        err.show()  # `scalelab`, `scalelab data`: the help is the answer
        return err.exit_code
    except _ClickException as err:
        return _error(_usage_line(err), err.exit_code)
    except _Abort:
        return _error("aborted", 1)
    except ScalelabError as err:
        return _error(str(err), err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished runs are stored; rerun to resume", err=True)
        return 130
    # Outside standalone mode click returns typer.Exit's status, else the command's None.
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


@functools.lru_cache(maxsize=1)
def _command() -> typer.core.TyperGroup:
    """The click command behind `app`, built once: typer builds it from every command's
    signature on each call (a tenth of a second), which in-process callers, the tests,
    would pay on every `main()`."""
    return typer.main.get_command(app)


def _usage_line(err: Exception) -> str:
    """A usage error as one line that points at the command's help."""
    ctx = getattr(err, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{err.format_message()}{hint}"


def _error(message: str, code: int) -> int:
    """Print `error: message` as one line of at most LINE_LIMIT characters; return `code`."""
    typer.echo(one_line(f"error: {message}"), err=True)
    return code


def entry() -> None:
    sys.exit(main())
