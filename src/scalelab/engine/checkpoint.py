"""Resumable training checkpoints and model folders, written atomically, verified on load.

A checkpoint is a folder: the trained tensors (safetensors, by parameter name), the best
weights so far (when the method selects on validation), the optimizer state (`torch.save`,
reloaded with `weights_only=True`, so no pickled code is ever run), a JSON file of loop
state, and `manifest.json`: the sha256 of each of those files.

Writing: into a temp folder unique to the writer (`.<dir>.tmp-<host>-<pid>-<random>`, so
two writers never share one), then swapped in by renames; the checkpoint it replaces is kept as
`<dir>.prev`. A kill at any moment leaves a complete checkpoint or its predecessor, never
half of one; temp folders of writers that died are removed by the next writer on that host.

Loading: the newest checkpoint that passes every check is used: the files match their
digests, every tensor is finite, the step lies within the run and the tensors fit the
model. A checkpoint that fails is renamed `<dir>.bad-<UTC time>` (kept for a post-mortem,
never deleted), named in one warning line, and the one before it is tried; with none left
the run starts from scratch, which ends the same way (a run is a function of its seed).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from scalelab.data.sources import sha256_file
from scalelab.io import remove_dead_temps, unique_temp_path

MANIFEST = "manifest.json"
STATE = "state.json"
TENSOR_FILES = ("model.safetensors", "best.safetensors")
OPTIMIZER = "optimizer.pt"
BAD_REASON = "bad-reason.txt"  # written into a set-aside folder: why it was set aside

Loaded = tuple[dict, dict, dict, dict]  # (tensors, best, optimizer state, loop state)


class BadCheckpoint(Exception):
    """Why a checkpoint folder cannot be resumed from (one line)."""


# --- writing ---


def save_checkpoint(
    path: Path,
    tensors: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor],
    optimizer_state: dict,
    state: dict[str, Any],
    keep_prev: bool = True,
) -> None:
    """Write one checkpoint folder atomically, with its manifest (see the module docstring).
    The checkpoint it replaces becomes `<path>.prev` (deleted instead when `keep_prev` is
    False). Raises OSError when the folder cannot be written (its temp folder is removed
    first)."""
    from safetensors.torch import save_file

    path = Path(path)
    remove_dead_temps(path)
    tmp = unique_temp_path(path)
    tmp.mkdir(parents=True)
    try:
        tensors = {n: t.detach().contiguous() for n, t in tensors.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        save_file({n: t.contiguous() for n, t in best.items()}, str(tmp / "best.safetensors"))
        torch.save(optimizer_state, tmp / OPTIMIZER)
        (tmp / STATE).write_text(json.dumps(state))
        digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps({"sha256": digests}, indent=1))
        _replace(tmp, path, keep=_prev(path) if keep_prev else None)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_pretrained_atomic(path: Path, *objs, json_files: dict[str, Any] | None = None) -> None:
    """`save_pretrained` each object (model, tokenizer) into `path`, atomically, together
    with `json_files` (file name -> JSON-able object) written beside them. Concurrent
    writers each use their own temp folder; the last one to finish wins. Raises what
    `save_pretrained` or the file system raises (the temp folder is removed first)."""
    path = Path(path)
    remove_dead_temps(path)
    tmp = unique_temp_path(path)
    try:
        for obj in objs:
            obj.save_pretrained(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        for name, data in (json_files or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2))
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_checkpoint(path: Path) -> None:
    """Delete a finished run's checkpoint and its predecessor; set-aside (bad) ones stay."""
    path = Path(path)
    for folder in (path, _prev(path)):
        shutil.rmtree(folder, ignore_errors=True)
    remove_dead_temps(path)


