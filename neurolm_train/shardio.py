"""Reading samples out of WebDataset shards with one copy of the signal and no per-member ``tarfile`` cost.

The project's shards (docs/architecture.md) are uncompressed POSIX ustar archives of small regular files
(``KEY.eeg.npy``, ``KEY.meta.json``). Two costs dominate a naive loader: Python's ``tarfile`` (~70 µs per
member) and moving decoded arrays from DataLoader workers to the training process through shared memory
(a fresh shared segment per batch, ~3-4 ms per 4 MB batch on a 2-core machine). Here:

* ``shard_entries`` walks the 512-byte headers of a memory-mapped shard once per process (cached) and
  groups members into samples by key with webdataset's ``base_plus_ext`` rule, so a reader can skip
  samples without touching them; ``open_sample`` gives one sample with ``Member`` values (shard path,
  byte offset, zero-copy view). Archives that are not plain ustar (compressed, pax/GNU headers, links)
  go through webdataset's ``tarfile`` path and yield bytes, so any valid shard reads the same.
* ``eeg_ref`` turns an ``eeg.npy`` member into ``(path, offset, dtype, shape)``: a few bytes that a worker
  sends instead of the array; ``read_ref`` maps the shard in the training process (maps are cached) and
  returns a read-only view, which the batch assembly copies once, transposed, into the batch tensor.
"""

from __future__ import annotations

import ast
import io
import mmap
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import webdataset as wds
from webdataset.gopen import gopen_schemes
from webdataset.tariterators import base_plus_ext

_BLOCK = 512  # tar block size (POSIX.1-1988 ustar)
_MAX_MAPS = 64  # shards kept mapped in one process
_MAPS: OrderedDict[str, mmap.mmap] = OrderedDict()


@dataclass(frozen=True)
class Member:
    """A member of a mapped ustar shard: its data start ``offset`` in the file and a read-only ``view``."""

    path: str
    offset: int
    view: memoryview

    def __bytes__(self) -> bytes:
        return bytes(self.view)


def _index(mm: mmap.mmap) -> list[tuple[str, int, int]] | None:
    """(name, data offset, size) of every member of a plain ustar archive, or None when the archive needs
    the full ``tarfile`` (compressed, extended headers, non-regular members)."""
    if mm[:2] == b"\x1f\x8b" or mm[257:262] != b"ustar":
        return None
    out, pos, n = [], 0, len(mm)
    while pos + _BLOCK <= n:
        h = mm[pos : pos + _BLOCK]
        if h == b"\0" * _BLOCK:
            break
        kind, size_field = h[156:157], h[124:136]
        if kind not in (b"0", b"\0") or size_field[0] & 0x80:
            return None
        name = h[0:100].split(b"\0", 1)[0].decode()
        prefix = h[345:500].split(b"\0", 1)[0].decode()
        size = int(size_field.strip(b"\0 ") or b"0", 8)
        out.append((f"{prefix}/{name}" if prefix else name, pos + _BLOCK, size))
        pos += _BLOCK + (size + _BLOCK - 1) // _BLOCK * _BLOCK
    return out


def _map(path: str) -> mmap.mmap:
    """A read-only map of ``path`` from this process's LRU of ``_MAX_MAPS`` open maps."""
    mm = _MAPS.pop(path, None)
    if mm is None:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        while len(_MAPS) >= _MAX_MAPS:
            old = _MAPS.popitem(last=False)[1]
            try:
                old.close()
            except BufferError:  # a view is still alive: the map goes when the view does
                pass
    _MAPS[path] = mm
    return mm


@lru_cache(maxsize=1024)
def _entries(
    path: str, size: int, mtime_ns: int
) -> tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...] | None:
    if size < _BLOCK:
        return None
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    with mm:
        index = _index(mm)
    if index is None:
        return None
    out: list[tuple[str, list]] = []
    for name, start, n in index:  # consecutive members sharing a key form a sample (webdataset's rule)
        key, suffix = base_plus_ext(name)
        if key is None:
            continue
        if not out or out[-1][0] != key:
            out.append((key, []))
        out[-1][1].append((suffix.lower(), start, n))
    return tuple((k, tuple(m)) for k, m in out)


