"""Atomic, byte-deterministic writes of the split/shard manifests (Parquet, JSON) and file hashing.

Every write goes to a temporary file in the destination folder and is moved into place with ``os.replace``,
so a reader never sees a half-written manifest and an interrupted run leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: Read size for hashing files (bytes).
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes. Raises FileNotFoundError naming the path."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tmp_path_for(path: Path) -> Path:
    """The temporary sibling a write to ``path`` goes through (``.<name>.<pid>.tmp``, same folder)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, ``os.replace``)."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, fixed separators and a final newline: equal objects give equal bytes."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write ``canonical_json(obj)`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(canonical_json(obj).encode("utf-8"), path)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a pyarrow table to ``path`` atomically with fixed writer options (zstd compression).

    The bytes depend only on the table (and the pyarrow version): no timestamps are stored.
    """
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
