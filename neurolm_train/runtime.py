"""Where a run executes: the process group under torchrun and the autocast context (one home for both).

Used by the train loop, evaluation and every model family's stages, so evaluation never imports the train loop.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from .config import RunConfig


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world, device). Under torchrun (``RANK`` set) initialises the process group: nccl on CUDA,
    gloo on CPU; one GPU per local rank."""
    cuda = torch.cuda.is_available()
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world, local = 0, 1, 0
    if cuda:
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def autocast(cfg: RunConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (``auto`` or ``bf16``) or when ``bf16`` is asked on CPU; else no autocast."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
