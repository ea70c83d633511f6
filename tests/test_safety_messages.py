"""Issue 14, acceptance 5 and 6: a TUEV file with overlapping events on one channel, a malformed row and an
event past the end keeps every valid window and lists the bad events in the ledger's ``warnings`` column
(the TUSL and HMC cases are in ``test_sources_tusl.py`` / ``test_sources_hmc.py``); output files honour the
umask; the EDF reader and ``leaderboard show`` name the problem."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import polars as pl
import pytest
import torch
from fixtures_corpora import DEFAULT_TUEV, build_tuev, ingest_split_shard
from fixtures_trainer import cli

from neurolm_data.readers import read_edf
from neurolm_data.sources.base import RecordingError
from neurolm_data.store import write_json_atomic, write_npy_atomic
from neurolm_train import checkpoint

SPEC = {
    **DEFAULT_TUEV,
    "aaaaaaxx": (
        "train",
        "Subject15_1.edf",
        0.0,
        (
            (5, 4.0, 5.0, 1),
            (0, 4.0, 5.0, 1),  # spsw on two channels ...
            (5, 4.5, 5.5, 4),  # ... overlapped on F8-T4 by an eyem: both event times left out
            (11, 12.0, 13.0, 4),  # valid eyem
            (18, 16.0, 17.0, 2),  # valid gped
            (2, 19.5, 21.0, 3),  # past the 20-s signal
        ),
    ),
}


def test_tuev_bad_events_cost_only_themselves(eegmat_dir: Path, tmp_path: Path):
    files = {f.subject: f for f in build_tuev(tmp_path / "root", eegmat_dir, SPEC)}
    rec = files["aaaaaaxx"].annotation
    rec.write_text(rec.read_text() + "7,abc,9.0,6\n")  # a malformed row
    ledger, recs, wins = ingest_split_shard("tuev", tmp_path / "root", tmp_path / "out", "tuev")
    assert set(ledger["status"]) == {"done"}
    warn = dict(ledger.select("recording_id", "warnings").rows())["tuev_aaaaaaxx_00000001"]
    name = "aaaaaaxx_00000001.rec"
    assert warn == [
        f"{name}: line 7: start 'abc' is not a number",
        f"{name}: event past the end of the signal: 'pled' 19.5000-21.0000 s on T3-T5, signal lasts 20.0000 s "
        "(event left out)",
        f"{name}: overlapping events on channel F8-T4: 'spsw' 4.0000-5.0000 s and 'eyem' 4.5000-5.5000 s "
        "(both left out)",
    ]
    assert all(
        w == []
        for rid, w in ledger.select("recording_id", "warnings").rows()
        if rid != "tuev_aaaaaaxx_00000001"
    )
    got = sorted(wins.filter(pl.col("subject") == "aaaaaaxx").select("start_s", "label").rows())
    assert got == [(10.0, 3), (14.0, 1)]  # the eyem at 12-13 s and the gped at 16-17 s, centred 5-s windows


def test_a_tuev_file_with_no_valid_event_fails_whole(eegmat_dir: Path, tmp_path: Path):
    spec = {"aaaaaaxx": ("train", "Subject15_1.edf", 0.0, ((5, 4.0, 5.0, 1), (5, 4.5, 5.5, 4)))}
    build_tuev(tmp_path / "root", eegmat_dir, spec)
    from neurolm_data.ingest import run_ingest

    summary = run_ingest("tuev", tmp_path / "root", tmp_path / "out")
    assert summary.n_failed == 1
    assert (
        "aaaaaaxx_00000001.rec: no valid event (1 problem(s), first: aaaaaaxx_00000001.rec: overlapping events"
        in summary.failures[0][1]
    )


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_honour_the_umask(tmp_path: Path, umask: int):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        import numpy as np

        write_npy_atomic(tmp_path / "a.npy", np.zeros(3, np.float32))
        checkpoint.atomic_save({"w": torch.zeros(2)}, tmp_path / "c.pt")
        plain = tmp_path / "plain"
        plain.write_text("x")  # what open() gives
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.json", "a.npy", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_shards_and_manifests_are_readable_by_the_group(workload_out: Path):
    """The session's OUT was written under the default umask 022: every file is 0644, not 0600."""
    mask = os.umask(0)
    os.umask(mask)
    modes = {
        stat.S_IMODE(p.stat().st_mode) for p in workload_out.rglob("*") if p.is_file() and not p.is_symlink()
    }
    assert modes == {0o666 & ~mask}


def _patch_header(src: Path, dst: Path, field: int, width: int, value: bytes) -> Path:
    """Copy an EDF and overwrite signal 1's header field at ``field`` (per-signal offset) with ``value``."""
    b = bytearray(src.read_bytes())
    ns = int(b[252:256].decode().strip())
    off = 256 + ns * field
    b[off : off + width] = value.ljust(width)
    dst.write_bytes(bytes(b))
    return dst


def test_edf_header_messages_name_the_problem(eegmat_dir: Path, tmp_path: Path):
    src = eegmat_dir / "Subject00_1.edf"
    dd = _patch_header(src, tmp_path / "dd.edf", 16 + 80 + 8 + 8 + 8, 8, b"32767")  # digital min = max
    with pytest.raises(RecordingError) as err:
        read_edf(dd)
    assert str(err.value) == (
        f"{dd}: invalid EDF/BDF header: signal 1 'EEG Fp1': digital minimum == maximum "
        "(32767), so its samples cannot be scaled to µV; fix the header or leave the file out"
    )
    lat = _patch_header(src, tmp_path / "lat.edf", 0, 16, "EEG Fp1-Ré".encode("latin-1"))
    with pytest.raises(RecordingError) as err:
        read_edf(lat)
    assert str(err.value) == (
        f"{lat}: invalid EDF/BDF header: signal 1 label 'EEG Fp1-Ré' has non-ASCII bytes "
        "(EDF labels are printable US-ASCII; this one reads as latin-1); rename the label in "
        "the header"
    )


def test_leaderboard_show_without_records_fails(workload_out: Path, tmp_path: Path):
    text = cli("leaderboard", "show", str(workload_out), "--results", str(tmp_path / "empty"), ok=False)
    assert f"leaderboard show failed: no leaderboard records under {tmp_path / 'empty'}; run" in text
    assert not (tmp_path / "empty" / "leaderboard.md").exists()
