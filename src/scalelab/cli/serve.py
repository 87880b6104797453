"""`scalelab serve MODEL`: an OpenAI-compatible HTTP server over a local model."""

from __future__ import annotations

import typer


def serve(
    model: str = typer.Argument(
        ..., help="A model folder, run product, registered model or Hub id (org/name@rev)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (no auth!)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="0 picks a free port."),
    max_batch: int = typer.Option(
        32, "--max-batch", min=1, help="Most prompts gathered into one forward pass."
    ),
    name: str | None = typer.Option(
        None, "--name", help="The model name clients send (default: MODEL as written)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
) -> None:
    """Serve MODEL at /v1/completions, /v1/chat/completions and /v1/models."""
    from scalelab.builtins import load_builtins
    from scalelab.errors import ScalelabError
    from scalelab.models.registry import resolve_model

    load_builtins()
    ref = resolve_model(model)  # an unknown name is a one-line error (exit 2)
    if ref.kind in ("http", "ladder"):
        what = "an HTTP endpoint" if ref.kind == "http" else "an untrained ladder config"
        raise ScalelabError(f"cannot serve {model!r}: it is {what}, not local weights")

    from scalelab.models.backends.local import LocalBackend
    from scalelab.serve.server import run_server

    served = name or model
    backend = LocalBackend(ref, device=device)

    def announce(url: str) -> None:
        typer.echo(f"serving {served!r} ({backend.fingerprint[:19]}) at {url}")
        typer.echo(f"backend name: {url}#{served}")
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: listening on {host} without authentication", err=True)

    run_server(backend, served, host=host, port=port, max_batch=max_batch, announce=announce)


def register(app: typer.Typer) -> None:
    """Add `serve` to the main app."""
    app.command("serve")(serve)
