"""`scalelab data ...`: list the dataset catalog and fetch datasets ahead of time."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from scalelab.data import catalog


def data_list() -> None:
    """List registered datasets: kind, preferred source, whether cached, description."""
    table = Table()
    # Names, kinds and the cached flag never wrap: they are what people scan and copy.
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("cached", no_wrap=True)
    table.add_column("description")
    for entry in catalog.list_datasets():
        cached = "yes" if catalog.is_cached(entry) else "no"
        table.add_row(
            entry.name, entry.kind, catalog.primary_source(entry), cached, entry.description
        )
    Console().print(table)


def data_fetch(name: str = typer.Argument(..., help="a registered dataset name")) -> None:
    """Download and verify dataset NAME (once), then print its local path."""
    typer.echo(str(catalog.fetch(name)))


def register(app: typer.Typer) -> None:
    """Add the `data` sub-command group to the main scalelab app."""
    data_app = typer.Typer(help="Datasets: list the catalog, fetch data.", no_args_is_help=True)
    data_app.command("list")(data_list)
    data_app.command("fetch")(data_fetch)
    app.add_typer(data_app, name="data")
