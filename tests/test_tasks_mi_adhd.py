"""Tasks ``mi`` (EEGMMIDB left/right fist imagery) and ``adhd`` (IEEE DataPort ADHD/control children) on the
real releases in ``../shared/eeg-samples`` (issue 10, acceptance 1 and 2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mne
import numpy as np
import polars as pl
import pytest
import scipy.io as sio
from scipy.signal import resample_poly

from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_data.sources import get_source
from neurolm_data.sources.adhd import ADHD_CHANNELS
from neurolm_data.split import read_splits

WINDOW = 800  # 4 s at 200 Hz


@pytest.fixture(scope="module")
def mi_out(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mi") / "out"
    summary = run_ingest("eegmmidb", samples_dir / "eegmmidb-mi", out, workers=2)
    assert summary.n_failed == 0, summary.failures
    run_shard(out, "mi", protocol="mi")
    return out


@pytest.fixture(scope="module")
def adhd_out(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adhd") / "out"
    summary = run_ingest("adhd", samples_dir / "adhd", out, workers=2)
    assert summary.n_failed == 0, summary.failures
    run_shard(out, "adhd", protocol="adhd")
    return out


def _edf_cues(path: Path) -> list[tuple[float, int]]:
    """(onset s, label) of every T1/T2 annotation whose 4 s fit in the file, read by MNE (not our reader)."""
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    end = raw.n_times / raw.info["sfreq"]
    return [
        (float(a["onset"]), {"T1": 0, "T2": 1}[a["description"]])
        for a in raw.annotations
        if a["description"] in ("T1", "T2") and a["onset"] + 4.0 <= end + 1e-9
    ]


def test_mi_one_window_per_cue_of_r04_r08(mi_out: Path, samples_dir: Path) -> None:
    """Acceptance 1: one (C, 800) window per T1/T2 cue of R04/R08 (counted from the EDF annotations with MNE),
    C = the mapped channels, label T1 -> 0 (left), T2 -> 1 (right), subject-disjoint splits."""
    files = sorted((samples_dir / "eegmmidb-mi" / "files").glob("S*/S*R*.edf"))
    assert len(files) == 24 and {f.stem[-3:] for f in files} == {"R04", "R08"}
    win = pl.read_parquet(mi_out / "shards" / "mi" / "windows.parquet")
    rec = pl.read_parquet(mi_out / "recordings.parquet")
    expected = 0
    for f in files:
        cues = _edf_cues(f)
        expected += len(cues)
        rid = rec.filter(pl.col("path").str.ends_with(f.name))["recording_id"].item()
        got = win.filter(pl.col("recording") == rid).sort("start_s")
        assert got["start_s"].to_list() == pytest.approx([round(o * 200) / 200 for o, _ in cues])
        assert got["label"].to_list() == [lab for _, lab in cues]
    assert win.height == expected and 340 <= expected <= 360
    assert set(win["label"].to_list()) == {0, 1}
    # C = every channel the vocabulary knows (all 64 EEGMMIDB electrodes), none dropped
    chans = rec["channels"].to_list()
    assert all(len(c) == 64 for c in chans)
    assert all(json.loads(d) == [] for d in rec["dropped_channels"].to_list())
    assert set(win["n_channels"].to_list()) == {64}
    import webdataset as wds

    shard = sorted((mi_out / "shards" / "mi").glob("*/*.tar"))[0]
    sample = next(iter(wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)))
    x = np.load(__import__("io").BytesIO(sample["eeg.npy"]), allow_pickle=False)
    assert x.shape == (64, WINDOW) and x.dtype == np.float32
    # subject-disjoint
    per_subject = win.group_by("subject").agg(pl.col("split").n_unique())
    assert per_subject["split"].max() == 1
    assert set(win["split"].unique().to_list()) == {"train", "val", "test"}


def test_mi_skips_runs_that_are_not_fist_imagery(samples_dir: Path, tmp_path: Path) -> None:
    """R03 (real movement: T1/T2 mean other things) is never windowed, and the reason is recorded; R12 is."""
    root = tmp_path / "root" / "files" / "S001"
    root.mkdir(parents=True)
    src = samples_dir / "eegmmidb-mi" / "files" / "S001" / "S001R04.edf"
    shutil.copy(src, root / "S001R03.edf")
    shutil.copy(src, root / "S001R12.edf")
    for s in ("S002", "S003"):
        (tmp_path / "root" / "files" / s).mkdir()
        shutil.copy(
            samples_dir / "eegmmidb-mi" / "files" / s / f"{s}R04.edf", tmp_path / "root" / "files" / s
        )
    out = tmp_path / "out"
    assert run_ingest("eegmmidb", tmp_path / "root", out, workers=1).n_failed == 0
    res = run_shard(out, "mi", protocol="mi_cv")
    skipped = {s["recording"]: s["reason"] for s in res.manifest["skipped"]}
    assert list(skipped) == ["eegmmidb_S001_R03"]
    assert "not a left/right fist imagery run" in skipped["eegmmidb_S001_R03"]
    win = pl.read_parquet(out / "shards" / "mi" / "windows.parquet")
    assert win.filter(pl.col("recording") == "eegmmidb_S001_R12").height == len(_edf_cues(src))


def test_adhd_discovers_121_children(samples_dir: Path) -> None:
    refs = get_source("adhd").discover(samples_dir / "adhd")
    assert len(refs) == 121 and len({r.subject for r in refs}) == 121
    assert sum(r.label == 1 for r in refs) == 61 and sum(r.label == 0 for r in refs) == 60
    assert all((r.label == 1) == r.path.parent.name.startswith("ADHD") for r in refs)


def test_adhd_reads_both_dtypes_in_microvolts(samples_dir: Path) -> None:
    """int16 and float64 files: ``read_native`` equals the raw .mat values (µV) transposed, channel order from
    the release; ``read`` is the exact 25/16 polyphase up-sampling to 200 Hz."""
    src = get_source("adhd")
    refs = src.discover(samples_dir / "adhd")
    by_dtype: dict[str, object] = {}
    for r in refs:
        raw = sio.loadmat(r.path)[r.path.stem]
        by_dtype.setdefault(str(raw.dtype), r)
    assert set(by_dtype) == {"int16", "float64"}
    for dtype, ref in by_dtype.items():
        raw = sio.loadmat(ref.path)[ref.path.stem]
        sig = src.read_native(ref)
        assert sig.sfreq == 128.0 and sig.ch_names == list(ADHD_CHANNELS)
        np.testing.assert_array_equal(sig.data, raw.T.astype(np.float64))
        assert sig.meta["dtype"] == dtype
        assert 5 < np.median(np.abs(sig.data)) < 500  # µV scale, not V or mV
        up = src.read(ref)
        assert up.sfreq == 200.0 and up.data.shape == (19, math.ceil(raw.shape[0] * 25 / 16))
        np.testing.assert_allclose(up.data, resample_poly(raw.T.astype(np.float64), 25, 16, axis=1))
        np.testing.assert_allclose(up.data[:, ::25], raw.T[:, ::16], atol=0.05 * np.abs(raw).max())


def test_adhd_windows_per_child(adhd_out: Path, samples_dir: Path) -> None:
    """Acceptance 2: 121 children (61 ADHD, 60 control), floor(duration / 4 s) windows each, labels from the
    folder, subject-disjoint, and the stored signal is the .mat signal (correlation after preprocessing)."""
    win = pl.read_parquet(adhd_out / "shards" / "adhd" / "windows.parquet")
    rec = pl.read_parquet(adhd_out / "recordings.parquet")
    assert rec.height == 121
    refs = {r.subject: r for r in get_source("adhd").discover(samples_dir / "adhd")}
    counts = dict(win.group_by("subject").len().rows())
    labels = dict(win.group_by("subject").agg(pl.col("label").unique()).rows())
    for subject, ref in refs.items():
        n = sio.loadmat(ref.path)[ref.path.stem].shape[0]
        assert counts[subject] == n // (4 * 128), subject
        assert labels[subject] == [ref.label]
    assert win.filter(pl.col("label") == 1)["subject"].n_unique() == 61
    assert win.filter(pl.col("label") == 0)["subject"].n_unique() == 60
    assert win.group_by("subject").agg(pl.col("split").n_unique())["split"].max() == 1
    splits, _ = read_splits(adhd_out)
    assert splits.height == 121
    # the stored µV follow the file's values (band-pass removes DC and drift: compare after the same high-pass)
    row = rec.row(0, named=True)
    x = np.load(adhd_out / row["store_path"])
    raw = sio.loadmat(refs[row["subject"]].path)[refs[row["subject"]].path.stem].T.astype(np.float64)
    ref200 = mne.filter.filter_data(resample_poly(raw, 25, 16, axis=1), 200.0, 1.0, 40.0, verbose="error")
    got = mne.filter.filter_data(x.astype(np.float64), 200.0, 1.0, 40.0, verbose="error")
    for c in range(19):
        assert np.corrcoef(got[c, 400:-400], ref200[c, 400:-400])[0, 1] > 0.99
    assert np.std(got) == pytest.approx(np.std(ref200), rel=0.05)


def test_eegmmidb_download_checks_the_published_sums(samples_dir: Path) -> None:
    """``fetch_eegmmidb`` verifies downloads against MNE's registry of PhysioNet's sums: every local file of
    the release (byte-identical to PhysioNet's) has exactly the registry's sha256 (no network needed)."""
    import hashlib

    from neurolm_data.sources.eegmmidb import mne_eegbci_sums

    sums = mne_eegbci_sums()
    files = sorted((samples_dir / "eegmmidb-mi" / "files").glob("S*/S*.edf"))
    assert len(files) == 24
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == sums[f"{f.parent.name}/{f.name}"]
    assert sum(1 for k in sums if k.endswith(".edf")) == 109 * 14
