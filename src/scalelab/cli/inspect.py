"""`scalelab inspect MODEL --attention TEXT`: draw a trained model's attention maps for a
short text, per layer and head, as a PNG grid (a run's product with --experiment, a
registered model, a local folder or a cached Hub id)."""

from __future__ import annotations

from pathlib import Path

import typer

from scalelab.cli.common import input_file, output_folder, stored_tables
from scalelab.errors import ScalelabError, shown


def _model_ref(model: str, experiment: Path | None, output_dir: Path | None):
    """The ModelRef for `model`: with --experiment, a run id (or its first 6+ characters)
    of that experiment names the run's saved model; otherwise any model name of a spec."""
    from scalelab.models.registry import ModelRef, resolve_model

    if experiment is None:
        return resolve_model(model)
    input_file(experiment, "experiment file")
    from scalelab.grid.api import open_experiment

    exp = open_experiment(experiment, output_dir)
    runs, _ = stored_tables(exp, experiment)
    ids = (
        [] if runs.empty else [i for i in runs["run_id"] if len(model) >= 6 and i.startswith(model)]
    )
    if len(ids) != 1:
        what = "matches no run" if not ids else f"matches {len(ids)} runs"
        raise ScalelabError(
            f"run {shown(model)} {what} of {experiment} (give 6+ characters of a run id)"
        )
    folder = Path(exp.runs_dir) / ids[0] / "model"
    if not folder.is_dir():
        raise ScalelabError(f"run {ids[0][:8]} saved no model ({folder} is missing)")
    name = runs.set_index("run_id").loc[ids[0], "model"]
    return ModelRef.for_run(ids[0], exp.runs_dir, f"{name} (run {ids[0][:8]})")


def inspect_command(
    model: str = typer.Argument(..., help="A run id (with --experiment), a registered model, "
                                "a local model folder or a cached Hub id."),
    attention: str = typer.Option(..., "--attention", help="The text to draw attention for."),
    out: Path = typer.Option(Path("attention.png"), "--out", help="The PNG to write."),
    experiment: Path | None = typer.Option(None, "--experiment",
                                           help="The experiment whose run MODEL names."),
    output_dir: Path | None = typer.Option(None, "--output-dir",
                                           help="Override the experiment's output_dir."),
    max_tokens: int = typer.Option(48, "--max-tokens", min=1, max=512,
                                   help="Tokens of the text drawn."),
    max_heads: int = typer.Option(12, "--max-heads", min=1, max=64, help="Heads per layer drawn."),
) -> None:  # fmt: skip
    """Attention maps of a trained model for a short text: a PNG grid, layers x heads."""
    if out.suffix.lower() != ".png":
        raise ScalelabError(f"--out: write a .png file (got {shown(str(out))})")
    output_folder(out.parent if str(out.parent) else Path("."))
    ref = _model_ref(model, experiment, output_dir)
    from scalelab.eval.attention import attention_maps
    from scalelab.report.attention import plot_attention_grid

    maps = attention_maps(ref, attention, max_tokens)
    path = plot_attention_grid(maps, out, max_heads)
    layers, heads, n = maps.weights.shape[0], maps.weights.shape[1], len(maps.tokens)
    typer.echo(f"wrote {path}: {layers} layers x {min(heads, max_heads)} heads, {n} tokens")


def register(app: typer.Typer) -> None:
    """Add `inspect` to the main app."""
    app.command("inspect")(inspect_command)
