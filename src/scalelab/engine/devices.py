"""Where a run executes: thread count and device, from the spec's `runtime` section."""

from __future__ import annotations

import torch

from scalelab.errors import ScalelabError


def prepare_device(runtime) -> torch.device:
    """Apply `runtime.threads` (torch intra-op threads) and resolve `runtime.device`.

    "auto" picks CUDA when a GPU is visible, else the CPU; asking for "cuda" on a machine
    without one is a user error rather than a silent fallback.
    """
    if getattr(runtime, "threads", None):
        torch.set_num_threads(runtime.threads)
    want = getattr(runtime, "device", "auto")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ScalelabError("runtime.device is 'cuda' but no CUDA device is available")
    return torch.device(want)
