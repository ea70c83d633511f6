"""Checkpoints: atomic ``torch.save`` and the RNG states needed for bit-identical resume.

A checkpoint is a dict: ``model`` (state dict), ``optimizer``, ``scheduler``, ``loader`` (position),
``rng`` (python, numpy, torch CPU and CUDA states), ``config`` (the run config as a dict), ``config_hash``,
``model_config`` (the NeuroLM config dict), ``step``, ``stage`` and optional ``best`` (validation record).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict:
    """Load a checkpoint on the CPU, tensors memory-mapped (read on use). Raises FileNotFoundError when
    missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def rng_state() -> dict:
    """The python, numpy and torch (CPU and every CUDA device) RNG states."""
    out = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