def shard_entries(path: str) -> tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...] | None:
    """The samples of a plain ustar shard as ``(key, ((suffix, offset, size), ...))``, indexed once per
    process (cached by path, size and mtime); None when the shard needs webdataset's ``tarfile`` reader,
    which is also how a shard at a URL (``s3://`` ...) is read: streamed, see ``_gopen_fsspec``."""
    if "://" in path:
        return None
    st = os.stat(path)
    return _entries(path, st.st_size, st.st_mtime_ns)


def open_sample(path: str, key: str, members: tuple[tuple[str, int, int], ...]) -> dict:
    """One sample of ``shard_entries`` as webdataset shapes it: ``__key__`` and ``Member`` values."""
    view = memoryview(_map(path))
    return {
        "__key__": key,
        "__url__": path,
        **{sfx: Member(path, o, view[o : o + n]) for sfx, o, n in members},
    }


def tar_samples(urls: list[str]) -> Iterator[dict]:
    """Samples (``__key__``, ``eeg.npy``, ``meta.json`` ...) of the shards in order, as
    ``webdataset.tarfile_samples`` groups them; values are ``Member`` records (or bytes for shards read
    through ``tarfile``); ``bytes(value)`` gives the content either way."""
    for url in urls:
        entries = shard_entries(url)
        if entries is None:
            yield from wds.tarfile_samples(iter([{"url": url}]))
        else:
            for key, members in entries:
                yield open_sample(url, key, members)


#: URL schemes whose shards webdataset opens through fsspec (``_gopen_fsspec``); webdataset's own handlers
#: for ``gs`` shell out to ``gsutil``, and it has none for ``s3``.
FSSPEC_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")


def _gopen_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **kw):
    """webdataset ``gopen`` handler: open ``url`` with fsspec (streamed reads; credentials and endpoints from
    fsspec's configuration, e.g. ``FSSPEC_S3_ENDPOINT_URL``)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return fs.open(path, mode, block_size=max(bufsize, 1 << 22))


for _scheme in FSSPEC_SCHEMES:  # WebDataset's documented extension point for URL schemes
    gopen_schemes[_scheme] = _gopen_fsspec


@lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[str, tuple[int, ...], bool]:
    d = ast.literal_eval(header.decode("latin1"))
    return str(d["descr"]), tuple(d["shape"]), bool(d["fortran_order"])


def _npy_layout(data) -> tuple[str, tuple[int, ...], int] | None:
    """(dtype, shape, data offset) of C-ordered plain-dtype .npy bytes (format 1.0/2.0), else None."""
    if bytes(data[:6]) != b"\x93NUMPY" or data[6] not in (1, 2):
        return None
    n, off = (2, 10) if data[6] == 1 else (4, 12)
    hl = int.from_bytes(bytes(data[8 : 8 + n]), "little")
    descr, shape, fortran = _npy_header(bytes(data[off : off + hl]))
    if fortran or np.dtype(descr).hasobject:
        return None
    return descr, shape, off + hl


def load_npy(data) -> np.ndarray:
    """``np.load(io.BytesIO(data), allow_pickle=False)`` with the header parsed once per distinct header;
    a read-only view of ``data`` for C-ordered arrays, ``np.load`` (which refuses pickles) otherwise."""
    data = data.view if isinstance(data, Member) else data
    layout = _npy_layout(data)
    if layout is None:
        return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    descr, shape, off = layout
    return np.frombuffer(data, dtype=descr, count=int(np.prod(shape)), offset=off).reshape(shape)


def eeg_ref(value) -> tuple[str, int, str, tuple[int, ...]] | np.ndarray:
    """What a worker sends for an ``eeg.npy`` member: ``(path, offset, dtype, shape)`` when it lies in a
    mapped shard as a C-ordered array, else the decoded array itself."""
    if isinstance(value, Member):
        layout = _npy_layout(value.view)
        if layout is not None:
            descr, shape, off = layout
            return value.path, value.offset + off, descr, shape
    return np.array(load_npy(value))


def read_ref(ref: tuple[str, int, str, tuple[int, ...]] | np.ndarray) -> np.ndarray:
    """The array behind an ``eeg_ref`` (a read-only view into a cached map of the shard; copy it before the
    next ``_MAX_MAPS`` distinct shards are read)."""
    if isinstance(ref, np.ndarray):
        return ref
    path, offset, descr, shape = ref
    return np.frombuffer(_map(path), dtype=descr, count=int(np.prod(shape)), offset=offset).reshape(shape)
