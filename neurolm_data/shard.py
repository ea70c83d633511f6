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
``shards.json`` (and whose files still hash as recorded) is a no-op. OUT is locked while a run writes it
(``neurolm_data.lock``). ``verify_shards`` (``neurolm-data verify OUT``) checks shards against ``shards.json``.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from neurolm_data.executors import WorkerDied, check_executor, run_map
from neurolm_data.lock import locked
from neurolm_data.protocols import Protocol
from neurolm_data.remote import url_outputs
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
    meta_bytes = _meta_bytes(w, task, window_hash)
    return {"__key__": w.key, "eeg.npy": buf.getvalue(), "meta.json": meta_bytes}, window_hash


def _meta_bytes(w: PlannedWindow, task: str, window_hash: str) -> bytes:
    """The ``meta.json`` member of window ``w``: compact JSON with sorted keys."""
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
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def _plain_ustar(name: str, size: int, tar: TarOptions) -> bool:
    """True when tarfile (PAX format) writes the member as one 512-byte ustar header and no extended header:
    ASCII name of at most 100 bytes, ASCII user/group names of at most 32, integer size and mtime that fit
    their octal fields (``tarfile.TarInfo.create_pax_header``)."""
    return (
        name.isascii()
        and len(name) <= 100
        and all(u.isascii() and len(u) <= 32 for u in (tar.user, tar.group))
        and isinstance(tar.mtime, int)
        and 0 <= tar.mtime < 8**11
        and 0 <= size < 8**11
    )


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


def _npy_header_bytes(shape: tuple[int, ...]) -> int:
    """Length of the ``.npy`` v1.0 header ``numpy.lib.format.write_array`` writes for a C-order ``<f4``
    array of ``shape`` (magic, version, header length and the dict padded to a multiple of 64 bytes)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
    return buf.tell()


#: Length of a ``window_hash`` (XXH3-128 as 32 hex digits, ``store.content_hash``).
_HASH_CHARS = 32


def _planned_bytes(w: PlannedWindow, task: str, tar: TarOptions, headers: dict[tuple[int, int], int]) -> int:
    """Bytes window ``w``'s sample adds to a tar, computed from its shape and metadata without reading the
    signal (the ``meta.json`` is built with a placeholder hash of the same length). ``_write_shard`` checks the
    real total against it."""
    shape = (len(w.rows), w.length)
    if shape not in headers:
        headers[shape] = _npy_header_bytes(shape)
    meta = _meta_bytes(w, task, "0" * _HASH_CHARS)
    sizes = {"eeg.npy": headers[shape] + 4 * shape[0] * shape[1], "meta.json": len(meta)}
    return _member_bytes({"__key__": w.key, **{k: _Sized(n) for k, n in sizes.items()}}, tar)


class _Sized:
    """Stands in for member bytes of a known length (``_member_bytes`` only takes ``len``)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def plan_shards(plan: WindowPlan, task: str, cfg: ShardConfig) -> list[tuple[str, list[PlannedWindow]]]:
    """Cut the planned windows into shards: per split, in ``(split, key)`` order, a new shard whenever the next
    sample would make the tar exceed ``cfg.max_shard_bytes``. Depends only on the plan and config, so every
    shard can then be written independently (``_write_shard``: one task each, locally or on Ray).

    Returns:
        ``[(path relative to the task folder, windows), ...]`` in order.

    Raises:
        ValueError: one sample alone exceeds ``max_shard_bytes``.
    """
    shards: list[tuple[str, list[PlannedWindow]]] = []
    headers: dict[tuple[int, int], int] = {}
    split, index, members = None, -1, 0
    for w in plan.windows:
        size = _planned_bytes(w, task, cfg.tar, headers)
        if _archive_bytes(size) > cfg.max_shard_bytes:
            raise ValueError(
                f"sample {w.key} needs {_archive_bytes(size)} bytes as a shard, "
                f"more than max_shard_bytes={cfg.max_shard_bytes}"
            )
        if w.split != split:
            split, index, members = w.split, -1, 0
        if index < 0 or _archive_bytes(members + size) > cfg.max_shard_bytes:
            index, members = index + 1, 0
            shards.append((f"{split}/{task}-{split}-{index:06d}.tar", []))
        shards[-1][1].append(w)
        members += size
    return shards


