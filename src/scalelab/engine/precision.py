"""Mixed precision: autocast for forward passes, a gradient scaler for fp16."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from scalelab.errors import ScalelabError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(dtype: str, device: torch.device):
    """A context-manager factory for forward passes in `dtype` (fp32: no autocast).

    Raises ScalelabError when the device cannot autocast to that dtype (checked once here,
    not at the first training step)."""
    if dtype == "fp32":
        return nullcontext
    want = DTYPES[dtype]
    try:
        with torch.autocast(device.type, dtype=want):
            torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ScalelabError(
            f"params.dtype {dtype} is not supported on {device.type}: {err}"
        ) from None
    return lambda: torch.autocast(device.type, dtype=want)


def grad_scaler(dtype: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (its 5-bit exponent underflows small gradients); a no-op
    scaler otherwise (bf16 has fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
