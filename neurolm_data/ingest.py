"""The ingest run: discover a corpus, preprocess every recording in a process pool, store, ledger, resume.

``neurolm-data ingest SOURCE ROOT --out OUT`` calls ``run_ingest``. The work for one recording,
``ingest_one(ref, config, root, out)``, depends only on the recording and the typed ``IngestConfig``: it reads,
maps channels, preprocesses, and writes ``OUT/recordings/<id>.npy`` then the sidecar ``<id>.json`` (its manifest
and ledger rows), both atomically. The parent gathers the sidecars and writes ``OUT/recordings.parquet`` and
``OUT/ledger.parquet`` sorted, with fixed writer options, so the manifests are byte-identical whatever the
worker count (the ledger's ``seconds`` column is timing and is the only exception).

Resume: a recording whose array and ``done`` sidecar exist with the current config hash is not redone. A killed
run loses nothing that finished: the sidecars are the record, the Parquet manifests are derived from them.
An OUT that holds another config is refused (``ConfigMismatchError``) unless ``force=True``.

Bad input never ends the run: every exception from one recording becomes a ``failed`` ledger row whose reason
names the file. A recording whose annotations have per-event problems is ``done`` with those problems in the
ledger's ``warnings`` column (the bad events give no windows). A pool worker that dies (a crash in a reader, out
of memory) costs only the file it was reading: the pool is rebuilt, the files in flight are retried alone, and
one whose worker dies again is ``failed`` with the reason "its worker died". OUT is locked while a run writes it
(``neurolm_data.lock``): a second ingest into the same OUT is refused, naming the first.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurolm_data.channels import map_channels
from neurolm_data.executors import WorkerDied, check_executor, ray_map
from neurolm_data.lock import output_lock
from neurolm_data.preprocess import PreprocessConfig, check_min_duration, config_hash, preprocess
from neurolm_data.remote import fetch_input, mirrored
from neurolm_data.sources.base import RecordingError, RecordingRef, canonical_source, get_source
from neurolm_data.store import (
    RECORDINGS_DIR,
    array_hash,
    array_path,
    sidecar_path,
    write_json_atomic,
    write_npy_atomic,
    write_parquet_atomic,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: Version of the ingest outputs' schema and semantics; part of the config hash (bump on any change to what
#: ``ingest_one`` writes). 2: ``signal_hash`` of a recording read as integer samples hashes the samples and their
#: calibration (docs/architecture.md). 3: ``signal_hash`` and ``data_hash`` are XXH3-128 (``store.content_hash``),
#: not sha256.
SCHEMA_VERSION = 3

CONFIG_FILE = "ingest_config.json"
RECORDINGS_MANIFEST = "recordings.parquet"
LEDGER_MANIFEST = "ledger.parquet"

#: ``OUT/recordings.parquet`` columns and their Arrow types (docs/architecture.md), see ``manifest_schemas``.
RECORDINGS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("recording_id", "string"),
    ("source", "string"),
    ("subject", "string"),
    ("session", "string"),
    ("run", "string"),
    ("label", "int64"),
    ("official_split", "string"),
    ("path", "string"),
    ("store_path", "string"),
    ("sfreq", "float64"),
    ("n_samples", "int64"),
    ("duration_s", "float64"),
    ("channels", "list<string>"),
    ("channel_indices", "list<int32>"),
    ("montage", "string"),
    ("dropped_channels", "string"),
    ("events", "string"),
    ("extra", "string"),
    ("signal_hash", "string"),
    ("data_hash", "string"),
    ("config_hash", "string"),
)

#: ``OUT/ledger.parquet`` columns (docs/architecture.md): one row per input file.
LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "string"),
    ("recording_id", "string"),
    ("status", "string"),
    ("reason", "string"),
    ("seconds", "float64"),
    ("config_hash", "string"),
    ("warnings", "list<string>"),
)


def manifest_schemas() -> tuple[pa.Schema, pa.Schema]:
    """The Arrow schemas of ``recordings.parquet`` and ``ledger.parquet`` (built on first use, so that importing
    this module, e.g. in a pool worker, does not import pyarrow)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "float64": pa.float64(),
        "list<string>": pa.list_(pa.string()),
        "list<int32>": pa.list_(pa.int32()),
    }
    return (
        pa.schema([(k, types[t]) for k, t in RECORDINGS_COLUMNS]),
        pa.schema([(k, types[t]) for k, t in LEDGER_COLUMNS]),
    )


