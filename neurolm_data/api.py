"""The Python data API: a task's shards as NumPy arrays with a metadata DataFrame, and as ``mne.EpochsArray``.

Read what ``neurolm-data shard`` wrote (docs/architecture.md, "OUT/shards/TASK/") in the shapes EEG tools use:

- :func:`get_data` returns ``X, y, metadata`` like MOABB's ``paradigm.get_data``: ``X`` float32
  ``(n_windows, n_channels, n_times)`` in µV at 200 Hz, ``y`` int64 labels, ``metadata`` a pandas DataFrame with
  one row per window (the columns of ``windows.parquet``).
- :func:`load_windows` returns the same as a :class:`Windows` object that also knows its channel names.
- :func:`to_epochs` turns it into an ``mne.EpochsArray`` (volts, channel names in MNE's spelling, the
  ``standard_1020`` montage, one event per window coded by its label, the metadata attached), so MNE's tools
  (PSD, topomaps, decoding) run on the windows unchanged.

The PyTorch and braindecode views live in the trainer layer (``neurolm_train.datasets``). Every view returns the
windows of ``windows.parquet`` in its row order (sorted by split, then key), and each window read is checked
against its ``window_hash`` (XXH3-128 of the float32 bytes), so a changed shard is an error, not a silent
difference.

Example::

    from neurolm_data.api import get_data, load_windows, to_epochs
    X, y, meta = get_data("out/workload", "workload", split="train")   # (1508, 19, 800) µV, (1508,), DataFrame
    epochs = to_epochs(load_windows("out/workload", "workload", split="test"))
    epochs["task"].compute_psd(fmax=40).plot()
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from neurolm_data.channels import STANDARD_1020
from neurolm_data.store import content_hash

if TYPE_CHECKING:  # pragma: no cover
    import mne
    import pandas as pd

#: Sampling frequency of every stored window in Hz (ingest resamples to 200 Hz: docs/neurolm-reference.md §1.1).
SFREQ: float = 200.0


class WindowsError(ValueError):
    """The shards and ``windows.parquet`` disagree, or the request cannot be met (the message names the file)."""


@dataclass(frozen=True)
class Windows:
    """Windows of one task (optionally one split), in ``windows.parquet`` row order.

    Attributes:
        x: float32 ``(n_windows, n_channels, n_times)`` in µV at :data:`SFREQ` Hz.
        y: int64 ``(n_windows,)`` class labels (``classes[y]``); -1 for unlabeled (``pretrain``) windows.
        metadata: one row per window: ``key``, ``shard``, ``split``, ``subject``, ``recording``, ``start_s``,
            ``label``, ``window_hash`` (polars).
        channels: ``standard_1020`` names of the rows of ``x`` (upper case, e.g. ``FP1``).
        classes: the task's class names (empty for unlabeled tasks).
        task: the task name.
    """

    x: np.ndarray
    y: np.ndarray
    metadata: pl.DataFrame
    channels: tuple[str, ...]
    classes: tuple[str, ...]
    task: str
    sfreq: float = SFREQ


def _task_dir(out: str | Path, task: str) -> Path:
    root = Path(out) / "shards" / task
    if not (root / "windows.parquet").is_file():
        raise FileNotFoundError(
            f"{root / 'windows.parquet'} not found: build it with `neurolm-data shard {out} --task {task}`"
        )
    return root


def _classes(task: str) -> tuple[str, ...]:
    try:
        from neurolm_data.tasks.base import get_task

        return tuple(get_task(task).classes)
    except KeyError:
        return ()


def read_rows(out: str | Path, task: str, split: str | Sequence[str] | None = None) -> pl.DataFrame:
    """Rows of ``OUT/shards/TASK/windows.parquet`` (all, or those of ``split``), in file order.

    Raises:
        FileNotFoundError: no ``windows.parquet`` (the message gives the ``shard`` command).
        WindowsError: the split has no window.
    """
    rows = pl.read_parquet(_task_dir(out, task) / "windows.parquet")
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        rows = rows.filter(pl.col("split").is_in(wanted))
        if rows.height == 0:
            raise WindowsError(f"{_task_dir(out, task) / 'windows.parquet'}: no window in split(s) {wanted}")
    return rows


def select_channels(rows: pl.DataFrame, channels: str | Sequence[str] = "common") -> tuple[int, ...]:
    """``standard_1020`` indices to return for ``rows``.

    ``"common"``: the channels present in every window, in the first window's order (a labelled task's windows
    all have the same channels, so this is simply their order). A list of names: exactly those (upper case or
    MNE spelling), each of which must be in every window.

    Raises:
        WindowsError: no channel common to all windows, or a requested channel missing from a window.
    """
    sets = [tuple(v) for v in rows["channel_indices"].unique(maintain_order=True).to_list()]
    common = set.intersection(*(set(s) for s in sets))
    if isinstance(channels, str) and channels == "common":
        picked = tuple(c for c in sets[0] if c in common)
        if not picked:
            raise WindowsError("no channel is present in every window; pass channels=[...] explicitly")
        return picked
    index = {n.upper(): i for i, n in enumerate(STANDARD_1020)}
    picked = []
    for name in channels:
        i = index.get(name.upper())
        if i is None or i not in common:
            raise WindowsError(f"channel {name!r} is not present in every window")
        picked.append(i)
    return tuple(picked)


def iter_shard(path: Path) -> dict[str, tuple[np.ndarray, bytes]]:
    """``key -> (eeg, meta.json bytes)`` of one tar shard (read with ``tarfile``; arrays ``allow_pickle=False``)."""
    found: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, suffix = member.name.partition(".")
            f = tar.extractfile(member)
            found.setdefault(key, {})[suffix] = f.read() if f is not None else b""
    out = {}
    for key, parts in found.items():
        if "eeg.npy" not in parts:
            raise WindowsError(f"{path}: sample {key!r} has no eeg.npy")
        out[key] = (np.load(io.BytesIO(parts["eeg.npy"]), allow_pickle=False), parts.get("meta.json", b""))
    return out


def check_window(x: np.ndarray, row: dict, where: Path) -> None:
    """Raise :class:`WindowsError` unless ``x`` is float32 ``(C, T)`` with the row's channel count and hash."""
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] != row["n_channels"]:
        raise WindowsError(
            f"{where}: {row['key']} is {x.dtype} {x.shape}, expected float32 "
            f"({row['n_channels']}, T) as listed in windows.parquet"
        )
    if content_hash(np.ascontiguousarray(x)) != row["window_hash"]:
        raise WindowsError(
            f"{where}: {row['key']} does not match its window_hash in windows.parquet; the shards "
            "changed after they were written: rebuild them with `neurolm-data shard`"
        )


