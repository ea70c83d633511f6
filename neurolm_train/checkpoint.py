"""Checkpoints: atomic ``torch.save``, safe loading, and the RNG states needed for bit-identical resume.

A checkpoint is a dict: ``model`` (state dict), ``optimizer``, ``scheduler``, ``loader`` (position),
``rng`` (python, numpy, torch CPU and CUDA states), ``config`` (the run config as a dict), ``config_hash``,
``model_config`` (the NeuroLM config dict), ``step``, ``stage`` and optional ``best`` (validation record).

Everything in it is a tensor or a plain container (dict, list, tuple, str, int, float, bool, None): numpy
values are turned into tensors or Python numbers before saving (``plain``), so that every file is read with
``torch.load(weights_only=True)``. A file that needs any other object to unpickle is refused before a single
object is built (PyTorch's weights-only unpickler): a checkpoint handed to ``evaluate``, ``--init``,
``--resume`` or ``--checkpoint`` can never run code (https://pytorch.org/docs/stable/notes/serialization.html).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """A file is not a loadable checkpoint; the one-line message names the file, the problem and what was
    expected."""


def plain(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers, recursively through dicts,
    lists and tuples (what ``torch.load(weights_only=True)`` accepts)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    return obj


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` of ``plain(obj)`` to a temporary file in the same folder, fsync, then rename over
    ``path``. The file gets the process umask's mode, as ``open()`` gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(plain(obj), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _refusal(err: Exception) -> str:
    """The object a weights-only load refused, from PyTorch's message (``GLOBAL module.name``), or the first
    line of the error."""
    text = str(err)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return f"it needs the Python object {m.group(1)} to unpickle"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(err).__name__)
    return f"it holds more than tensors and plain containers ({line[:160]})"


def safe_load(path: str | os.PathLike, what: str = "a checkpoint written by torch.save") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True, mmap=True)`` with one-line errors.

    Args:
        path: the file. what: what the caller expected (named in errors).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a PyTorch zip archive (e.g. a text file, a truncated download), or
            it holds objects other than tensors and plain containers (refused without building them: a
            crafted file cannot run code here).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file (expected {what})")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (expected {what}, a zip archive; this file is "
            f"{path.stat().st_size} bytes of something else)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: {_refusal(err)}; only tensors and plain containers are "
            f"read (weights_only), so a file from an untrusted source cannot run code "
            f"(expected {what})"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({first[:200]}); expected {what} "
            "(a truncated or corrupt file?)"
        ) from None


def load(path: str | os.PathLike) -> dict:
    """Load a checkpoint on the CPU, tensors memory-mapped (read on use), weights only.

    Raises:
        FileNotFoundError: missing file. CheckpointError: not a checkpoint, or one that would need
            arbitrary objects to unpickle (see ``safe_load``).
    """
    ck = safe_load(path, "a neurolm checkpoint (ckpt.pt / best.pt) or an official NeuroLM file")
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: holds a {type(ck).__name__}, not a checkpoint dict")
    return ck


def rng_state() -> dict:
    """The python, numpy and torch (CPU and every CUDA device) RNG states, as plain values and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    out = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state` (also accepts the numpy state as ``np.random.get_state()``'s tuple)."""
    random.setstate(state["python"])
    ns = state["numpy"]
    if isinstance(ns, dict):
        keys = ns["keys"].numpy() if isinstance(ns["keys"], torch.Tensor) else np.asarray(ns["keys"])
        ns = (ns["kind"], keys.astype(np.uint32), ns["pos"], ns["has_gauss"], ns["cached_gaussian"])
    np.random.set_state(ns)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
