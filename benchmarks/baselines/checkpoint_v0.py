"""Resumable training checkpoints, written atomically.

(Verbatim copy of the old `scalelab.methods.checkpoint`, which the v0 loops import: the
engine's `scalelab.engine.checkpoint` has a different signature.)

A checkpoint is a folder: model weights (safetensors; tied weights handled by
`save_model`), optimizer state (`torch.save`, reloaded with `weights_only=True`) and a
JSON file of loop state. It is written to `<dir>.tmp`, then swapped in by renames, so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, state: dict[str, Any]) -> None:
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer) -> dict[str, Any] | None:
    """Restore model and optimizer in place; returns the loop state, or None if none saved."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():  # killed between the two renames
        path = old
    if not (path / "state.json").exists():
        return None
    load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return json.loads((path / "state.json").read_text())


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