def _write_member(f: Any, name: str, data: bytes, tar: TarOptions) -> int:
    """Write one tar member (header, data, zero padding to a block) as ``TarFile.addfile`` in PAX format does:
    a plain member gets the one-block ustar header tarfile writes for it (``_plain_ustar``), any other member
    tarfile's own PAX header bytes. Returns the bytes written."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), tar.mtime, tar.mode, tar.user, tar.group
    fmt = tarfile.USTAR_FORMAT if _plain_ustar(name, len(data), tar) else tarfile.PAX_FORMAT
    header = ti.tobuf(fmt, "utf-8", "surrogateescape")
    pad = -len(data) % _BLOCK
    f.write(header)
    f.write(data)
    f.write(bytes(pad))
    return len(header) + len(data) + pad


def _write_shard(
    out: str, staging: str, rel: str, windows: list[PlannedWindow], task: str, tar: TarOptions
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write one shard ``staging/rel`` (temp file, then renamed) from the stored arrays under ``out``.

    The bytes are those webdataset's ``TarWriter`` wrote (which the shard hashes of earlier versions come from:
    ``tarfile`` in stream mode ``"w|"``, default PAX format, per sample its members in sorted suffix order, each
    with ``tar``'s mtime, mode and owner names, the archive padded to 10240-byte records), written here with
    ``tarfile.TarInfo.tobuf`` headers and plain file writes (``_write_member``), so that the data commands need
    neither webdataset nor torch (webdataset imports torch) nor tarfile's stream buffering.

    Returns:
        ``(shard record for shards.json, {key: window_hash})``.
    """
    out_p, final = Path(out), Path(staging) / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}
    members = 0
    arrays: dict[str, np.ndarray] = {}
    with atomic_open(final, "wb") as f:
        for w in windows:
            if w.store_path not in arrays:
                arrays.clear()  # windows are grouped by recording: keep one memory map open
                arrays[w.store_path] = np.load(out_p / w.store_path, mmap_mode="r", allow_pickle=False)
            x = arrays[w.store_path][list(w.rows), w.start : w.start + w.length]
            sample, hashes[w.key] = encode_sample(w, x, task)
            for k in sorted(k for k in sample if k != "__key__"):
                members += _write_member(f, f"{w.key}.{k}", sample[k], tar)
        f.write(bytes(_archive_bytes(members) - members))  # two zero blocks, padded to whole records
        size = f.tell()
        if size != _archive_bytes(members):
            raise RuntimeError(f"{rel}: tar size {size} differs from the computed {_archive_bytes(members)}")
    arrays.clear()
    split = rel.split("/", 1)[0]
    return (
        {"path": rel, "split": split, "samples": len(windows), "bytes": size, "sha256": sha256_file(final)},
        hashes,
    )


