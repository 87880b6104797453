"""Fingerprints: digests that change whenever a model's answers may change.

The request cache keys on them, so they must be exact (content, not names or timestamps)
and cheap to ask for again (memoised per process).
"""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path
from typing import Any

from scalelab.errors import ScalelabError

_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256


def folder_fingerprint(folder: str | Path, only: str | None = None) -> str:
    """The digest ("sha256:<hex>") of the files that decide a model's answers: every top-level
    file of a `save_pretrained` folder (weights, config, tokenizer), or just `only` (GGUF).

    Files are hashed streaming, and each digest is remembered by (path, size, mtime), in
    the process and under `$SCALELAB_HOME/digests/`, so asking again for an unchanged 135M
    model costs a few stat calls.
    """
    from scalelab.data.sources import sha256_file_cached

    folder = Path(folder)
    if only:
        files = [folder / only]
    else:
        hidden = lambda p: p.name.startswith(".") or p.suffix == ".md"  # noqa: E731
        files = sorted(p for p in folder.iterdir() if p.is_file() and not hidden(p))
    if not files or not all(f.is_file() for f in files):
        raise ScalelabError(f"model folder {str(folder)!r} has no model files to fingerprint")
    total = hashlib.sha256()
    for f in files:
        st = f.stat()
        memo = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if memo not in _FILE_DIGESTS:
            _FILE_DIGESTS[memo] = sha256_file_cached(f)
        total.update(f"{f.name}\t{_FILE_DIGESTS[memo]}\n".encode())
    return "sha256:" + total.hexdigest()


def model_files_identity(ref: Any) -> str | None:
    """What a run id records of a local model folder (`folder_fingerprint` of the folder,
    or of the kept revision it names); None for a folder with no model files yet (the run
    that loads it says what is missing)."""
    from scalelab.models.registry import model_path

    try:
        return folder_fingerprint(model_path(ref)[0])
    except ScalelabError:
        return None


_MODULE_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_digest(module: Any) -> str:
    """The digest ("sha256:<hex>") of an in-memory model's current weights and buffers.

    Tensor version counters move on every in-place update (optimizer steps), so asking
    again for an unchanged model costs no hashing.
    """
    import torch

    params = list(module.state_dict().items())
    version = tuple((n, id(t), t._version) for n, t in params)
    known = _MODULE_DIGESTS.get(module)
    if known is None or known[0] != version:
        h = hashlib.sha256()
        for name, t in params:
            data = t.detach().to("cpu").reshape(-1).view(torch.uint8).numpy()
            h.update(f"{name}\t{t.dtype}\t{tuple(t.shape)}\n".encode() + data.tobytes())
        known = _MODULE_DIGESTS[module] = (version, "sha256:" + h.hexdigest())
    return known[1]
