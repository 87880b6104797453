"""Where a run executes: thread count and device, from the spec's `runtime` section.

`missing_cuda_reason` answers "certainly no GPU here?" without importing torch (seconds),
so a spec asking for `device: cuda` on such a machine is refused when it is loaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scalelab.errors import ScalelabError

# Device files a CUDA (or ROCm, or WSL2) GPU shows up as; without any of them torch finds
# no device either.
_GPU_DEVICE_GLOBS = ("nvidia[0-9]*", "kfd", "dxg")


def missing_cuda_reason() -> str | None:
    """Why this machine certainly has no CUDA device, found without importing torch; None
    when it may have one (then torch decides when a run starts, see `prepare_device`)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if sys.platform == "darwin":
        return "macOS has no CUDA"
    if sys.platform.startswith("linux"):
        dev = Path("/dev")
        if not any(any(dev.glob(pattern)) for pattern in _GPU_DEVICE_GLOBS):
            return "no GPU device file in /dev"
    return None


def device_name(runtime) -> str:
    """`runtime.device` with "auto" resolved: "cuda" when a GPU is visible, else "cpu"."""
    import torch

    want = getattr(runtime, "device", "auto")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return want


def prepare_device(runtime):
    """Apply `runtime.threads` (torch intra-op threads) and resolve `runtime.device` to a
    `torch.device`.

    "auto" picks CUDA when a GPU is visible, else the CPU; asking for "cuda" on a machine
    without one is a user error (ScalelabError) rather than a silent fallback.
    """
    import torch  # here, so that validating a spec (missing_cuda_reason) stays fast

    if getattr(runtime, "threads", None):
        torch.set_num_threads(runtime.threads)
    want = device_name(runtime)
    if want == "cuda" and not torch.cuda.is_available():
        raise ScalelabError("runtime.device is 'cuda' but no CUDA device is available")
    return torch.device(want)


def release_freed_memory() -> None:
    """Hand the memory earlier runs of this process freed back to the system, so that a
    worker's next run starts (and its `peak_mem_mb` counts) from what is still in use.

    glibc keeps freed heap memory for reuse, all of it under the Makefile's malloc
    settings (no trimming, no mmap): without this, a small run after a large one in the
    same worker reported the large run's resident memory as its own peak (3.9 GB for a
    0.1M-parameter classifier after a 109M-parameter one). `malloc_trim(0)` returns the
    free pages (glibc only; elsewhere this only collects garbage).
    """
    import ctypes
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