def _prev(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _replace(tmp: Path, path: Path, keep: Path | None = None) -> None:
    """Rename `tmp` to `path`. What was at `path` becomes `keep` (replacing it) or is
    deleted. If another writer's folder lands at `path` in between, it is moved aside in
    turn: the last writer wins, and nobody fails."""
    for _ in range(10):
        if path.exists():
            _move_aside(path, keep)
        try:
            tmp.rename(path)
            return
        except OSError as err:  # a non-empty folder is at `path` again: go round
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise OSError(errno.EBUSY, f"could not move {tmp.name} to {path}: other writers keep winning")


def _move_aside(path: Path, keep: Path | None) -> None:
    """`path` renamed to `keep` (whatever was there is deleted), or deleted."""
    if keep is None:
        _discard(path)
        return
    _discard(keep)
    try:
        path.rename(keep)
    except FileNotFoundError:  # another writer moved it first
        pass
    except OSError as err:  # another writer's `keep` landed first: it stays, ours goes
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        _discard(path)


def _discard(folder: Path) -> None:
    """Delete a folder without ever leaving half of it under its own name (rename first)."""
    trash = unique_temp_path(folder)
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


# --- loading ---


def load_checkpoint(
    path: Path,
    total_steps: int | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    warn: Callable[[str], None] = lambda line: None,
    set_aside: bool = True,
    fall_back: bool = True,
) -> Loaded | None:
    """(tensors, best, optimizer state, loop state) of the newest good checkpoint at `path`
    (then `<path>.prev`), or None when there is none (start from scratch).

    total_steps: the run's optimizer steps (a checkpoint's step must lie in 0..total);
    shapes: parameter name -> shape of the tensors the model trains (a checkpoint must hold
    exactly those). A checkpoint failing a check is renamed `<path>.bad-<UTC time>` unless
    `set_aside` is False (a DDP rank other than 0: rank 0 does it), and `warn` gets one line
    naming it, why, and what happens instead. `fall_back` False: `<path>.prev` is not
    tried (a checkpoint that is another run's product stands alone). Never raises for a bad checkpoint; raises
    OSError only when one cannot be renamed.
    """
    path = Path(path)
    bad: list[str] = []
    loaded, used = None, None
    for candidate in (path, _prev(path)) if fall_back else (path,):
        if not candidate.exists():
            continue
        try:
            loaded, used = _read_verified(candidate, total_steps, shapes), candidate
            break
        except BadCheckpoint as err:
            where = f"checkpoint {candidate}: {err}"
            if set_aside:
                where += f"; set aside as {_set_aside(candidate, str(err)).name}"
            bad.append(where)
    if bad:
        then = "starting from scratch"
        if loaded is not None:
            then = f"resuming from {used.name} at step {loaded[3]['step']}"
        for line in bad:
            warn(f"{line}; {then}")
    return loaded


def _set_aside(folder: Path, reason: str) -> Path:
    """Rename a bad checkpoint to `<name>.bad-<UTC time>` (never deleted) with the reason."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = folder.with_name(f"{folder.name}.bad-{stamp}")
    n = 1
    while aside.exists():  # two set aside within one second
        n += 1
        aside = folder.with_name(f"{folder.name}.bad-{stamp}-{n}")
    folder.rename(aside)
    (aside / BAD_REASON).write_text(reason + "\n")
    return aside


def _read_verified(
    folder: Path, total_steps: int | None, shapes: Mapping[str, tuple[int, ...]] | None
) -> Loaded:
    """Load one checkpoint folder; raises BadCheckpoint at the first check it fails."""
    from safetensors.torch import load_file

    _check_digests(folder)
    try:
        state = json.loads((folder / STATE).read_text())
        tensors, best = (load_file(str(folder / name)) for name in TENSOR_FILES)
        optimizer = torch.load(folder / OPTIMIZER, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file makes the folder bad
        raise BadCheckpoint(f"unreadable: {type(err).__name__}: {err}".splitlines()[0]) from None
    _check_state(state, total_steps)
    for name, group in (("model.safetensors", tensors), ("best.safetensors", best)):
        _check_tensors(name, group, shapes, exact=name == "model.safetensors")
    where = _nonfinite_in(optimizer)
    if where is not None:
        raise BadCheckpoint(f"{OPTIMIZER}: {where} is not finite")
    return tensors, best, optimizer, state


def _check_digests(folder: Path) -> None:
    """Every file the manifest lists is there with its sha256. A folder with state.json and
    no manifest was written before manifests existed: its other checks still apply."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        if (folder / STATE).exists():
            return
        raise BadCheckpoint(f"incomplete: no {MANIFEST}")
    try:
        digests = json.loads(manifest.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise BadCheckpoint(f"{MANIFEST} is unreadable ({type(err).__name__})") from None
    for name in (*TENSOR_FILES, OPTIMIZER, STATE):
        if name not in digests:
            raise BadCheckpoint(f"{MANIFEST} does not list {name}")
    for name, digest in digests.items():
        file = folder / name
        if not file.is_file():
            raise BadCheckpoint(f"{name} is missing")
        if sha256_file(file) != digest:
            raise BadCheckpoint(f"{name} does not match its sha256 (changed after it was written)")


def _check_state(state: Any, total_steps: int | None) -> None:
    """The loop state is a step within the run with one finite loss per step."""
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool):
        raise BadCheckpoint(f"{STATE}: no integer step")
    if step < 0 or (total_steps is not None and step > total_steps):
        raise BadCheckpoint(f"{STATE}: step {step} lies outside the run's {total_steps} steps")
    losses = state.get("losses", [])
    if len(losses) != step:
        raise BadCheckpoint(f"{STATE}: {len(losses)} losses recorded for step {step}")
    for i, loss in enumerate(losses, 1):
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            raise BadCheckpoint(f"{STATE}: the loss of step {i} is {loss}")


def _check_tensors(
    file: str,
    group: Mapping[str, torch.Tensor],
    shapes: Mapping[str, tuple[int, ...]] | None,
    exact: bool,
) -> None:
    """Finite tensors, named and shaped as the model's (all of them when `exact`)."""
    if shapes is not None:
        unknown = sorted(set(group) - set(shapes))
        missing = sorted(set(shapes) - set(group)) if exact else []
        if unknown or missing:
            names = ", ".join([*(f"+{n}" for n in unknown), *(f"-{n}" for n in missing)][:3])
            raise BadCheckpoint(f"{file}: tensors do not match the model's ({names})")
    for name, t in group.items():
        if shapes is not None and tuple(t.shape) != tuple(shapes[name]):
            raise BadCheckpoint(
                f"{file}: {name} has shape {list(t.shape)}, the model's is {list(shapes[name])}"
            )
        if not _all_finite(t):
            raise BadCheckpoint(f"{file}: {name} holds NaN or infinite values")


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every element is finite. The sum is finite only when every element is, and
    costs a tenth of the elementwise test (no bool tensor); that test runs only to tell a
    non-finite element from a sum that overflowed."""
    if not t.is_floating_point():
        return True
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _nonfinite_in(obj: Any, where: str = "state") -> str | None:
    """The path of the first non-finite tensor or float in nested dicts/lists, or None."""
    if isinstance(obj, torch.Tensor):
        return None if _all_finite(obj) else where
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = _nonfinite_in(value, f"{where}.{key}")
        if found is not None:
            return found
    return None