class ConfigMismatchError(RuntimeError):
    """OUT already holds an ingest made with another config; pass ``force=True`` or choose another OUT."""


@dataclass(frozen=True)
class IngestConfig:
    """Everything that determines ingest outputs (saved to ``OUT/ingest_config.json``, hashed per row).

    Attributes:
        source: registered source name.
        source_options: source options, values as strings (the CLI's ``--option KEY=VALUE``), sorted.
        preprocess: the preprocessing config, ``notch_hz`` resolved to the source's mains frequency.
        min_duration_s: shorter recordings fail (one window of the source's task, ``Source.min_duration_s``).
        schema_version: ``SCHEMA_VERSION`` of the code that wrote the outputs.
    """

    source: str
    source_options: dict[str, str]
    preprocess: PreprocessConfig
    min_duration_s: float
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested preprocessing config)."""
        return {
            "source": self.source,
            "source_options": dict(sorted(self.source_options.items())),
            "preprocess": self.preprocess.to_dict(),
            "min_duration_s": float(self.min_duration_s),
            "schema_version": self.schema_version,
        }

    @property
    def hash(self) -> str:
        """16-hex-digit sha256 of the canonical JSON of ``to_dict()``."""
        return config_hash(self.to_dict())


def build_config(
    source: str,
    source_options: dict[str, Any] | None = None,
    *,
    preprocess_config: PreprocessConfig | None = None,
    engine: str | None = None,
    min_duration_s: float | None = None,
) -> IngestConfig:
    """Build the typed config: instantiate the source (validates its options), resolve the notch to its mains.

    Raises:
        KeyError: unknown source. ValueError: invalid source option or preprocessing setting.
    """
    options = {str(k): str(v) for k, v in sorted((source_options or {}).items())}
    source = canonical_source(source)  # an alias (eegmat) records the registered name (workload)
    src = get_source(source, **options)
    pp = preprocess_config or PreprocessConfig()
    if engine is not None:
        pp = replace(pp, engine=engine)
    pp = pp.resolved(src.mains_hz)
    min_dur = float(src.min_duration_s if min_duration_s is None else min_duration_s)
    return IngestConfig(source=source, source_options=options, preprocess=pp, min_duration_s=min_dur)


@dataclass
class IngestSummary:
    """What one ``run_ingest`` call did.

    Attributes:
        out: the output folder. config_hash: ``IngestConfig.hash``.
        n_files: ledger rows (input files). n_done: recordings stored (this run or before).
        n_processed: recordings processed by this run (done or failed). n_reused: done recordings found
            finished on disk and not redone. n_failed / n_skipped: ledger rows with that status.
        eeg_seconds: seconds of EEG (input duration) processed by this run; wall_seconds: run time.
        worker_cpu_seconds: CPU time (user + system) of the processes that did the per-recording work
            (this process for ``workers=1``, else the pool workers, including their start-up).
        worker_peak_rss_mb: largest peak resident set size among those processes, MiB.
        failures: ``(path, reason)`` of the failed files, sorted by path.
    """

    out: Path
    config_hash: str
    n_files: int = 0
    n_done: int = 0
    n_processed: int = 0
    n_reused: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    eeg_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker_cpu_seconds: float = 0.0
    worker_peak_rss_mb: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Alias of ``n_failed``."""
        return self.n_failed

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return self.n_failed == 0

    def line(self) -> str:
        """One-line human summary."""
        return (
            f"{self.n_done} recordings ingested ({self.n_processed} processed now, {self.n_reused} already "
            f"done), {self.n_failed} failed, {self.n_skipped} skipped; {self.eeg_seconds / 3600:.2f} h of "
            f"EEG in {self.wall_seconds:.1f} s -> {self.out}"
        )


# ------------------------------------------------------------------------------------- per-recording work

_SOURCES: dict[tuple[str, str], Any] = {}

#: Start method of the worker pool (see ``run_ingest``).
DEFAULT_MP_CONTEXT = "fork" if sys.platform.startswith("linux") else "spawn"

#: Modules the forkserver imports once, so that pool workers start without importing them again (what
#: ``ingest_one`` uses on EDF input; MNE, scipy.signal, pyarrow, polars and rich are not needed there).
_PRELOAD = ["neurolm_data.ingest", "neurolm_data.sources", "neurolm_data.readers", "pyedflib", "scipy.fft"]