def load_windows(
    out: str | Path,
    task: str,
    split: str | Sequence[str] | None = None,
    *,
    channels: str | Sequence[str] = "common",
) -> Windows:
    """Read a task's windows from its tar shards into memory, checked against ``windows.parquet``.

    Args:
        out: the ingest output folder holding ``shards/TASK/``.
        task: task name (``workload``, ``tuab``, ``pretrain``, ...).
        split: ``train``, ``val``, ``test``, a list of them, or None for every split.
        channels: ``"common"`` or a list of channel names (see :func:`select_channels`).

    Returns:
        :class:`Windows` with ``x`` float32 ``(N, C, T)`` µV; windows in ``windows.parquet`` row order.

    Raises:
        FileNotFoundError: no shards for the task. WindowsError: a window missing from its shard, a changed
        window (hash mismatch), windows of different lengths, channels not shared.
    """
    root = _task_dir(out, task)
    rows = read_rows(out, task, split)
    picked = select_channels(rows, channels)
    arrays: dict[str, np.ndarray] = {}
    wanted = {r["key"]: r for r in rows.iter_rows(named=True)}
    for shard in rows["shard"].unique(maintain_order=True).to_list():
        for key, (x, _meta) in iter_shard(root / shard).items():
            row = wanted.get(key)
            if row is None:
                continue
            check_window(x, row, root / shard)
            pos = {c: i for i, c in enumerate(row["channel_indices"])}
            arrays[key] = x[[pos[c] for c in picked]]
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise WindowsError(
            f"{root}: {len(missing)} window(s) of windows.parquet are not in their shard "
            f"(first: {missing[0]}); rebuild with `neurolm-data shard {out} --task {task}`"
        )
    lengths = {a.shape[1] for a in arrays.values()}
    if len(lengths) != 1:
        raise WindowsError(
            f"{root}: windows of different lengths {sorted(lengths)}; load one split or task at a time"
        )
    keys = rows["key"].to_list()
    x = np.stack([arrays[k] for k in keys])  # (N, C, T) float32 µV
    y = rows["label"].fill_null(-1).to_numpy().astype(np.int64)  # (N,)
    meta = rows.select(
        [
            c
            for c in ("key", "shard", "split", "subject", "recording", "start_s", "label", "window_hash")
            if c in rows.columns
        ]
    )
    return Windows(x, y, meta, tuple(STANDARD_1020[c] for c in picked), _classes(task), task)


