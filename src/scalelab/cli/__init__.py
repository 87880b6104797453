"""The `scalelab` command line. Each command's signature is its CLI (typer); one module per
thing a user does: `run` (run, results, models, methods), `analysis` (fit, report, compare,
sweep), `data`, `serve`."""

from __future__ import annotations

import sys

import typer

from scalelab.cli import analysis, data, serve
from scalelab.cli import run as run_cmds
from scalelab.errors import ScalelabError

app = typer.Typer(
    help="scalelab: how small can a model be for this task, and which method gets it there?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One module per thing a user does; each adds its commands here.
for _module in (run_cmds, analysis, data, serve):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line on stderr and exit with status 2.

    Typer runs in standalone mode, so its own usage errors (unknown option, bad value) print
    the usage and exit 2 through SystemExit, which becomes the return value here.
    """
    from scalelab.builtins import load_builtins

    load_builtins()  # the one place names are registered for every command (no torch import)
    try:
        app(args=argv, prog_name="scalelab")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ScalelabError as err:
        typer.echo(f"error: {err}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted: finished runs are stored; rerun to resume", err=True)
        return 130
    return 0


def entry() -> None:
    sys.exit(main())