#: glibc ``mallopt`` parameters (malloc.h) and the values set while recordings are processed (see
#: ``_heap_for_large_buffers``); the defaults restored after an in-process run are glibc's initial ones.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_THRESHOLD = 1 << 28  # 256 MiB
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def _mallopt(trim: int, mmap: int) -> bool:
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to tune
        return False


def _heap_for_large_buffers() -> bool:
    """Let glibc serve blocks up to 256 MiB from its heap and keep freed ones for the next recording.

    By default glibc ``mmap``s every block above its mmap threshold (dynamic, at most 32 MiB) and unmaps it on
    ``free``, and trims freed memory off the heap top; each recording's FFT buffers (tens of MiB, allocated by
    numpy and pocketfft) then arrive as fresh pages that the kernel zero-fills on first touch. On EEGMAT that
    page-fault work was ~40 % of the preprocessing CPU (measured with and without this setting). With the heap
    kept, peak RSS stays what one recording needs (the buffers are reused, not accumulated). Called in each pool
    worker (initializer) and around an in-process run. Returns False where there is no glibc ``mallopt``.
    """
    return _mallopt(_HEAP_THRESHOLD, _HEAP_THRESHOLD)


#: Environment defaults for pool workers that import numpy themselves (``spawn``, ``forkserver``): ingest makes
#: no BLAS call, and OpenBLAS starts a thread pool at import that spins on the other cores for a while (measured
#: ~0.05-0.07 CPU-s per process). A forked worker shares the parent's imported numpy and starts no pool.
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1"}


