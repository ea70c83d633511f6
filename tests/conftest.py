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
        pytest.fail(f"{SHARED}/eeg-samples not found: put ../shared beside the checkout or set NEUROLM_SHARED")
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