def _identity(task: TaskSpec, cfg: ShardConfig, out: Path, smeta: dict[str, Any]) -> dict[str, Any]:
    """Everything the shards depend on: configs and input manifest hashes (recorded in ``shards.json``)."""
    config = {"schema_version": SHARD_SCHEMA_VERSION, "task": task.describe(), "shard": asdict(cfg)}
    proto = smeta["protocol"]
    return {
        "config": config,
        "config_hash": hashlib.sha256(
            json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest(),
        "task_config_hash": task.config_hash(),
        "inputs": {
            "recordings_sha256": sha256_file(out / "recordings.parquet"),
            "splits_sha256": sha256_file(out / "splits.parquet"),
            "protocol": {
                "name": proto["name"],
                "version": proto["version"],
                "hash": smeta["protocol_hash"],
                "rule": proto["rule"],
                "salt": proto["salt"],
            },
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


@url_outputs
@locked("neurolm-data shard")
def run_shard(
    out: str | Path,
    task: str | TaskSpec,
    protocol: str | Path | Protocol | None = None,
    config: ShardConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> ShardResult:
    """Cut the task's windows from ``OUT/recordings`` and write ``OUT/shards/TASK`` (see module docstring).

    Args:
        out: the ingest output folder (``recordings.parquet``, ``recordings/``; ``splits.parquet``), or an fsspec
            URL of one (``s3://...``: run on a local mirror, then uploaded, ``neurolm_data.remote``).
        task: task name (``neurolm_data.tasks``) or instance.
        protocol: if given, ``run_split(out, protocol)`` runs first (rewriting ``OUT/splits.parquet``). If
            None, the existing ``splits.parquet`` is used, or the task's ``default_protocol`` when none exists.
        config: shard settings (default ``ShardConfig()``).
        progress: called as ``progress(done, total)`` windows as shards finish.
        executor: ``local`` (this process for ``workers=1``, else a process pool) or ``ray`` (one Ray task per
            shard on the cluster at ``ray_address`` / ``RAY_ADDRESS``); see ``neurolm_data.executors``. The
            shards are byte-identical whichever runs them.
        workers: processes of the local pool.
        ray_address: Ray cluster address for ``executor="ray"``.

    Returns:
        A ``ShardResult``; ``manifest`` is the ``shards.json`` content.

    Raises:
        OutputLockedError: another process is writing ``out`` (``neurolm_data.lock``).
        FileNotFoundError: no ``recordings.parquet`` or stored array.
        ValueError: the splits come from a protocol for another task, or from an older ``recordings.parquet``;
            a sample larger than ``max_shard_bytes``; a task bug (see ``plan_windows``).
        LeakageError: a subject, or overlapping windows, in two splits.
    """
    out = Path(out)
    task = get_task(task) if isinstance(task, str) else task
    cfg = config or ShardConfig()
    check_executor(executor)
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
        raise ValueError(
            f"{out / 'splits.parquet'} was computed from an older recordings.parquet: "
            f"re-run `neurolm-data split {out} --protocol {smeta['protocol']['name']}`"
        )
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
    layout = plan_shards(plan, task.name, cfg)
    args = [(str(out), str(staging), rel, ws, task.name, cfg.tar) for rel, ws in layout]
    shard_of = {w.key: rel for rel, ws in layout for w in ws}
    hashes: dict[str, str] = {}
    records: dict[int, dict[str, Any]] = {}
    done = 0
    for i, res in run_map(_write_shard, args, executor=executor, workers=workers, ray_address=ray_address):
        if isinstance(res, WorkerDied):
            raise RuntimeError(f"{staging / layout[i][0]}: {res}; re-run `neurolm-data shard` to resume")
        records[i], h = res
        hashes.update(h)
        done += len(layout[i][1])
        if progress is not None:
            progress(done, len(plan.windows))
    shards = [records[i] for i in range(len(layout))]

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


def _verify_shard(task_dir: Path, rec: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[str]:
    """Problems of one listed shard: missing, size, sha256 and, when the bytes differ, which member (a tar
    member that is not a window of ``windows.parquet``, a window missing, or a member whose content differs)."""
    path = task_dir / rec["path"]
    if not path.is_file():
        return [f"{path}: listed in shards.json but missing"]
    problems = []
    size = path.stat().st_size
    if size != rec["bytes"]:
        problems.append(f"{path}: {size} bytes, shards.json records {rec['bytes']} (truncated or modified)")
    if sha256_file(path) == rec["sha256"]:
        return problems
    problems.append(f"{path}: sha256 differs from shards.json")
    expected = {k for k, r in rows.items() if r["shard"] == rec["path"]}
    seen: set[str] = set()
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                key, _, suffix = m.name.partition(".")
                if key not in expected or suffix not in ("eeg.npy", "meta.json"):
                    problems.append(
                        f"{path}: member {m.name} is not a window member listed in windows.parquet"
                    )
                    continue
                seen.add(m.name)
                data = tf.extractfile(m).read()
                try:
                    if suffix == "eeg.npy":
                        x = np.load(io.BytesIO(data), allow_pickle=False)
                        if content_hash(np.ascontiguousarray(x, "<f4")) != rows[key]["window_hash"]:
                            problems.append(
                                f"{path}: member {m.name}: window_hash differs from windows.parquet"
                            )
                    else:
                        meta = json.loads(data)
                        if meta.get("key") != key or meta.get("label") != rows[key]["label"]:
                            problems.append(
                                f"{path}: member {m.name}: key or label differs from windows.parquet"
                            )
                except (ValueError, UnicodeDecodeError, EOFError) as err:
                    problems.append(f"{path}: member {m.name}: cannot decode ({type(err).__name__}: {err})")
    except (tarfile.TarError, EOFError, OSError) as err:
        problems.append(f"{path}: not a readable tar after member {len(seen)} ({type(err).__name__}: {err})")
    for key in sorted(expected):
        for suffix in ("eeg.npy", "meta.json"):
            if f"{key}.{suffix}" not in seen:
                problems.append(f"{path}: member {key}.{suffix} is missing")
    return problems


@url_outputs
def verify_shards(out: str | Path, tasks: list[str] | None = None) -> dict[str, list[str]]:
    """Check every task's shards under ``OUT/shards`` against their ``shards.json`` (the index ``run_shard``
    writes): ``windows.parquet``'s sha256, the shard files present (none missing, none unlisted), each shard's
    size and sha256, the sample counts against ``windows.parquet``; for a shard whose bytes differ, the
    members at fault (renamed, missing, or with content that differs from its ``window_hash``).

    Args:
        out: the ingest output folder. tasks: task names (default: every folder of ``OUT/shards`` with a
            ``shards.json`` or ``windows.parquet``).

    Returns:
        ``{task: [problem, ...]}``; every problem names the file (and member). Empty lists mean verified.

    Raises:
        FileNotFoundError: no ``OUT/shards`` folder, or a named task has no shard folder.
    """
    import pyarrow.parquet as pq

    root = Path(out) / "shards"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no shards (run `neurolm-data shard {out} --task NAME` first)")
    names = tasks or sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / "shards.json").exists() or (p / "windows.parquet").exists())
    )
    report: dict[str, list[str]] = {}
    for name in names:
        task_dir = root / name
        if not task_dir.is_dir():
            raise FileNotFoundError(f"{task_dir}: no such task folder")
        problems: list[str] = []
        report[name] = problems
        index = task_dir / "shards.json"
        try:
            manifest = json.loads(index.read_text(encoding="utf-8"))
            shards = manifest["shards"]
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{index}: missing or unreadable ({type(err).__name__}: {err})")
            continue
        wp = task_dir / "windows.parquet"
        if not wp.is_file():
            problems.append(f"{wp}: missing")
            continue
        if sha256_file(wp) != manifest.get("windows_parquet_sha256"):
            problems.append(f"{wp}: sha256 differs from shards.json")
        table = pq.ParquetFile(wp).read(columns=["key", "shard", "split", "label", "window_hash"]).to_pylist()
        rows = {r["key"]: r for r in table}
        listed = {s["path"] for s in shards}
        for p in sorted(task_dir.glob("*/*.tar")):
            rel = p.relative_to(task_dir).as_posix()
            if rel not in listed:
                problems.append(f"{p}: not listed in shards.json")
        for rec in shards:
            n = sum(1 for r in table if r["shard"] == rec["path"])
            if n != rec["samples"]:
                problems.append(
                    f"{task_dir / rec['path']}: shards.json records {rec['samples']} windows, "
                    f"windows.parquet {n}"
                )
            problems += _verify_shard(task_dir, rec, rows)
    return report