def get_data(
    out: str | Path,
    task: str,
    split: str | Sequence[str] | None = None,
    *,
    channels: str | Sequence[str] = "common",
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """MOABB-style ``X, y, metadata`` of a task's windows (see :func:`load_windows` for the arguments).

    Returns:
        ``X`` float32 ``(N, C, T)`` µV at 200 Hz; ``y`` int64 ``(N,)`` (-1 = unlabeled); ``metadata`` a pandas
        DataFrame with one row per window (``key``, ``split``, ``subject``, ``recording``, ``start_s``,
        ``label``, ...), in the same order.
    """
    w = load_windows(out, task, split, channels=channels)
    return w.x, w.y, w.metadata.to_pandas()


def standard_montage(name: str = "standard_1020"):
    """MNE's built-in montage ``name``. MNE >= 1.13 renamed ``standard_1020`` to ``colin27_1020`` (same
    positions, the Colin27 template head) and deprecates the old name; the new name is used where it exists."""
    import mne

    if name == "standard_1020" and "colin27_1020" in mne.channels.get_builtin_montages():
        name = "colin27_1020"
    return mne.channels.make_standard_montage(name)


def mne_channel_names(channels: Sequence[str]) -> list[str]:
    """``standard_1020`` names in MNE's spelling where MNE's ``standard_1020`` montage has them (``FP1`` ->
    ``Fp1``, ``FZ`` -> ``Fz``); other names (bipolar pairs such as ``FP1-F7``) are kept as they are."""
    montage = standard_montage()
    spelled = {n.upper(): n for n in montage.ch_names}
    return [spelled.get(c.upper(), c) for c in channels]


def to_epochs(windows: Windows, *, montage: str | None = "standard_1020") -> mne.EpochsArray:
    """The windows as an ``mne.EpochsArray``.

    Data in volts (µV × 1e-6, MNE's unit), ``sfreq`` 200 Hz, channel type ``eeg``, names from
    :func:`mne_channel_names`. ``montage`` (default MNE's ``standard_1020``) gives positions to the channels it
    knows; channels it lacks (bipolar pairs) keep no position. Events: one per window, at sample
    ``i * n_times`` (windows of different recordings have no common time line), coded by label with
    ``event_id = {class name: label}`` (unlabeled tasks: ``{"window": 1}``). ``metadata`` is attached as a
    pandas DataFrame, so ``epochs["subject == 'Subject31'"]`` works.

    Raises:
        WindowsError: a window with no label in a task that has classes.
    """
    import mne

    n, _, t = windows.x.shape
    names = mne_channel_names(windows.channels)
    info = mne.create_info(names, windows.sfreq, ch_types="eeg")
    if windows.classes and (windows.y >= 0).all():
        codes = windows.y
        event_id = {windows.classes[k]: int(k) for k in sorted(set(codes.tolist()))}
    elif (windows.y < 0).all():
        codes = np.ones(n, dtype=np.int64)
        event_id = {"window": 1}
    else:
        raise WindowsError(f"task {windows.task}: some windows are labelled and some are not")
    events = np.column_stack([np.arange(n) * t, np.zeros(n, dtype=np.int64), codes]).astype(
        np.int64
    )  # (N, 3)
    epochs = mne.EpochsArray(
        windows.x.astype(np.float64) * 1e-6,
        info,
        events=events,
        event_id=event_id,
        tmin=0.0,
        metadata=windows.metadata.to_pandas(),
        verbose="error",
    )
    if montage:
        epochs.set_montage(standard_montage(montage), on_missing="ignore")
    return epochs
