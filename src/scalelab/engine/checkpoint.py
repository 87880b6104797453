"""Resumable training checkpoints and model folders, written atomically.

A checkpoint is a folder: the trained tensors (safetensors, by parameter name), the best
weights so far (when the method selects on validation), the optimizer state (`torch.save`,
reloaded with `weights_only=True`, so no pickled code is ever run) and a JSON file of loop
state. It is written to `<dir>.tmp`, then swapped in by renames, so a kill at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(
    path: Path,
    tensors: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor],
    optimizer_state: dict,
    state: dict[str, Any],
) -> None:
    """Write one checkpoint folder atomically (see the module docstring)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {n: t.detach().contiguous() for n, t in tensors.items()}, str(tmp / "model.safetensors")
    )
    save_file({n: t.contiguous() for n, t in best.items()}, str(tmp / "best.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path) -> tuple[dict, dict, dict, dict] | None:
    """(tensors, best, optimizer state, loop state), or None when no checkpoint exists."""
    from safetensors.torch import load_file

    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():  # killed between the two renames
        path = old
    if not (path / "state.json").exists():
        return None
    return (
        load_file(str(path / "model.safetensors")),
        load_file(str(path / "best.safetensors")),
        torch.load(path / "optimizer.pt", weights_only=True),
        json.loads((path / "state.json").read_text()),
    )


def save_pretrained_atomic(path: Path, *objs, json_files: dict[str, Any] | None = None) -> None:
    """`save_pretrained` each object (model, tokenizer) into `path`, atomically, together
    with `json_files` (file name -> JSON-able object) written beside them."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for obj in objs:
        obj.save_pretrained(tmp)
    for name, data in (json_files or {}).items():
        (tmp / name).write_text(json.dumps(data, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
