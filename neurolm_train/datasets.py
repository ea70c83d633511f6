"""A task's shards as a PyTorch map-style dataset and as a braindecode dataset.

- :class:`ShardWindows` serves ``(x, y, metadata)`` per window straight from the tar shards through the trainer's
  shard reader (``neurolm_train.shardio``: each shard's headers indexed once, windows read from a memory map),
  so random access costs no decompression and no copy of the corpus into memory. ``x`` is a float32 tensor
  ``(C, T)`` in µV at 200 Hz, ``y`` the int label (-1 unlabeled), ``metadata`` a dict of the window's row of
  ``windows.parquet``. Every window is checked against its ``window_hash``.
- :func:`to_braindecode` builds a ``braindecode.datasets.BaseConcatDataset`` of ``WindowsDataset`` objects, one
  per (subject, split), with ``description`` columns ``subject`` and ``split`` (so ``.split("split")`` gives
  train/val/test) and ``target`` = label; braindecode models and its ``EEGClassifier`` run on it unchanged. Its
  windows are in volts, as braindecode's own datasets built from MNE are.

Both return the windows and labels of ``windows.parquet``, in its row order (sorted by split, then key).

Example::

    from torch.utils.data import DataLoader
    from neurolm_train.datasets import ShardWindows, to_braindecode
    ds = ShardWindows("out/workload", "workload", split="train")
    x, y, meta = ds[0]                      # (19, 800) float32 µV, 0 or 1, {"key": ..., "subject": ...}
    bd = to_braindecode("out/workload", "workload").split("split")   # {"train": ..., "val": ..., "test": ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from neurolm_data.api import (
    WindowsError,
    _task_dir,
    check_window,
    load_windows,
    mne_channel_names,
    read_rows,
    select_channels,
    to_epochs,
)
from neurolm_data.channels import STANDARD_1020
from neurolm_train.shardio import load_npy, open_sample, shard_entries, tar_samples


class ShardWindows(Dataset):
    """Map-style dataset of a task's windows: ``ds[i] -> (x, y, metadata)``.

    Args:
        out: ingest output folder holding ``shards/TASK/``.
        task: task name. split: ``train``/``val``/``test``, a list of them, or None (all).
        channels: ``"common"`` or channel names (``neurolm_data.api.select_channels``).
        verify: check each window's content hash when it is read (default True; about 1 µs per kB).
        transform: optional callable applied to ``x`` (a float32 tensor ``(C, T)`` µV).

    Raises:
        FileNotFoundError: no shards for the task. WindowsError: a window missing from its shard; on access, a
        window whose bytes do not match ``window_hash``.
    """

    def __init__(
        self,
        out: str | Path,
        task: str,
        split: str | Sequence[str] | None = None,
        *,
        channels: str | Sequence[str] = "common",
        verify: bool = True,
        transform=None,
    ) -> None:
        self.root = _task_dir(out, task)
        self.task = task
        rows = read_rows(out, task, split)
        self.rows: list[dict[str, Any]] = list(rows.iter_rows(named=True))
        self.channel_indices = select_channels(rows, channels)
        self.channels = tuple(STANDARD_1020[c] for c in self.channel_indices)
        self.labels = np.asarray(
            [-1 if r["label"] is None else r["label"] for r in self.rows], dtype=np.int64
        )
        self.verify, self.transform = verify, transform
        self._where: dict[str, tuple[str, tuple]] = {}
        self._fallback: dict[str, np.ndarray] = {}
        for shard in dict.fromkeys(r["shard"] for r in self.rows):
            path = str(self.root / shard)
            entries = shard_entries(path)
            if entries is None:  # not a plain ustar archive: decode it once through webdataset's tarfile path
                for sample in tar_samples([path]):
                    self._fallback[sample["__key__"]] = np.array(load_npy(bytes(sample["eeg.npy"])))
            else:
                for key, members in entries:
                    self._where[key] = (path, members)
        missing = [
            r["key"] for r in self.rows if r["key"] not in self._where and r["key"] not in self._fallback
        ]
        if missing:
            raise WindowsError(
                f"{self.root}: {len(missing)} window(s) of windows.parquet are not in their shard "
                f"(first: {missing[0]}); rebuild with `neurolm-data shard {out} --task {task}`"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, dict[str, Any]]:
        row = self.rows[i]
        key = row["key"]
        if key in self._fallback:
            x = self._fallback[key]
        else:
            path, members = self._where[key]
            x = load_npy(open_sample(path, key, members)["eeg.npy"])  # (C, T) read-only view into the shard
        if self.verify:
            check_window(x, row, self.root / row["shard"])
        pos = {c: j for j, c in enumerate(row["channel_indices"])}
        x = torch.from_numpy(
            np.array(x[[pos[c] for c in self.channel_indices]])
        )  # (C', T) float32 µV, a copy
        if self.transform is not None:
            x = self.transform(x)
        meta = {k: v for k, v in row.items() if k != "channel_indices"}
        return x, int(self.labels[i]), meta

    @property
    def mne_channel_names(self) -> list[str]:
        """Channel names in MNE's spelling (``Fp1``), for braindecode models that take ``chs_info``."""
        return mne_channel_names(self.channels)


def to_braindecode(
    out: str | Path,
    task: str,
    split: str | Sequence[str] | None = None,
    *,
    channels: str | Sequence[str] = "common",
):
    """A ``braindecode.datasets.BaseConcatDataset`` of the task's windows (braindecode 0.8, see pyproject).

    One ``WindowsDataset`` per (subject, split), each wrapping an ``mne.EpochsArray``
    (``neurolm_data.api.to_epochs``: volts, ``standard_1020`` montage) whose metadata carries braindecode's
    columns ``i_window_in_trial`` (0), ``i_start_in_trial`` (0), ``i_stop_in_trial`` (T) and ``target`` (label),
    plus ours (``key``, ``subject``, ``split``, ...). ``description`` has ``subject``, ``split`` and ``task``.
    Items are ``(X float32 (C, T) in V, target, [i_window, i_start, i_stop])``, braindecode's shape.

    Raises:
        FileNotFoundError / WindowsError: as ``neurolm_data.api.load_windows``.
    """
    import pandas as pd
    from braindecode.datasets import BaseConcatDataset, WindowsDataset

    windows = load_windows(out, task, split, channels=channels)
    meta = windows.metadata.to_pandas()
    t = windows.x.shape[2]
    parts = []
    for (split_name, subject), idx in meta.groupby(["split", "subject"], sort=False).indices.items():
        sub = type(windows)(
            windows.x[idx],
            windows.y[idx],
            windows.metadata[idx.tolist()],
            windows.channels,
            windows.classes,
            windows.task,
            windows.sfreq,
        )
        epochs = to_epochs(sub)
        md = epochs.metadata.copy()
        md["i_window_in_trial"], md["i_start_in_trial"], md["i_stop_in_trial"] = 0, 0, t
        md["target"] = sub.y
        epochs.metadata = md
        parts.append(
            WindowsDataset(
                epochs, description=pd.Series({"subject": subject, "split": split_name, "task": task})
            )
        )
    return BaseConcatDataset(parts)
