"""Teacher outputs computed once: a teacher's softened distribution for each input batch,
kept on disk and reused by every student, seed and sweep value that feeds it that batch.

Keyed by content: the teacher's weights (`folder_fingerprint` of its model folder), the
temperature, top-k and autocast dtype (a directory per combination), and the exact input
ids of the batch (a file per batch, named by their sha256). A student sweeping lr or alpha
at one seed draws the same windows at every step, so its second and later runs read every
teacher output from disk; a student at another seed draws other windows and computes its
own. Files are safetensors written atomically (`io.atomic_write`): racing writers of one
batch each write a whole file; a file that fails to load or whose stored input ids differ
is recomputed and replaced.

Size per batch: dense targets are [batch, seq, V] fp32 (2.1 MB at 16 x 128 with the byte
vocabulary), top-k ones [batch, seq, k] values plus int32 ids. Dense targets are not cached
above `MAX_DENSE_BYTES` per batch (set `params.top_k`); the cache lives under
`$SCALELAB_HOME/teacher_outputs/` and may be removed at any time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from scalelab.methods.losses import TeacherTarget, teacher_target

FORMAT = "scalelab-teacher-outputs-v1"
MAX_DENSE_BYTES = 64 << 20


class TeacherOutputs:
    """`outputs(x) -> TeacherTarget` for one teacher; `computed` / `loaded` count batches.

    module: the teacher (eval mode, on the device); fingerprint: its weights' digest;
    root: the cache folder, or None for a live teacher (nothing stored); autocast: a
    context-manager factory for the forward pass, `dtype` its name (part of the key)."""

    def __init__(
        self,
        module: Any,
        fingerprint: str,
        temperature: float,
        top_k: int | None,
        root: Path | None,
        autocast: Any,
        dtype: str,
    ) -> None:
        self.module, self.temperature, self.top_k = module, temperature, top_k
        self.autocast = autocast
        key = f"{FORMAT}|{fingerprint}|T={temperature!r}|k={top_k}|{dtype}"
        self.dir = root / hashlib.sha256(key.encode()).hexdigest()[:24] if root else None
        self.computed = self.loaded = 0

    def __call__(self, x: torch.Tensor) -> TeacherTarget:
        """The teacher's target for input ids x [batch, seq] (int64, on the device)."""
        ids = x.detach().to("cpu").contiguous()
        path = self._path(ids) if self.dir is not None else None
        if path is not None and path.exists():
            target = self._load(path, ids, x.device)
            if target is not None:
                self.loaded += 1
                return target
        with torch.no_grad(), self.autocast():
            logits = self.module(input_ids=x, use_cache=False).logits
        target = teacher_target(logits, self.temperature, self.top_k)
        self.computed += 1
        if path is not None and self._fits(target):
            self._save(path, ids, target)
        return target

    def _path(self, ids: torch.Tensor) -> Path:
        h = hashlib.sha256(f"{tuple(ids.shape)}".encode() + ids.numpy().tobytes())
        return self.dir / f"{h.hexdigest()[:32]}.safetensors"

    def _fits(self, target: TeacherTarget) -> bool:
        return target.index is not None or target.logp.numel() * 4 <= MAX_DENSE_BYTES

    def _save(self, path: Path, ids: torch.Tensor, target: TeacherTarget) -> None:
        from safetensors.torch import save_file

        from scalelab.io import atomic_write

        tensors = {"input_ids": ids, "logp": target.logp.detach().to("cpu").contiguous()}
        if target.index is not None:
            tensors["index"] = target.index.to("cpu", torch.int32).contiguous()
            tensors["log_rest"] = target.log_rest.to("cpu").contiguous()
        atomic_write(path, lambda p: save_file(tensors, str(p)))

    def _load(self, path: Path, ids: torch.Tensor, device) -> TeacherTarget | None:
        """The stored target, or None (and the file removed) when it cannot be trusted."""
        from safetensors.torch import load_file

        try:
            t = load_file(str(path))
            if not torch.equal(t["input_ids"], ids):
                raise ValueError("stored for other input ids")
            logp, index, rest = t["logp"], t.get("index"), t.get("log_rest")
            if logp.shape[:-1] != ids.shape or (index is not None and (
                    index.shape != logp.shape or rest is None or rest.shape != ids.shape)):  # fmt: skip
                raise ValueError("shapes do not match the batch")
            if index is not None:
                index, rest = index.to(device, torch.int64), rest.to(device)
            return TeacherTarget(logp.to(device), index, rest)
        except Exception:  # noqa: BLE001 - any damage means recompute
            path.unlink(missing_ok=True)
            return None
