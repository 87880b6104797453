"""Data-parallel training under torchrun / accelerate launch (DistributedDataParallel).

The engine runs unchanged in each process: when the launcher has set the usual environment
(RANK, WORLD_SIZE, MASTER_ADDR, ...), `init()` joins the process group (gloo on CPU, NCCL
on GPU), each rank trains on its equal share of every global batch and DDP averages the
gradients. Only rank 0 writes checkpoints, products and results; the others wait at a
barrier. Without a launcher every function here is a no-op (world size 1).
"""

from __future__ import annotations

import os

import torch


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) with WORLD_SIZE>1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_type: str) -> None:
    """Join the process group once (gloo for CPU, nccl for CUDA)."""
    import torch.distributed as dist

    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module itself in one process; a DistributedDataParallel wrapper under a launcher."""
    if rank_world()[1] == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index or 0] if device.type == "cuda" else None
    # Phases change which parameters train: let DDP tolerate parameters without gradients.
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def barrier() -> None:
    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def mean(value: float) -> float:
    """The mean of a float over all ranks (a rank's loss -> the global batch's loss)."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
