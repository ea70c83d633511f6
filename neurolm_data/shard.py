"""Write a task's windows as WebDataset tar shards with ``windows.parquet`` and ``shards.json``.

Layout (docs/architecture.md)::

    OUT/shards/TASK/SPLIT/TASK-SPLIT-000000.tar   # samples <recording_id>_w00000.{eeg.npy,meta.json}
    OUT/shards/TASK/windows.parquet               # one row per window, sorted by (split, key)
    OUT/shards/TASK/shards.json                   # shards (samples, bytes, sha256), configs, input hashes

Determinism: samples are written in ``(split, key)`` order with webdataset's ``TarWriter`` given a fixed
mtime (0), owner/group names, mode 0o444 and uid/gid 0 (tarfile's default); ``eeg.npy`` is
written with ``numpy.lib.format`` v1.0 and ``meta.json`` with sorted keys. Same inputs and config give
byte-identical shards and manifests. Each shard is written to a temporary file and moved into place with
``os.replace``. A run builds the whole task folder under ``OUT/shards/.TASK.partial`` and then swaps it in,
so shards from different configs are never mixed; a re-run whose inputs and config match the existing
``shards.json`` (and whose files still hash as recorded) is a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import webdataset as wds

from neurolm_data.protocols import Protocol
from neurolm_data.split import read_recordings, read_splits, run_split
from neurolm_data.store import atomic_open, content_hash, sha256_file, write_json_atomic, write_parquet_atomic
from neurolm_data.tasks.base import SFREQ, TaskSpec, get_task
from neurolm_data.windows import PlannedWindow, WindowPlan, audit_windows, plan_windows

#: Version of the shard layout and ``shards.json`` schema; part of the config hash. 2: ``window_hash`` is XXH3-128
#: (``store.content_hash``), not sha256.
SHARD_SCHEMA_VERSION = 2
#: Default shard size bound: 256 MiB (WebDataset recommends shards of roughly 100 MB to 1 GB).
DEFAULT_MAX_SHARD_BYTES = 256 * 1024 * 1024
#: tar block and record sizes (POSIX ustar; Python's tarfile pads an archive to whole records).
_BLOCK, _RECORD = 512, 512 * 20

#: Columns and types of ``windows.parquet`` (docs/architecture.md).
WINDOWS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("split", pa.string()),
        ("subject", pa.string()),
        ("recording", pa.string()),
        ("start_s", pa.float64()),
        ("n_channels", pa.int32()),
        ("channel_indices", pa.list_(pa.int32())),
        ("label", pa.int64()),
        ("window_hash", pa.string()),
    ]
)
#: ``windows.parquet`` of a ``kfold`` protocol: the subject's test ``fold`` added (every window is written once,
#: under split ``cv``; ``neurolm_data.split.with_fold_splits`` gives a fold's train/val/test).
KFOLD_WINDOWS_SCHEMA = WINDOWS_SCHEMA.append(pa.field("fold", pa.int64()))


@dataclass(frozen=True)
class TarOptions:
    """Fixed tar member metadata that makes shards byte-deterministic (passed to ``wds.TarWriter``).

    ``TarWriter`` stamps members with ``time.time()`` unless given ``mtime``; uid/gid stay at tarfile's 0.
    The archive format is tarfile's default (PAX: webdataset 1.0.2 accepts but does not pass on ``format``),
    which writes plain ustar headers for member names of at most 100 characters.
    """

    mtime: int = 0
    user: str = "neurolm"
    group: str = "neurolm"
    mode: int = 0o444


@dataclass(frozen=True)
class ShardConfig:
    """The shard step's own settings (the task's windowing lives in its ``TaskConfig``).

    Attributes:
        max_shard_bytes: upper bound on each tar file's size in bytes (a shard holds at least one sample;
            a single sample larger than the bound is an error).
        tar: fixed tar member metadata.
    """

    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    tar: TarOptions = field(default_factory=TarOptions)


@dataclass(frozen=True)
class ShardResult:
    """What ``run_shard`` did.

    Attributes:
        task_dir: ``OUT/shards/TASK``.
        noop: True when the existing shards already matched inputs and config (nothing was written).
        manifest: the ``shards.json`` content.
    """

    task_dir: Path
    noop: bool
    manifest: dict[str, Any]

    @property
    def n_windows(self) -> int:
        """Total windows over all splits."""
        return int(self.manifest["n_windows"])


def encode_sample(w: PlannedWindow, x: np.ndarray, task: str) -> tuple[dict[str, Any], str]:
    """The tar sample of one window and its ``window_hash``.

    Args:
        w: the planned window. x: its signal, float32 ``(n_channels, length)`` in µV. task: task name.

    Returns:
        ``({"__key__", "eeg.npy": bytes, "meta.json": bytes}, window_hash)``; ``window_hash`` is the
        ``store.content_hash`` (XXH3-128) of ``x``'s little-endian float32 C-order bytes.
    """
    x = np.ascontiguousarray(x, dtype="<f4")
    window_hash = content_hash(x)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, x, version=(1, 0), allow_pickle=False)
    meta = {
        "key": w.key,
        "task": task,
        "split": w.split,
        "subject": w.subject,
        "recording": w.recording,
        "start_s": w.start_s,
        "sfreq": float(SFREQ),
        "channels": list(w.channels),
        "channel_indices": list(w.channel_indices),
        "label": w.label,
        "window_hash": window_hash,
    }
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    return {"__key__": w.key, "eeg.npy": buf.getvalue(), "meta.json": meta_bytes}, window_hash


def _plain_ustar(name: str, size: int, tar: TarOptions) -> bool:
    """True when tarfile (PAX format) writes the member as one 512-byte ustar header and no extended header:
    ASCII name of at most 100 bytes, ASCII user/group names of at most 32, integer size and mtime that fit
    their octal fields (``tarfile.TarInfo.create_pax_header``)."""
    return (name.isascii() and len(name) <= 100 and all(u.isascii() and len(u) <= 32 for u in (tar.user, tar.group))
            and isinstance(tar.mtime, int) and 0 <= tar.mtime < 8**11 and 0 <= size < 8**11)


def _member_bytes(sample: dict[str, Any], tar: TarOptions) -> int:
    """Bytes the sample adds to a tar: per member its header(s) (exactly as tarfile writes them, extended
    headers for long names included) plus the data padded to 512-byte blocks. A plain ustar member's header
    is one block; any other is measured with ``TarInfo.tobuf`` (``_ShardWriter.close`` checks the total)."""
    total = 0
    for k, v in sample.items():
        if k == "__key__":
            continue
        name = f"{sample['__key__']}.{k}"
        if _plain_ustar(name, len(v), tar):
            header = _BLOCK
        else:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(v), tar.mtime, tar.mode, tar.user, tar.group
            header = len(ti.tobuf(tarfile.DEFAULT_FORMAT, "utf-8", "surrogateescape"))
        total += header + -(-len(v) // _BLOCK) * _BLOCK
    return total


def _archive_bytes(members: int) -> int:
    """Final tar size for ``members`` bytes of members: two zero blocks, padded to whole 10240-byte records."""
    return -(-(members + 2 * _BLOCK) // _RECORD) * _RECORD


class _ShardWriter:
    """Streams samples of one split into size-bounded shards, each written to a temp file then renamed."""

    def __init__(self, root: Path, task: str, split: str, cfg: ShardConfig):
        self.root, self.task, self.split, self.cfg = root, task, split, cfg
        (root / split).mkdir(parents=True, exist_ok=True)
        self.index = -1
        self.shards: list[dict[str, Any]] = []
        self._writer: wds.TarWriter | None = None
        self._file: Any = None
        self._members = 0
        self._count = 0

    @property
    def current(self) -> str:
        """Path of the open shard, relative to the task folder."""
        return f"{self.split}/{self.task}-{self.split}-{self.index:06d}.tar"

    def _open(self) -> None:
        self.index += 1
        self._stack = ExitStack()
        self._file = self._stack.enter_context(atomic_open(self.root / self.current, "wb"))
        t = self.cfg.tar
        self._writer = wds.TarWriter(
            self._file, user=t.user, group=t.group, mode=t.mode, mtime=t.mtime, encoder=False
        )
        self._members = self._count = 0

    def close(self) -> None:
        """Finish the open shard (if any): close, fsync, rename into place, record its hash."""
        if self._writer is None:
            return
        self._writer.close()  # writes the end-of-archive blocks; the file object stays open
        size = self._file.tell()
        if size != _archive_bytes(self._members):
            raise RuntimeError(f"{self.current}: tar size {size} differs from the computed "
                               f"{_archive_bytes(self._members)}")
        self._stack.close()  # flush, fsync, os.replace onto the final name
        final = self.root / self.current
        self.shards.append({"path": self.current, "split": self.split, "samples": self._count,
                            "bytes": size, "sha256": sha256_file(final)})
        self._writer = None

    def write(self, sample: dict[str, Any]) -> str:
        """Add one sample, starting a new shard first if it would exceed ``max_shard_bytes``.

        Returns:
            The shard path (relative to the task folder) the sample went to.

        Raises:
            ValueError: one sample alone exceeds ``max_shard_bytes``.
        """
        size = _member_bytes(sample, self.cfg.tar)
        if _archive_bytes(size) > self.cfg.max_shard_bytes:
            raise ValueError(f"sample {sample['__key__']} needs {_archive_bytes(size)} bytes as a shard, "
                             f"more than max_shard_bytes={self.cfg.max_shard_bytes}")
        if self._writer is not None and _archive_bytes(self._members + size) > self.cfg.max_shard_bytes:
            self.close()
        if self._writer is None:
            self._open()
        self._writer.write(sample)
        self._members += size
        self._count += 1
        return self.current


def _identity(task: TaskSpec, cfg: ShardConfig, out: Path, smeta: dict[str, Any]) -> dict[str, Any]:
    """Everything the shards depend on: configs and input manifest hashes (recorded in ``shards.json``)."""
    config = {"schema_version": SHARD_SCHEMA_VERSION, "task": task.describe(), "shard": asdict(cfg)}
    proto = smeta["protocol"]
    return {
        "config": config,
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest(),
        "task_config_hash": task.config_hash(),
        "inputs": {
            "recordings_sha256": sha256_file(out / "recordings.parquet"),
            "splits_sha256": sha256_file(out / "splits.parquet"),
            "protocol": {"name": proto["name"], "version": proto["version"], "hash": smeta["protocol_hash"],
                         "rule": proto["rule"], "salt": proto["salt"]},
        },
    }


def _up_to_date(task_dir: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The existing ``shards.json`` if it has the same identity and every file it lists hashes as recorded."""
    path = task_dir / "shards.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if any(old.get(k) != v for k, v in identity.items()):
        return None
    files = [(s["path"], s["sha256"]) for s in old.get("shards", [])]
    files.append(("windows.parquet", old.get("windows_parquet_sha256")))
    for rel, digest in files:
        f = task_dir / rel
        if not f.is_file() or sha256_file(f) != digest:
            return None
    listed = {rel for rel, _ in files}
    on_disk = {p.relative_to(task_dir).as_posix() for p in task_dir.glob("*/*.tar")}
    return old if on_disk == listed - {"windows.parquet"} else None


