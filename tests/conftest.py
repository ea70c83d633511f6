"""Shared test fixtures.

Real recordings come from ``../shared/eeg-samples`` beside the checkout (CI has it there); set
``NEUROLM_SHARED`` to point elsewhere. Fixtures built from them live in ``tmp_path`` and are never committed.
Helpers that build corpus layouts live in ``tests/fixtures_*.py``; session-scoped pipeline fixtures
(ingested and sharded EEGMAT) are appended below so that every test module reuses one ingest.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROLM_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder beside the checkout. Fails (does not skip) when it is missing."""
    if not (SHARED / "eeg-samples").is_dir():
        pytest.fail(
            f"{SHARED}/eeg-samples not found: put ../shared beside the checkout or set NEUROLM_SHARED"
        )
    return SHARED


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    return shared_dir / "eeg-samples"


@pytest.fixture(scope="session")
def eegmat_dir(samples_dir: Path) -> Path:
    """The complete PhysioNet EEGMAT release (72 EDF files)."""
    return samples_dir / "eegmat"


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(shared_dir: Path) -> Path:
    """GPT-2 BPE files (``vocab.bpe``, ``encoder.json``) for offline tiktoken."""
    return shared_dir / "gpt2-tokenizer"


# ---------------------------------------------------------------- pipeline fixtures (data-split-shard)
# Built once per session on real files; reuse them read-only (copy into tmp_path before modifying anything).


@pytest.fixture(scope="session")
def workload_out(eegmat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of the full Workload pipeline on the complete EEGMAT release (72 EDF files), built once per session.

    ``run_ingest("workload", eegmat_dir, OUT, workers=2)`` (fast engine), ``run_split(OUT, "workload")``,
    ``run_shard(OUT, "workload")`` with the default 256-MiB shard bound. Holds ``recordings.parquet``,
    ``recordings/*.npy``, ``ledger.parquet``, ``splits.parquet`` and ``shards/workload/{train,val,test}/*.tar``
    + ``windows.parquet`` + ``shards.json``: 2,088 windows of 19 x 800 µV, 1,508 / 290 / 290, labels 0/1.
    Read-only: tests that modify anything work on a copy.
    """
    from fixtures_pipeline import run_pipeline

    out = tmp_path_factory.mktemp("workload") / "out"
    return run_pipeline("workload", eegmat_dir, out, task="workload", protocol="workload", workers=2)


@pytest.fixture(scope="session")
def pretrain_out(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of an unlabeled ``edf`` ingest of four real files + ``pretrain`` shards, built once per session.

    Files (``tests/fixtures_pipeline.PRETRAIN_FILES``): EEGMAT Subject03_1, Subject07_2, Subject11_1 and the
    Nihon Kohden MB0400FU.EDF (29 s: shorter than one window, listed as skipped in ``shards.json``). Protocol
    ``pretrain`` (hash 95/5): Subject03_1 lands in ``val``, the rest in ``train``. Windows are
    ``min(⌊1024 / C⌋, 64)`` s of every stored channel, ``label`` null. Read-only, like ``workload_out``.
    """
    from fixtures_pipeline import copy_pretrain_files, run_pipeline

    base = tmp_path_factory.mktemp("pretrain")
    root = copy_pretrain_files(samples_dir, base / "root")
    return run_pipeline("edf", root, base / "out", task="pretrain", protocol="pretrain", workers=2)