@contextmanager
def _worker_environment(mp_context: str) -> Iterator[None]:
    """While pool workers start: ``_WORKER_ENV`` as defaults (a value the user set wins) in the environment
    that ``spawn`` / ``forkserver`` children inherit; this process's environment is restored afterwards."""
    added = [] if mp_context == "fork" else [k for k in _WORKER_ENV if k not in os.environ]
    for k in added:
        os.environ[k] = _WORKER_ENV[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _worker_init() -> None:
    """Pool-worker initializer."""
    _heap_for_large_buffers()


def _source(config: IngestConfig):
    key = (config.source, json.dumps(config.source_options, sort_keys=True))
    if key not in _SOURCES:
        _SOURCES[key] = get_source(config.source, **config.source_options)
    return _SOURCES[key]


@lru_cache(maxsize=16)
def _resolved_root(root: str) -> str:
    """``realpath(root)``, once per run (``run_ingest`` clears the cache; pool workers are forked per run)."""
    return os.path.realpath(root)


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(os.path.realpath(path)).relative_to(_resolved_root(str(root))).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _process_usage() -> tuple[int, float, float]:
    """(pid, CPU seconds, peak RSS MiB) of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return os.getpid(), ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def ingest_one(ref: RecordingRef, config: IngestConfig, root: str | Path, out: str | Path) -> dict[str, Any]:
    """Ingest one recording: read, map channels, check duration, preprocess, store. Never raises for bad input.

    Writes ``OUT/recordings/<id>.npy`` (float32 (n_channels, n_samples) µV at ``config.preprocess.sfreq``) and
    then ``OUT/recordings/<id>.json`` (the sidecar), both atomically. A failure writes a sidecar with status
    ``failed`` and no array.

    Returns:
        The sidecar dict: ``{"ledger": ledger row, "recording": manifest row or None, "input_seconds": float,
        "usage": [pid, cpu_s, peak_rss_mb]}``.
    """
    t0 = time.perf_counter()
    root, out = Path(root), Path(out)
    rid = ref.recording_id
    rel = _rel(ref.path, root)
    recording = None
    input_seconds = 0.0
    warnings: list[str] = []
    try:
        source = _source(config)
        sig = source.read(ref)
        keep = list(source.channels) if source.channels is not None else None
        cmap = map_channels(sig.ch_names, keep=keep)
        if not cmap.picks:
            raise RecordingError(ref.path, f"no usable EEG channel (dropped: {sig.dropped + cmap.dropped})")
        input_seconds = sig.n_samples / sig.sfreq
        check_min_duration(sig.n_samples, sig.sfreq, config.min_duration_s, ref.path)
        all_rows = cmap.picks == list(range(sig.n_channels))
        if sig.digital is not None:  # integer samples: hashed and preprocessed without a float64 copy
            data = sig.digital if all_rows else sig.digital.take(cmap.picks)
            signal_hash = data.content_hash()
        else:
            data = sig.data if all_rows else sig.data[cmap.picks]
            data = np.ascontiguousarray(data, dtype=np.float64)
            signal_hash = array_hash(data)
        try:
            x = preprocess(data, sig.sfreq, config.preprocess)
        except ValueError as e:
            raise RecordingError(ref.path, str(e)) from None
        del data
        write_npy_atomic(array_path(out, rid), x)
        extra = dict(ref.extra)
        if sig.meta:
            extra["reader"] = sig.meta
        sfreq = float(config.preprocess.sfreq)
        recording = {
            "recording_id": rid,
            "source": ref.source,
            "subject": ref.subject,
            "session": ref.session,
            "run": ref.run,
            "label": ref.label,
            "official_split": ref.official_split,
            "path": rel,
            "store_path": f"{RECORDINGS_DIR}/{rid}.npy",
            "sfreq": sfreq,
            "n_samples": int(x.shape[1]),
            "duration_s": x.shape[1] / sfreq,
            "channels": list(cmap.names),
            "channel_indices": [int(i) for i in cmap.indices],
            "montage": cmap.montage,
            "dropped_channels": json.dumps([list(d) for d in sig.dropped + cmap.dropped], ensure_ascii=False),
            "events": json.dumps(
                [[e.onset_s, e.duration_s, e.label, e.description] for e in sig.events], ensure_ascii=False
            ),
            "extra": json.dumps(extra, sort_keys=True, ensure_ascii=False),
            "signal_hash": signal_hash,
            "data_hash": array_hash(x),
            "config_hash": config.hash,
        }
        warnings = [str(w) for w in getattr(sig, "warnings", [])]
        status, reason = "done", ""
    except RecordingError as e:
        status, reason = "failed", f"{rel}: {e.reason}"
    except Exception as e:  # noqa: BLE001 - bad input must never end the run; the reason names the file
        status, reason = "failed", f"{rel}: {type(e).__name__}: {e}"
    record = {
        "ledger": {
            "path": rel,
            "recording_id": rid,
            "status": status,
            "reason": reason,
            "seconds": round(time.perf_counter() - t0, 6),
            "config_hash": config.hash,
            "warnings": warnings,
        },
        "recording": recording,
        "input_seconds": input_seconds,
    }
    write_json_atomic(sidecar_path(out, rid), record)
    record["usage"] = list(_process_usage())
    return record


def _inflight_path(out: Path, rid: str) -> Path:
    """``OUT/recordings/.<id>.inflight``: exists while a pool worker processes the recording."""
    return Path(out) / RECORDINGS_DIR / f".{rid}.inflight"


def _ingest_tracked(ref: RecordingRef, config: IngestConfig, root: str, out: str) -> dict[str, Any]:
    """``ingest_one`` in a pool worker or Ray task, with an in-flight marker (holding the worker's pid) while it
    runs: when a worker dies, the markers left behind name the files it was processing (``run_ingest`` retries
    those alone)."""
    marker = _inflight_path(Path(out), ref.recording_id)
    marker.write_text(str(os.getpid()))
    try:
        return ingest_one(ref, config, root, out)
    finally:
        marker.unlink(missing_ok=True)


def _finished(out: Path, ref: RecordingRef, rel: str, chash: str) -> dict | None:
    """The sidecar of a recording finished with this config (array present and of the recorded shape)."""
    sc = sidecar_path(out, ref.recording_id)
    try:
        record = json.loads(sc.read_text("utf-8"))
        led, rec = record["ledger"], record["recording"]
        if led["status"] != "done" or led["config_hash"] != chash or rec is None or led["path"] != rel:
            return None
        arr = np.load(array_path(out, ref.recording_id), mmap_mode="r", allow_pickle=False)
        if arr.shape != (len(rec["channels"]), rec["n_samples"]) or arr.dtype != np.float32:
            return None
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------- the run


def _prepare_out(out: Path, config: IngestConfig, force: bool) -> None:
    cfg_path = out / CONFIG_FILE
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text("utf-8"))
            old_hash = old.get("config_hash")
        except (OSError, ValueError):
            old, old_hash = {}, None
        if old_hash != config.hash:
            if not force:
                diff = sorted(
                    k for k in config.to_dict() if old.get("config", {}).get(k) != config.to_dict()[k]
                )
                raise ConfigMismatchError(
                    f"{out} holds an ingest made with config {old_hash} (differs in {diff or 'unknown'}); "
                    f"this run's config is {config.hash}. Pass --force to redo everything with the new config, "
                    "or choose a new --out."
                )
    if force:
        rec_dir = out / RECORDINGS_DIR
        if rec_dir.is_dir():
            for p in rec_dir.iterdir():
                if p.suffix in {".npy", ".json", ".tmp"} and p.is_file():
                    p.unlink()
        for name in (RECORDINGS_MANIFEST, LEDGER_MANIFEST):
            (out / name).unlink(missing_ok=True)
    (out / RECORDINGS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, {"config": config.to_dict(), "config_hash": config.hash})


def write_manifests(out: str | Path, records: list[dict], skipped_rows: list[dict]) -> None:
    """Write ``recordings.parquet`` (done rows, sorted by ``recording_id``) and ``ledger.parquet`` (all input
    files, sorted by ``path``) from sidecar records, atomically, with the fixed Parquet options."""
    out = Path(out)
    recs = sorted(
        (r["recording"] for r in records if r["ledger"]["status"] == "done"), key=lambda r: r["recording_id"]
    )
    led = sorted(
        ({"warnings": [], **r["ledger"]} for r in [*records, *({"ledger": x} for x in skipped_rows)]),
        key=lambda r: (r["path"], r["recording_id"] or ""),
    )
    import pyarrow as pa

    rec_schema, led_schema = manifest_schemas()
    write_parquet_atomic(out / RECORDINGS_MANIFEST, pa.Table.from_pylist(recs, schema=rec_schema))
    write_parquet_atomic(out / LEDGER_MANIFEST, pa.Table.from_pylist(led, schema=led_schema))


class _NoProgress:
    """Stands in for the rich progress display when it is off (rich is then never imported)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *args: object, **kwargs: object) -> None:
        return None


def _progress(enabled: bool, total: int):
    if not enabled:
        return _NoProgress(), None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[hours]:.2f} h EEG"),
        TextColumn("{task.fields[rate]:.3f} h/s"),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    task = prog.add_task("ingest", total=total, hours=0.0, rate=0.0, failed=0)
    return prog, task


