"""Inputs and outputs as fsspec URLs (``s3://``, ``gs://``, ``file://`` ...): a local mirror synced object by object.

``run_ingest`` and ``run_shard`` accept a URL for the corpus root and for OUT. A URL input is downloaded once into
a local cache (``NEUROLM_CACHE``, default ``~/.cache/neurolm``; files already there with the same size are not
fetched again). A URL OUT is mirrored: the objects under it are downloaded into the cache (what is already there
and unchanged is kept), the run reads and writes the local mirror exactly as for a local OUT (atomic renames,
the lock, resume), and then every file the run wrote is uploaded, manifests and indexes last
(``recordings.parquet``, ``ledger.parquet``, ``windows.parquet``, ``shards.json``), and objects the run removed
(a replaced shard folder) are deleted. An object store has no rename: each object appears whole when its upload
completes (S3 and GCS PUTs are atomic per object), so a reader sees an old or a new object, never a partial one;
the index written last makes a half-finished upload detectable (its files do not match ``shards.json``), and a
re-run uploads what is missing. Credentials and endpoints come from fsspec's usual configuration (environment,
``~/.aws``, ``FSSPEC_S3_ENDPOINT_URL`` ...). ``file://`` URLs are plain local paths.

Uses fsspec (https://filesystem-spec.readthedocs.io); ``s3://`` needs s3fs (``pip install "neurolm[s3]"``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: Files uploaded after every other file of a mirrored OUT (the indexes that make the rest valid), in order.
LAST = ("recordings.parquet", "ledger.parquet", "splits.parquet", "windows.parquet", "shards.json")
#: The mirror's record of what it holds in sync with the URL: ``{relative path: [size, mtime_ns]}``.
_SYNCED = ".neurolm-synced.json"


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` other than ``file://`` (which is treated as a local path)."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


def local_path(path: str | os.PathLike) -> Path:
    """``path`` as a local ``Path`` (``file://`` URLs unwrapped)."""
    s = str(path)
    return Path(unquote(urlparse(s).path)) if s.startswith("file://") else Path(s)


def cache_dir() -> Path:
    """``NEUROLM_CACHE`` or ``~/.cache/neurolm``."""
    return Path(os.environ.get("NEUROLM_CACHE", Path.home() / ".cache" / "neurolm"))


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url)


def _mirror_of(url: str, kind: str) -> Path:
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return cache_dir() / kind / f"{digest}-{Path(urlparse(url).path).name or 'root'}"


def _remote_files(fs: Any, base: str) -> dict[str, int]:
    """``{relative path: size}`` of the objects under ``base`` (none when it does not exist)."""
    if not fs.exists(base):
        return {}
    found = fs.find(base, detail=True)
    base = base.rstrip("/")
    return {
        p[len(base) + 1 :]: int(info.get("size") or 0)
        for p, info in found.items()
        if info.get("type", "file") == "file" and p.startswith(base + "/")
    }


def _local_files(root: Path) -> dict[str, os.stat_result]:
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = p.stat()
    return out


def fetch_input(url: str | os.PathLike) -> Path:
    """A local copy of the corpus at ``url`` (downloaded into the cache; files present with the same size are
    not fetched again). Local paths and ``file://`` URLs are returned as they are."""
    if not is_url(url):
        return local_path(url)
    url = str(url)
    fs, base = _fs(url)
    dst = _mirror_of(url, "inputs")
    remote = _remote_files(fs, base)
    if not remote:
        raise FileNotFoundError(f"{url}: no objects under this URL")
    for rel, size in sorted(remote.items()):
        target = dst / rel
        if target.is_file() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fs.get_file(f"{base.rstrip('/')}/{rel}", str(tmp))
        os.replace(tmp, target)
    return dst


def _sync_down(fs: Any, base: str, local: Path) -> dict[str, list[int]]:
    """Download the objects under ``base`` that the mirror lacks or holds in another version than the one last
    synced; remove mirror files that were synced and are no longer remote. Returns the synced record."""
    remote = _remote_files(fs, base)
    synced_path = local / _SYNCED
    try:
        synced = json.loads(synced_path.read_text())
    except (OSError, ValueError):
        synced = {}
    for rel in _local_files(local):  # deleted remotely since the last sync (files a killed run wrote stay)
        if rel not in remote and rel in synced:
            (local / rel).unlink()
            synced.pop(rel)
    for rel, size in sorted(remote.items()):
        target = local / rel
        rec = synced.get(rel)
        if target.is_file() and rec == [target.stat().st_size, target.stat().st_mtime_ns] and rec[0] == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fs.get_file(f"{base.rstrip('/')}/{rel}", str(tmp))
        os.replace(tmp, target)
        st = target.stat()
        synced[rel] = [st.st_size, st.st_mtime_ns]
    synced_path.write_text(json.dumps(synced, sort_keys=True))
    return synced


def _sync_up(fs: Any, base: str, local: Path, synced: dict[str, list[int]]) -> None:
    """Upload every mirror file the run wrote or changed (indexes in ``LAST`` after the rest), then delete the
    objects whose file the run removed."""
    files = _local_files(local)
    changed = [rel for rel, st in files.items() if synced.get(rel) != [st.st_size, st.st_mtime_ns]]
    order = sorted(
        changed,
        key=lambda r: (Path(r).name in LAST, LAST.index(Path(r).name) if Path(r).name in LAST else 0, r),
    )
    base = base.rstrip("/")
    for rel in order:
        fs.put_file(str(local / rel), f"{base}/{rel}")
        st = (local / rel).stat()
        synced[rel] = [st.st_size, st.st_mtime_ns]
        (local / _SYNCED).write_text(json.dumps(synced, sort_keys=True))
    for rel in sorted(set(synced) - set(files)):
        fs.rm_file(f"{base}/{rel}")
        synced.pop(rel)
    (local / _SYNCED).write_text(json.dumps(synced, sort_keys=True))


@contextmanager
def mirrored(out: str | os.PathLike) -> Iterator[Path]:
    """The local folder to run on for OUT: OUT itself when local, else a cache mirror of the URL, synced down
    before and up after the block (also when the block raises, so that finished recordings are kept)."""
    if not is_url(out):
        yield local_path(out)
        return
    url = str(out)
    fs, base = _fs(url)
    local = _mirror_of(url, "outputs")
    local.mkdir(parents=True, exist_ok=True)
    synced = _sync_down(fs, base, local)
    try:
        yield local
    finally:
        _sync_up(fs, base, local, synced)


def url_outputs(fn):
    """Decorator: a function whose first argument is OUT runs on ``mirrored(OUT)`` when OUT is a URL."""
    import functools

    @functools.wraps(fn)
    def inner(out: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        if not is_url(out):
            return fn(local_path(out), *args, **kwargs)
        with mirrored(out) as local:
            return fn(local, *args, **kwargs)

    return inner