def _windows_table(plan: WindowPlan, shard_of: dict[str, str], hashes: dict[str, str]) -> pa.Table:
    schema = KFOLD_WINDOWS_SCHEMA if any(w.fold is not None for w in plan.windows) else WINDOWS_SCHEMA
    cols: dict[str, list[Any]] = {n: [] for n in schema.names}
    for w in plan.windows:
        cols["key"].append(w.key)
        cols["shard"].append(shard_of[w.key])
        cols["split"].append(w.split)
        cols["subject"].append(w.subject)
        cols["recording"].append(w.recording)
        cols["start_s"].append(w.start_s)
        cols["n_channels"].append(len(w.rows))
        cols["channel_indices"].append(list(w.channel_indices))
        cols["label"].append(w.label)
        cols["window_hash"].append(hashes[w.key])
        if "fold" in cols:
            cols["fold"].append(w.fold)
    return pa.Table.from_pydict(cols, schema=schema)


def _swap_in(staging: Path, task_dir: Path) -> None:
    """Replace ``task_dir`` by ``staging`` (two renames; the old folder is deleted afterwards)."""
    old = task_dir.with_name(f".{task_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if task_dir.exists():
        os.replace(task_dir, old)
    os.replace(staging, task_dir)
    shutil.rmtree(old, ignore_errors=True)


def run_shard(
    out: str | Path,
    task: str | TaskSpec,
    protocol: str | Path | Protocol | None = None,
    config: ShardConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ShardResult:
    """Cut the task's windows from ``OUT/recordings`` and write ``OUT/shards/TASK`` (see module docstring).

    Args:
        out: the ingest output folder (``recordings.parquet``, ``recordings/``; ``splits.parquet``).
        task: task name (``neurolm_data.tasks``) or instance.
        protocol: if given, ``run_split(out, protocol)`` runs first (rewriting ``OUT/splits.parquet``). If
            None, the existing ``splits.parquet`` is used, or the task's ``default_protocol`` when none exists.
        config: shard settings (default ``ShardConfig()``).
        progress: called as ``progress(done, total)`` windows while writing.

    Returns:
        A ``ShardResult``; ``manifest`` is the ``shards.json`` content.

    Raises:
        FileNotFoundError: no ``recordings.parquet`` or stored array.
        ValueError: the splits come from a protocol for another task, or from an older ``recordings.parquet``;
            a sample larger than ``max_shard_bytes``; a task bug (see ``plan_windows``).
        LeakageError: a subject, or overlapping windows, in two splits.
    """
    out = Path(out)
    task = get_task(task) if isinstance(task, str) else task
    cfg = config or ShardConfig()
    if cfg.max_shard_bytes < _RECORD:
        raise ValueError(f"max_shard_bytes={cfg.max_shard_bytes} is below one tar record ({_RECORD} bytes)")
    recordings = read_recordings(out)
    if protocol is not None or not (out / "splits.parquet").is_file():
        run_split(out, protocol if protocol is not None else task.default_protocol)
    splits, smeta = read_splits(out)
    if smeta["protocol"]["task"] != task.name:
        raise ValueError(
            f"{out / 'splits.parquet'} comes from protocol {smeta['protocol']['name']!r} for task "
            f"{smeta['protocol']['task']!r}, not {task.name!r}: pass --protocol (e.g. {task.default_protocol!r})"
        )
    identity = _identity(task, cfg, out, smeta)
    if identity["inputs"]["recordings_sha256"] != smeta["recordings_sha256"]:
        raise ValueError(f"{out / 'splits.parquet'} was computed from an older recordings.parquet: "
                         f"re-run `neurolm-data split {out} --protocol {smeta['protocol']['name']}`")
    task_dir = out / "shards" / task.name
    existing = _up_to_date(task_dir, identity)
    if existing is not None:
        return ShardResult(task_dir, True, existing)

    groups = {g: sp for sp, gs in (smeta["protocol"].get("groups") or {}).items() for g in gs}
    plan = plan_windows(out, recordings, splits, task, groups=groups)
    audit_windows(plan.windows)
    staging = out / "shards" / f".{task.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shard_of: dict[str, str] = {}
    hashes: dict[str, str] = {}
    shards: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    writer: _ShardWriter | None = None
    for done, w in enumerate(plan.windows, 1):
        if writer is None or writer.split != w.split:
            if writer is not None:
                writer.close()
                shards += writer.shards
            writer = _ShardWriter(staging, task.name, w.split, cfg)
        if w.store_path not in arrays:
            arrays.clear()  # windows are grouped by recording: keep one memory map open
            arrays[w.store_path] = np.load(out / w.store_path, mmap_mode="r", allow_pickle=False)
        x = arrays[w.store_path][list(w.rows), w.start : w.start + w.length]
        sample, hashes[w.key] = encode_sample(w, x, task.name)
        shard_of[w.key] = writer.write(sample)
        if progress is not None:
            progress(done, len(plan.windows))
    if writer is not None:
        writer.close()
        shards += writer.shards
    arrays.clear()

    write_parquet_atomic(staging / "windows.parquet", _windows_table(plan, shard_of, hashes))
    per_split: dict[str, dict[str, Any]] = {}
    for split_name in sorted({w.split for w in plan.windows}):
        ws = [w for w in plan.windows if w.split == split_name]
        labels = Counter("null" if w.label is None else str(w.label) for w in ws)
        per_split[split_name] = {
            "windows": len(ws),
            "subjects": len({(w.source, w.subject) for w in ws}),
            "recordings": plan.recordings.get(split_name, 0),
            "shards": sum(1 for s in shards if s["split"] == split_name),
            "labels": dict(sorted(labels.items())),
        }
        if any(w.fold is not None for w in ws):  # kfold: test windows per fold
            per_split[split_name]["folds"] = dict(sorted(Counter(str(w.fold) for w in ws).items()))
    manifest = {
        **identity,
        "n_windows": len(plan.windows),
        "splits": per_split,
        "shards": shards,
        "windows_parquet_sha256": sha256_file(staging / "windows.parquet"),
        "skipped": [{"recording": r, "reason": why} for r, why in plan.skipped],
        "unassigned_recordings": len(plan.unassigned),
    }
    write_json_atomic(staging / "shards.json", manifest)
    _swap_in(staging, task_dir)
    return ShardResult(task_dir, False, manifest)