def run_ingest(
    source_name: str,
    root: str | Path,
    out: str | Path,
    workers: int = 1,
    force: bool = False,
    *,
    engine: str | None = None,
    source_options: dict[str, Any] | None = None,
    preprocess_config: PreprocessConfig | None = None,
    min_duration_s: float | None = None,
    progress: bool = False,
    mp_context: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> IngestSummary:
    """Ingest every recording of a corpus into ``out`` (see the module docstring and docs/architecture.md).

    Args:
        source_name: registered source (``workload``, ``edf``, ``tueg``, ...).
        root: the corpus folder in its native layout, or an fsspec URL of one (downloaded into the cache once).
        out: output folder (created), or an fsspec URL (``s3://...``): the run works on a local mirror that is
            synced down before and uploaded after it (``neurolm_data.remote``).
        workers: processes; 1 runs in this process, N > 1 uses a ``ProcessPoolExecutor`` of N workers.
        force: redo everything, replacing outputs made with another config.
        engine: ``fast`` or ``mne`` (overrides ``preprocess_config.engine``).
        source_options: source options (strings or values, e.g. ``{"notch_hz": 50}``).
        preprocess_config: preprocessing config (default ``PreprocessConfig()``; notch resolved to the source).
        min_duration_s: shortest usable recording, s (default: the source's one-window minimum).
        progress: show a rich progress bar (files, hours of EEG, hours/s).
        mp_context: multiprocessing start method for the pool. Default ``DEFAULT_MP_CONTEXT``: ``fork`` on
            Linux (workers share the already imported pipeline; they are forked before any thread of the
            progress display exists), else ``spawn``. ``forkserver`` and ``spawn`` work as well: the
            per-recording function and its arguments are picklable top-level objects (tested).
        executor: ``local`` (this process or the process pool above) or ``ray``: one Ray task per recording on
            the cluster at ``ray_address`` / ``RAY_ADDRESS`` (``neurolm_data.executors``); ``workers`` is then
            unused (the cluster's CPUs decide). Same outputs, resume and ledger; a task whose worker dies is
            retried once by Ray, then ``failed`` with the reason "its worker died".
        ray_address: Ray cluster address for ``executor="ray"``.

    Returns:
        An ``IngestSummary``; ``summary.ok`` is False when any file failed.

    Raises:
        ConfigMismatchError: ``out`` holds outputs of another config and ``force`` is False.
        OutputLockedError: another process is writing ``out`` (``neurolm_data.lock``).
        FileNotFoundError: ``root`` holds no recording of this layout. KeyError / ValueError: bad source or
            option.
    """
    t_start = time.perf_counter()
    _resolved_root.cache_clear()
    mp_context = mp_context or DEFAULT_MP_CONTEXT
    check_executor(executor)
    root = fetch_input(root)
    config = build_config(
        source_name,
        source_options,
        preprocess_config=preprocess_config,
        engine=engine,
        min_duration_s=min_duration_s,
    )
    source = get_source(source_name, **config.source_options)
    refs = source.discover(root)
    skipped = source.skipped(root)
    with mirrored(out) as out:
        out.mkdir(parents=True, exist_ok=True)
        with output_lock(out, f"neurolm-data ingest {source_name}"):
            return _run_locked(
                source_name,
                source,
                refs,
                skipped,
                root,
                out,
                workers,
                force,
                config,
                progress,
                mp_context,
                t_start,
                executor,
                ray_address,
            )


def _run_locked(
    source_name: str,
    source: Any,
    refs: list[RecordingRef],
    skipped: list,
    root: Path,
    out: Path,
    workers: int,
    force: bool,
    config: IngestConfig,
    progress: bool,
    mp_context: str,
    t_start: float,
    executor: str = "local",
    ray_address: str | None = None,
) -> IngestSummary:
    """The body of ``run_ingest`` once ``out`` is locked."""
    chash = config.hash
    _prepare_out(out, config, force)

    by_id: dict[str, list[RecordingRef]] = defaultdict(list)
    for ref in refs:
        by_id[ref.recording_id].append(ref)
    records: list[dict] = []
    todo: list[RecordingRef] = []
    summary = IngestSummary(out=out, config_hash=chash)
    for rid, group in sorted(by_id.items()):
        if len(group) > 1:  # two files would write the same array: fail them all, naming each other
            names = [_rel(r.path, root) for r in group]
            for r in group:
                records.append(
                    {
                        "ledger": {
                            "path": _rel(r.path, root),
                            "recording_id": rid,
                            "status": "failed",
                            "reason": f"{_rel(r.path, root)}: recording id {rid!r} is shared by {names}",
                            "seconds": 0.0,
                            "config_hash": chash,
                        },
                        "recording": None,
                    }
                )
            continue
        ref = group[0]
        done = _finished(out, ref, _rel(ref.path, root), chash)
        if done is not None:
            records.append(done)
            summary.n_reused += 1
        else:
            todo.append(ref)
    skipped_rows = [
        {
            "path": _rel(p, root),
            "recording_id": None,
            "status": "skipped",
            "reason": why,
            "seconds": 0.0,
            "config_hash": chash,
        }
        for p, why in skipped
    ]

    usage: dict[int, tuple[float, float]] = {}
    prog, task = _progress(progress, len(todo))
    failed = [sum(r["ledger"]["status"] == "failed" for r in records)]  # running count (no rescan per file)

    def collect(rec: dict) -> None:
        records.append(rec)
        summary.n_processed += 1
        summary.eeg_seconds += rec.get("input_seconds", 0.0)
        pid, cpu, rss = rec.pop("usage", (0, 0.0, 0.0))
        usage[pid] = (max(cpu, usage.get(pid, (0.0, 0.0))[0]), max(rss, usage.get(pid, (0.0, 0.0))[1]))
        failed[0] += rec["ledger"]["status"] == "failed"
        hours = summary.eeg_seconds / 3600
        prog.update(
            task,
            advance=1,
            hours=hours,
            failed=failed[0],
            rate=hours / max(time.perf_counter() - t_start, 1e-9),
        )

    pool = None
    futures: dict[Future, RecordingRef] = {}
    use_pool = workers > 1 and len(todo) > 1 and executor == "local"
    ctx = multiprocessing.get_context(mp_context)
    if use_pool and mp_context == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    # Left by a killed run (we hold OUT's lock, so no live writer owns them): in-flight markers, and the temporary
    # files of writes that never reached their rename (store.atomic_path names them ``.<name>.<random>.tmp``).
    for stale in [*(out / RECORDINGS_DIR).glob(".*.inflight"), *(out / RECORDINGS_DIR).glob(".*.tmp")]:
        stale.unlink(missing_ok=True)

    def start_pool(
        n: int, refs: list[RecordingRef]
    ) -> tuple[ProcessPoolExecutor, dict[Future, RecordingRef]]:
        # Submitting starts the workers; with "fork" the first pool's are all forked here, before the progress
        # display starts its refresh thread, so no thread of ours is forked then. (A pool rebuilt after a
        # worker died is forked while that thread runs: it only touches the terminal, never a lock we use.)
        with _worker_environment(mp_context):
            ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init)
            return ex, {ex.submit(_ingest_tracked, r, config, str(root), str(out)): r for r in refs}

    def died(ref: RecordingRef) -> dict:
        rel = _rel(ref.path, root)
        return {
            "ledger": {
                "path": rel,
                "recording_id": ref.recording_id,
                "status": "failed",
                "config_hash": chash,
                "seconds": 0.0,
                "warnings": [],
                "reason": f"{rel}: its worker died while reading it, twice (the second time alone in "
                "a fresh worker): a crash in a reader or out of memory on this file",
            },
            "recording": None,
        }

    if use_pool:
        pool, futures = start_pool(workers, todo)
        manifest_schemas()  # imports pyarrow while the workers run, not after them (the manifests need it)
    with prog:
        if executor == "ray" and todo:
            args = [(r, config, str(root), str(out)) for r in todo]
            for i, rec in ray_map(_ingest_tracked, args, address=ray_address):
                if isinstance(rec, WorkerDied):  # Ray already re-ran it once in a fresh worker
                    _inflight_path(out, todo[i].recording_id).unlink(missing_ok=True)
                    err, rec = rec, died(todo[i])
                    rec["ledger"]["reason"] = (
                        f"{rec['ledger']['path']}: its worker died while reading it, "
                        f"also when Ray retried it ({err}): a crash in a reader or out of "
                        "memory on this file"
                    )
                collect(rec)
        elif pool is None:
            cpu0 = _process_usage()[1]
            tuned = bool(todo) and _heap_for_large_buffers()
            try:
                for ref in todo:
                    collect(ingest_one(ref, config, root, out))
            finally:
                if tuned:  # glibc's initial thresholds, and the kept heap back to the system
                    _mallopt(_GLIBC_DEFAULT_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
                    ctypes.CDLL(None).malloc_trim(0)
            if todo:
                pid, cpu, rss = _process_usage()
                usage = {pid: (cpu - cpu0, rss)}
        else:
            alone: list[RecordingRef] = []  # files in flight when a worker died: each retried alone
            while futures:
                broken: list[RecordingRef] = []
                with pool:
                    pending = set(futures)
                    while pending:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            try:
                                collect(fut.result())
                            except BrokenProcessPool:  # a worker died: every unfinished future fails with it
                                broken.append(futures[fut])
                if not broken:
                    break
                # the files whose in-flight marker survived were being read when the worker died
                inflight = [r for r in broken if _inflight_path(out, r.recording_id).exists()] or broken
                for r in inflight:
                    _inflight_path(out, r.recording_id).unlink(missing_ok=True)
                alone += inflight
                rest = [r for r in broken if r not in inflight]
                pool, futures = start_pool(workers, rest) if rest else (None, {})
            for ref in sorted(alone, key=lambda r: r.recording_id):
                single, fut = start_pool(1, [ref])
                with single:
                    try:
                        collect(next(iter(fut)).result())
                    except BrokenProcessPool:
                        _inflight_path(out, ref.recording_id).unlink(missing_ok=True)
                        collect(died(ref))

    write_manifests(out, records, skipped_rows)
    summary.n_files = len(records) + len(skipped_rows)
    summary.n_done = sum(r["ledger"]["status"] == "done" for r in records)
    summary.n_failed = sum(r["ledger"]["status"] == "failed" for r in records)
    summary.n_skipped = len(skipped_rows)
    summary.failures = sorted(
        (r["ledger"]["path"], r["ledger"]["reason"]) for r in records if r["ledger"]["status"] == "failed"
    )
    summary.worker_cpu_seconds = sum(c for c, _ in usage.values())
    summary.worker_peak_rss_mb = max((m for _, m in usage.values()), default=0.0)
    summary.wall_seconds = time.perf_counter() - t_start
    return summary
