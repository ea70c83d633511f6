"""Read a task's labelled windows straight from its WebDataset shards, checked against ``windows.parquet``.

Contract (docs/architecture.md, "OUT/shards/TASK/"): ``OUT/shards/TASK/SPLIT/*.tar`` samples carry
``eeg.npy`` = float32 ``(n_channels, n_seconds * 200)`` in µV and ``meta.json``; ``windows.parquet`` has one
row per window (``key``, ``shard``, ``split``, ``subject``, ``recording``, ``label``, ``channel_indices``,
``window_hash``); ``shards.json`` carries the task config and the manifest hashes it was built from.

Every window read is verified: its content hash (``neurolm_data.store.content_hash``) must equal ``window_hash`` and every selected key must be found,
otherwise :class:`ShardIntegrityError` says what is wrong and how to rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import webdataset as wds

from neurolm_data.store import content_hash
from neurolm_train.leaderboard.config import stable_hash

SPLITS = ("train", "val", "test")
#: Columns of windows.parquet that define the task's content; hashed into the manifest hash.
MANIFEST_COLUMNS = ("key", "split", "subject", "recording", "label", "window_hash")


class ShardIntegrityError(RuntimeError):
    """Shards and ``windows.parquet`` disagree (missing window, changed bytes, inconsistent shapes)."""


@dataclass(frozen=True)
class TaskManifest:
    """One task's window table and provenance.

    ``windows``: the rows of ``windows.parquet`` (labelled windows only). ``manifest_hash``: sha256 of the
    :data:`MANIFEST_COLUMNS` of every row in key order, so any change of windows, labels, subjects or
    splits changes it (independent of Parquet writer metadata). ``n_classes``: K, see
    :func:`load_manifest`. ``provenance``: what ``shards.json`` and ``splits.parquet`` say about how the
    windows were built and split (stored with every record).
    """

    task: str
    root: Path
    windows: pl.DataFrame
    manifest_hash: str
    n_classes: int
    provenance: dict[str, Any]
    n_folds: int = 0
    fold: int | None = None

    @property
    def folds(self) -> list[int]:
        """Cross-validation folds with at least one test window (``kfold`` protocols), else ``[]``."""
        if not self.n_folds:
            return []
        return sorted(int(f) for f in self.windows["fold"].unique().to_list())

    def for_fold(self, fold: int) -> TaskManifest:
        """The manifest of one CV fold: ``split`` = train/val/test of that fold
        (``neurolm_data.split.with_fold_splits``); ``manifest_hash`` stays the whole task's (it covers every
        subject's fold). Raises ``ValueError`` for a task without folds, ``ShardIntegrityError`` when the fold
        lacks train or val windows."""
        from neurolm_data.split import with_fold_splits

        if not self.n_folds:
            raise ValueError(f"task {self.task}: windows.parquet has no folds (not a kfold protocol)")
        windows = with_fold_splits(self.windows, fold, self.n_folds)
        missing = [s for s in SPLITS if windows.filter(pl.col("split") == s).height == 0]
        if missing:
            raise ShardIntegrityError(f"task {self.task} fold {fold}: no windows in split(s) {missing}")
        prov = dict(
            self.provenance,
            fold=fold,
            n_folds=self.n_folds,
            subjects={
                s: sorted(windows.filter(pl.col("split") == s)["subject"].unique().to_list()) for s in SPLITS
            },
            n_windows={s: windows.filter(pl.col("split") == s).height for s in SPLITS},
        )
        return TaskManifest(
            self.task, self.root, windows, self.manifest_hash, self.n_classes, prov, self.n_folds, fold
        )


@dataclass(frozen=True)
class WindowSplit:
    """Windows of one split, in key order.

    ``x``: float32 ``(N, C, T)`` µV, rows in ``channel_indices`` order; ``y``: int64 ``(N,)``;
    ``subjects``, ``keys``: str ``(N,)``; ``channel_indices``: the ``standard_1020`` index of each row of
    ``x`` (the channels common to every window of the task).
    """

    split: str
    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray
    keys: np.ndarray
    channel_indices: tuple[int, ...]


def available_tasks(out_dir: Path) -> list[str]:
    """Tasks under ``OUT/shards`` that have a ``windows.parquet`` with at least one labelled window."""
    root = Path(out_dir) / "shards"
    tasks = []
    for path in sorted(root.glob("*/windows.parquet")):
        labels = pl.read_parquet(path, columns=["label"])["label"]
        if labels.drop_nulls().len() > 0:
            tasks.append(path.parent.name)
    return tasks


def manifest_hash(windows: pl.DataFrame) -> str:
    """sha256 of the :data:`MANIFEST_COLUMNS` (and ``fold``, under a ``kfold`` protocol) of ``windows`` sorted by
    key (canonical JSON rows)."""
    cols = MANIFEST_COLUMNS + (("fold",) if "fold" in windows.columns else ())
    table = windows.select(cols).sort("key")
    return stable_hash([list(table[c].to_list()) for c in cols])


def _n_folds(out_dir: Path, task: str, info: dict[str, Any] | None) -> int:
    """``n_folds`` of the ``kfold`` protocol the task's shards were split by (``OUT/splits.parquet`` metadata,
    checked against the protocol hash in ``shards.json``). Raises ``ShardIntegrityError`` when they disagree."""
    from neurolm_data.split import read_splits

    _, meta = read_splits(out_dir)
    want = ((info or {}).get("inputs") or {}).get("protocol", {}).get("hash")
    if want is not None and meta["protocol_hash"] != want:
        raise ShardIntegrityError(
            f"{out_dir}/splits.parquet (protocol {meta['protocol']['name']}) is not the split the {task} shards "
            f"were built from; re-run `neurolm-data shard {out_dir} --task {task} --protocol NAME`"
        )
    n = int(meta["protocol"].get("n_folds") or 0)
    if n < 1:
        raise ShardIntegrityError(
            f"{out_dir}/splits.parquet: windows carry folds but the protocol has no n_folds"
        )
    return n


def _task_classes(task: str, shards_info: dict[str, Any] | None) -> tuple[str, ...] | None:
    """Class names of ``task``: from ``shards.json`` (``config.task.classes``, written by the shard step),
    else from the task registry ``neurolm_data.tasks``; ``None`` when neither knows the task."""
    if shards_info is not None:
        classes = ((shards_info.get("config") or {}).get("task") or {}).get("classes")
        if classes:
            return tuple(classes)
    try:
        from neurolm_data.tasks import get_task
    except ImportError:
        return None
    try:
        return tuple(get_task(task).classes) or None
    except (KeyError, ValueError):
        return None


def load_manifest(out_dir: Path, task: str) -> TaskManifest:
    """Load ``OUT/shards/TASK/windows.parquet`` (+ ``shards.json``, ``OUT/splits.parquet`` if present).

    ``n_classes`` is the number of task classes declared in ``shards.json`` (or the task registry), else
    ``max(label) + 1`` over all splits (a class absent from every split would then be missed).
    Raises ``FileNotFoundError`` (with the command that builds the shards) or ``ShardIntegrityError``
    when a labelled split is missing.
    """
    root = Path(out_dir) / "shards" / task
    path = root / "windows.parquet"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: build it with `neurolm-data shard {out_dir} --task {task}`"
        )
    windows = pl.read_parquet(path).filter(pl.col("label").is_not_null()).sort("key")
    cv = "fold" in windows.columns
    missing = [] if cv else [s for s in SPLITS if windows.filter(pl.col("split") == s).height == 0]
    if missing:
        raise ShardIntegrityError(f"{path}: no labelled windows in split(s) {missing}")
    provenance: dict[str, Any] = {"windows_parquet": str(path)}
    shards_json = root / "shards.json"
    info = None
    if shards_json.is_file():
        info = json.loads(shards_json.read_text())
        provenance["shards_json"] = {k: v for k, v in info.items() if k not in ("shards", "skipped")}
        provenance["shards_json"]["n_skipped_recordings"] = len(info.get("skipped", []))
        provenance["shards_json_sha256"] = hashlib.sha256(shards_json.read_bytes()).hexdigest()
    k_data = int(windows["label"].max()) + 1
    classes = _task_classes(task, info)
    if classes is not None and len(classes) < k_data:
        raise ShardIntegrityError(f"{path}: label {k_data - 1} outside the task's {len(classes)} classes")
    provenance["classes"] = list(classes) if classes else None
    splits_path = Path(out_dir) / "splits.parquet"
    if splits_path.is_file():
        splits = pl.read_parquet(splits_path)
        subjects = windows["subject"].unique().to_list()
        rows = splits.filter(pl.col("subject").is_in(subjects))
        cols = [c for c in ("source", "protocol", "protocol_version", "rule", "salt") if c in rows.columns]
        provenance["split_protocol"] = rows.select(cols).unique().sort(cols).to_dicts()
    provenance["subjects"] = {
        s: sorted(windows.filter(pl.col("split") == s)["subject"].unique().to_list()) for s in SPLITS
    }
    provenance["n_windows"] = {s: windows.filter(pl.col("split") == s).height for s in SPLITS}
    n_classes = len(classes) if classes else k_data
    n_folds = _n_folds(Path(out_dir), task, info) if cv else 0
    return TaskManifest(task, root, windows, manifest_hash(windows), n_classes, provenance, n_folds)


def select_keys(manifest: TaskManifest, split: str, max_windows: int | None) -> list[str]:
    """Keys of ``split`` to use, in key order: all, or ~``max_windows`` spread over (subject, label) groups.

    Each group keeps ``ceil(n_group * max_windows / n_split)`` evenly spaced windows (at least one), so
    every subject and class of the split stays represented. Deterministic (no RNG).
    """
    rows = manifest.windows.filter(pl.col("split") == split)
    if max_windows is None or rows.height <= max_windows:
        return rows["key"].to_list()
    frac = max_windows / rows.height
    keep: list[str] = []
    for _, group in rows.group_by(["subject", "label"], maintain_order=True):
        keys = group["key"].sort().to_list()
        n = max(1, math.ceil(len(keys) * frac))
        idx = np.linspace(0, len(keys) - 1, n).round().astype(int)
        keep.extend(keys[i] for i in sorted(set(idx.tolist())))
    return sorted(keep)


def common_channels(manifest: TaskManifest) -> tuple[int, ...]:
    """``standard_1020`` indices present in every window of the task, ascending.

    Raises ``ShardIntegrityError`` when no channel is shared by all windows.
    """
    sets = {tuple(v) for v in manifest.windows["channel_indices"].to_list()}
    common = set.intersection(*(set(s) for s in sets))
    if not common:
        raise ShardIntegrityError(f"task {manifest.task}: no channel is present in every window")
    return tuple(sorted(common))


def read_split(
    manifest: TaskManifest, split: str, keys: list[str] | None = None, max_bytes: int = 8 << 30
) -> WindowSplit:
    """Read ``keys`` (default: all) of ``split`` from the tar shards, verifying each window's content hash.

    Rows of every window are reordered to :func:`common_channels`. ``max_bytes`` bounds the float32
    array held in memory (default 8 GiB); above it a ``MemoryError`` names the size and suggests
    ``max_windows_per_split``. Raises ``ShardIntegrityError`` on a hash mismatch, a missing key or windows
    of different lengths.
    """
    rows = manifest.windows.filter(pl.col("split") == split)
    if keys is not None:
        rows = rows.filter(pl.col("key").is_in(keys))
    wanted = {r["key"]: r for r in rows.iter_rows(named=True)}
    channels = common_channels(manifest)
    first = rows.row(0, named=True) if rows.height else None
    if first is None:
        raise ShardIntegrityError(f"task {manifest.task}: no windows selected in split {split!r}")
    urls = sorted({str(manifest.root / s) for s in rows["shard"].to_list()})
    found: dict[str, np.ndarray] = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        key = sample["__key__"]
        row = wanted.get(key)
        if row is None:
            continue
        raw = np.load(io.BytesIO(sample["eeg.npy"]), allow_pickle=False)
        if raw.dtype != np.float32 or raw.ndim != 2:
            raise ShardIntegrityError(f"{key}: eeg.npy is {raw.dtype} {raw.shape}, expected float32 (C, T)")
        if content_hash(np.ascontiguousarray(raw)) != row["window_hash"]:
            raise ShardIntegrityError(
                f"{key}: eeg.npy bytes do not match window_hash in windows.parquet; the shards changed "
                f"after the manifest was written. Rebuild with `neurolm-data shard ... --task {manifest.task}`"
            )
        pos = {c: i for i, c in enumerate(row["channel_indices"])}
        found[key] = raw[[pos[c] for c in channels]]
        if len(found) == 1:
            need = len(wanted) * len(channels) * raw.shape[1] * 4
            if need > max_bytes:
                raise MemoryError(
                    f"task {manifest.task} split {split}: {need / 2**30:.1f} GiB of windows exceeds "
                    f"max_bytes={max_bytes / 2**30:.1f} GiB; set DataConfig.max_windows_per_split"
                )
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ShardIntegrityError(
            f"task {manifest.task} split {split}: {len(missing)} window(s) listed in windows.parquet are not in "
            f"the shards (first: {missing[0]}); rebuild with `neurolm-data shard ... --task {manifest.task}`"
        )
    order = sorted(wanted)
    lengths = {found[k].shape[1] for k in order}
    if len(lengths) != 1:
        raise ShardIntegrityError(
            f"task {manifest.task} split {split}: windows of different lengths {lengths}"
        )
    return WindowSplit(
        split=split,
        x=np.stack([found[k] for k in order]),
        y=np.asarray([wanted[k]["label"] for k in order], dtype=np.int64),
        subjects=np.asarray([wanted[k]["subject"] for k in order]),
        keys=np.asarray(order),
        channel_indices=channels,
    )
