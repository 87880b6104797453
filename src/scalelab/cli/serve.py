"""`scalelab serve MODEL`: an OpenAI-compatible HTTP server over a local model."""

from __future__ import annotations

import typer

from scalelab.serve import Limits, check_bind, is_loopback

CAPS = Limits()  # the defaults shown in --help


def serve(
    model: str = typer.Argument(
        ..., help="A model folder, run product, registered model or Hub id (org/name@rev)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; anything but loopback needs an API key."
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="0 picks a free port."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="SCALELAB_API_KEY",
        show_default=False,
        help="Require 'Authorization: Bearer KEY' on every request. Prefer the environment "
        "variable: other users can read options in `ps`.",
    ),
    max_batch: int = typer.Option(
        CAPS.max_batch, "--max-batch", min=1, max=1024, help="Most prompts in one forward pass."
    ),
    max_prompts: int = typer.Option(
        CAPS.max_prompts, "--max-prompts", min=1, help="Most prompts (times n) in one request."
    ),
    max_prompt_tokens: int = typer.Option(
        CAPS.max_prompt_tokens, "--max-prompt-tokens", min=1, help="Most tokens in one prompt."
    ),
    max_tokens: int = typer.Option(
        CAPS.max_tokens, "--max-tokens", min=0, help="Most new tokens in one completion."
    ),
    max_n: int = typer.Option(CAPS.max_n, "--max-n", min=1, help="Most completions per prompt."),
    max_request_bytes: int = typer.Option(
        CAPS.max_request_bytes, "--max-request-bytes", min=1024, help="Largest request body."
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

    api_key = api_key or None  # an empty key (SCALELAB_API_KEY="") is no key
    check_bind(host, api_key)  # before the model loads: a refusal comes at once
    load_builtins()
    ref = resolve_model(model)  # an unknown name is a one-line error (exit 2)
    if ref.kind in ("http", "ladder"):
        what = "an HTTP endpoint" if ref.kind == "http" else "an untrained ladder config"
        raise ScalelabError(f"cannot serve {model!r}: it is {what}, not local weights")

    from scalelab.models.backends.local import LocalBackend
    from scalelab.serve.server import listen, run_server

    sock = listen(host, port)  # before the model loads (minutes): a busy port is said at once
    served = name or model
    # The backend's own batches are no larger than the server's, so --max-batch holds.
    backend = LocalBackend(ref, device=device, batch_size=max_batch)
    limits = Limits(
        max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens, max_n=max_n,
        max_prompts=max_prompts, max_batch=max_batch, max_request_bytes=max_request_bytes,
    )  # fmt: skip

    def announce(url: str) -> None:
        typer.echo(f"serving {served!r} ({backend.fingerprint[:19]}) at {url}")
        typer.echo(f"backend name: {url}#{served}")
        if api_key:
            typer.echo("API key required: clients send it as OPENAI_API_KEY (a bearer token)")
        if not is_loopback(host):
            typer.echo(
                f"warning: {host} is reachable from other machines over plain HTTP", err=True
            )

    run_server(
        backend, served, host=host, port=port, limits=limits, api_key=api_key,
        announce=announce, sock=sock,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `serve` to the main app."""
    app.command("serve")(serve)
