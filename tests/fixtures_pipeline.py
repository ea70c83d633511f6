"""End-to-end pipeline helpers for tests: ingest -> split -> shard on real files, into a caller's folder.

Used by the session fixtures ``workload_out`` and ``pretrain_out`` in ``conftest.py`` and by the determinism
test in ``test_pipeline_workload.py``. Everything is written under pytest temporary folders; nothing generated
here is ever committed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_data.split import run_split

#: Real files for the small unlabeled ``edf`` ingest behind ``pretrain_out`` (paths under eeg-samples).
#: The ``edf`` source takes the file stem as the subject; under ``manifests/protocols/pretrain.toml`` (salt
#: ``neurolm-pretrain-v1``) Subject03_1 hashes into ``val`` (bucket 0.974 >= 0.95) and the others into
#: ``train``, so both splits are non-empty. MB0400FU.EDF (Nihon Kohden, EDF+D, 29 s) is shorter than one
#: pretrain window of its channel count and must be listed as skipped.
PRETRAIN_FILES: tuple[str, ...] = (
    "eegmat/Subject03_1.edf",
    "eegmat/Subject07_2.edf",
    "eegmat/Subject11_1.edf",
    "nihon-kohden/MB0400FU.EDF",
)


def run_pipeline(source: str, root: Path, out: Path, *, task: str, protocol: str, workers: int) -> Path:
    """``run_ingest(source, root, out, workers)``, ``run_split(out, protocol)``, ``run_shard(out, task)``.

    Uses the ingest defaults (``fast`` preprocessing engine, the source's default options). Raises
    AssertionError when ingest reports a failed recording (the inputs here are all good files).
    """
    summary = run_ingest(source, root, out, workers=workers)
    assert summary.n_failed == 0, f"ingest of {root} failed: {summary.failures}"
    run_split(out, protocol)
    run_shard(out, task)
    return out


def copy_pretrain_files(samples_dir: Path, dst: Path) -> Path:
    """Copy ``PRETRAIN_FILES`` from ``samples_dir`` (``../shared/eeg-samples``) flat into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for rel in PRETRAIN_FILES:
        shutil.copy(samples_dir / rel, dst / Path(rel).name)
    return dst
