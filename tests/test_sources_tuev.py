"""TUEV end to end (issue 4 acceptance 1 and 2): native ``edf/{train,eval}/<subject>/*.{edf,rec}`` layout from
real EEG -> ingest -> split -> shard.

Asserts 23 x 1000 windows, all 6 classes, ONE window per event time (not one per annotated channel), windows
at the edges shifted inside the recording (no circular wrap: the window equals the stored signal slice),
test = official eval, val = hash-bucket train subjects; and malformed ``.rec`` files failing per file with a
clear reason while the rest of the corpus completes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_corpora import (
    DEFAULT_TUEV,
    TUEV_SECONDS,
    build_tuev,
    ingest_split_shard,
    read_samples,
    write_rec,
)

from neurolm_data.protocols import hash_bucket, load_protocol


def expected_windows(rows, seconds: int = TUEV_SECONDS) -> dict[int, int]:
    """Independent reference: window start (samples) -> label, from the raw .rec rows of one recording."""
    by_time: dict[tuple[float, float], int] = {}
    for _, a, b, k in rows:
        by_time[(a, b)] = min(by_time.get((a, b), 99), k - 1)
    out: dict[int, int] = {}
    for (a, b), lab in by_time.items():
        start = min(max(int(round(((a + b) / 2 - 2.5) * 200)), 0), seconds * 200 - 1000)
        out[start] = min(out.get(start, 99), lab)
    return out


@pytest.fixture(scope="module")
def tuev(tmp_path_factory, eegmat_dir: Path):
    root = tmp_path_factory.mktemp("tuev_root")
    files = build_tuev(root, eegmat_dir)
    out = tmp_path_factory.mktemp("tuev_out")
    ledger, recs, wins = ingest_split_shard("tuev", root, out, "tuev")
    return files, out, ledger, recs, wins


def test_tuev_one_window_per_event_time_six_classes(tuev) -> None:
    files, out, ledger, recs, wins = tuev
    assert (ledger["status"] == "done").all()
    samples = read_samples(out, "tuev")
    assert len(samples) == wins.height
    assert all(x.shape == (23, 1000) and x.dtype == np.float32 for x, _ in samples.values())
    assert set(wins["label"].to_list()) == set(range(6))
    n_rows = sum(len(rows) for _, _, _, rows in DEFAULT_TUEV.values())
    assert wins.height < n_rows  # near-duplicate rows collapsed
    for subj, (_, _, _, rows) in DEFAULT_TUEV.items():
        got = {
            int(round(s * 200)): lab
            for s, lab in wins.filter(pl.col("subject") == subj).select("start_s", "label").rows()
        }
        assert got == expected_windows(rows), subj


def test_tuev_edge_windows_do_not_wrap(tuev) -> None:
    files, out, ledger, recs, wins = tuev
    samples = read_samples(out, "tuev")
    store = {r: p for r, p in recs.select("recording_id", "store_path").rows()}
    n_samples = dict(recs.select("recording_id", "n_samples").rows())
    starts = []
    for x, meta in samples.values():
        a = int(round(meta["start_s"] * 200))
        full = np.load(out / store[meta["recording"]], mmap_mode="r")
        assert 0 <= a and a + 1000 <= n_samples[meta["recording"]]
        assert np.array_equal(x, np.asarray(full[:, a : a + 1000]))  # a real slice, never a wrapped copy
        starts.append((meta["subject"], a))
    # aaaaaaar has events at 0.2 s and 18.6 s: their windows sit at the first and last 5 s
    assert ("aaaaaaar", 0) in starts and ("aaaaaaar", TUEV_SECONDS * 200 - 1000) in starts


def test_tuev_split_rules(tuev) -> None:
    files, out, *_ = tuev
    split_of = dict(pl.read_parquet(out / "splits.parquet").select("subject", "split").rows())
    salt = load_protocol("tuev").salt
    for f in files:
        if f.official_split == "eval":
            assert split_of[f.subject] == "test"
        else:
            assert split_of[f.subject] == ("val" if hash_bucket(salt, "tuev", f.subject) < 0.2 else "train")
    assert set(split_of.values()) == {"train", "val", "test"}


def test_malformed_rec_files_fail_per_file_and_the_rest_completes(tmp_path: Path, eegmat_dir: Path) -> None:
    spec = {k: DEFAULT_TUEV[k] for k in ("aaaaaaar", "aaaaaaas", "aaaaaaat", "aaaaaaan", "aaaaaaav")}
    files = {f.subject: f for f in build_tuev(tmp_path / "root", eegmat_dir, spec)}
    write_rec(files["aaaaaaas"].annotation, [(2, 3.0, 4.0, 7)])  # unknown label id
    write_rec(files["aaaaaaat"].annotation, [(1, 18.0, 21.0, 3)])  # past the end (20 s)
    write_rec(files["aaaaaaan"].annotation, [(6, 4.0, 6.0, 1), (6, 5.0, 7.0, 4)])  # overlap on one channel
    files["aaaaaaav"].annotation.unlink()  # missing partner
    ledger, recs, wins = ingest_split_shard("tuev", tmp_path / "root", tmp_path / "out", "tuev")
    reasons = dict(ledger.filter(pl.col("status") == "failed").select("recording_id", "reason").rows())
    assert set(reasons) == {
        "tuev_aaaaaaas_00000001",
        "tuev_aaaaaaat_00000001",
        "tuev_aaaaaaan_00000001",
        "tuev_aaaaaaav_00000001",
    }
    assert "aaaaaaas_00000001.rec: line 1: unknown label id 7" in reasons["tuev_aaaaaaas_00000001"]
    assert "event past the end of the signal" in reasons["tuev_aaaaaaat_00000001"]
    assert "overlapping events on channel T4-T6" in reasons["tuev_aaaaaaan_00000001"]
    assert "aaaaaaav_00000001.rec: annotation file is missing" in reasons["tuev_aaaaaaav_00000001"]
    assert recs["subject"].to_list() == ["aaaaaaar"] and wins.height == len(
        expected_windows(spec["aaaaaaar"][3])
    )
