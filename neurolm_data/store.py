"""The on-disk store of ingest: atomic writes, hash helpers, the per-recording array store.

Contracts (docs/architecture.md): ``OUT/recordings/<recording_id>.npy`` holds a float32 ``(n_channels,
n_samples)`` array in µV at 200 Hz, loadable with ``np.load(path, mmap_mode="r")``. Every file is written under
a temporary name in the same folder and moved into place with ``os.replace`` (atomic on POSIX), so a killed
run leaves either the old file, the new file, or a stray ``*.tmp`` that is never read.

Two kinds of hash (docs/architecture.md): **content hashes** of signal arrays (``signal_hash``, ``data_hash``,
``window_hash``: hundreds of MB per corpus hour) are XXH3-128 (``content_hash``, the xxhash library: ~40x faster
than sha256 here, 0.012 vs 0.50 ms per MB on the 2-core development machine with SHA-NI; 128 bits make an
accidental collision among 10^15 arrays ~1e-9 likely); they identify data, they do not defend against a forger.
**File and config digests** (Parquet manifests, shard tars, configs, downloads) stay sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import xxhash

if TYPE_CHECKING:
    import pyarrow as pa

#: Folder (relative to OUT) of the per-recording arrays and their JSON sidecars.
RECORDINGS_DIR = "recordings"

#: Fixed Parquet writer options: same table -> same bytes (no timestamps or host data are written).
PARQUET_OPTIONS: dict[str, Any] = dict(
    compression="zstd",
    compression_level=3,
    use_dictionary=True,
    write_statistics=True,
    version="2.6",
    data_page_size=1 << 20,
    store_schema=True,
)


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux), else by setting and
    restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success ``os.replace`` it onto ``path``, else delete it.

    The temporary name ends in ``.tmp`` and lives in the same folder (same file system, so the rename is
    atomic). Parent folders are created. The file gets the mode ``open()`` would give (0666 minus the process
    umask), so a dataset on a shared server is as readable as the user's umask says.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:  # mkstemp makes 0600 files; give the mode open() would (0666 minus the umask)
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``open`` a temporary file beside ``path`` and atomically move it onto ``path`` when the block succeeds.

    Atomic against a killed process (the rename happens only after the file is closed); no ``fsync``, so a
    power loss may still lose the last files written.
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as canonical JSON (sorted keys, 1-space indent, UTF-8, trailing newline) atomically."""
    text = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def write_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` in ``.npy`` format (no pickle) atomically. Same array -> same bytes."""
    with atomic_open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def write_parquet_atomic(path: str | Path, table: pa.Table) -> None:
    """Write ``table`` with the fixed ``PARQUET_OPTIONS`` atomically (byte-identical for equal tables)."""
    import pyarrow.parquet as pq  # here, not at import: ingest workers write no Parquet

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def content_hash(*parts: bytes | memoryview | np.ndarray) -> str:
    """32 hex digits of XXH3-128 over the concatenated bytes of ``parts`` (arrays: their raw C-order bytes; dtype
    and shape are not included, so compare like with like). The project's hash of signal content (module
    docstring)."""
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(memoryview(np.ascontiguousarray(part)).cast("B") if isinstance(part, np.ndarray) else part)
    return h.hexdigest()


def array_hash(array: np.ndarray) -> str:
    """``content_hash`` of an array's raw C-order bytes (``data_hash`` of a stored recording)."""
    return content_hash(array)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def array_path(out: str | Path, recording_id: str) -> Path:
    """``OUT/recordings/<recording_id>.npy``."""
    return Path(out) / RECORDINGS_DIR / f"{recording_id}.npy"


def sidecar_path(out: str | Path, recording_id: str) -> Path:
    """``OUT/recordings/<recording_id>.json``: the recording's manifest row and ledger row, written after the
    array; manifests are rebuilt from these, so a killed run loses nothing that finished."""
    return Path(out) / RECORDINGS_DIR / f"{recording_id}.json"


def load_recording(out: str | Path, recording_id: str) -> np.ndarray:
    """Memory-map a stored recording: float32 ``(n_channels, n_samples)`` µV at 200 Hz (read-only)."""
    return np.load(array_path(out, recording_id), mmap_mode="r", allow_pickle=False)
