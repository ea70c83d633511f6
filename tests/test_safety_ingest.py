"""Issue 14, acceptance 4: a pool worker killed mid-ingest (a reader that calls ``os._exit`` on one marked
file) costs only that file, failed with a reason saying its worker died; every other file is done. A file whose
worker died once but reads fine alone is done."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from neurolm_data.ingest import run_ingest
from neurolm_data.sources.base import RecordingRef, register_source
from neurolm_data.sources.edf import EdfSource

FILES = (
    "Subject00_1.edf",
    "Subject01_2.edf",
    "Subject02_2.edf",
    "Subject03_2.edf",
    "Subject04_2.edf",
    "Subject05_2.edf",
)


@register_source
class DyingEdf(EdfSource):
    """The ``edf`` source whose reader kills its process on a file named ``DIE*`` (always) or ``ONCE*`` (the
    first time: a marker file beside it records that it died once), as a segfaulting reader would."""

    name = "edf_dying_test"

    def read(self, ref: RecordingRef):
        if ref.path.name.startswith("DIE"):
            os._exit(9)
        marker = ref.path.with_suffix(".died")
        if ref.path.name.startswith("ONCE") and not marker.exists():
            marker.write_text("x")
            os._exit(9)
        return super().read(ref)


@pytest.fixture()
def root(eegmat_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    for name in FILES:
        shutil.copy(eegmat_dir / name, d / name)
    shutil.copy(eegmat_dir / "Subject06_2.edf", d / "DIE_Subject06_2.edf")
    shutil.copy(eegmat_dir / "Subject07_2.edf", d / "ONCE_Subject07_2.edf")
    return d


@pytest.mark.parametrize("workers", [2, 3])
def test_a_dying_worker_costs_only_its_file(root: Path, tmp_path: Path, workers: int):
    out = tmp_path / "out"
    summary = run_ingest("edf_dying_test", root, out, workers=workers, mp_context="fork")
    ledger = pl.read_parquet(out / "ledger.parquet")
    status = dict(ledger.select("path", "status").rows())
    assert status == {
        **{f: "done" for f in FILES},
        "ONCE_Subject07_2.edf": "done",
        "DIE_Subject06_2.edf": "failed",
    }
    reason = ledger.filter(pl.col("status") == "failed")["reason"].item()
    assert reason == (
        "DIE_Subject06_2.edf: its worker died while reading it, twice (the second time alone in a "
        "fresh worker): a crash in a reader or out of memory on this file"
    )
    assert summary.n_done == 7 and summary.n_failed == 1
    assert not list((out / "recordings").glob(".*.inflight"))
    assert ledger["warnings"].to_list() == [[]] * 8
    # the recordings are those of a clean run of the good files
    clean = tmp_path / "clean_root"
    clean.mkdir()
    for f in FILES:
        shutil.copy(root / f, clean / f)
    run_ingest("edf", clean, tmp_path / "clean", workers=1)
    a = pl.read_parquet(out / "recordings.parquet").filter(pl.col("path").is_in(list(FILES)))
    b = pl.read_parquet(tmp_path / "clean" / "recordings.parquet")
    assert a["data_hash"].to_list() == b["data_hash"].to_list()
