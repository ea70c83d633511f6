"""SEED end to end (issue 4 acceptance 1): the ``Preprocessed_EEG`` release (real EEGLAB signal, 15 trials per
session, one MATLAB v7.3 file) and the raw ``.cnt`` release (the real Neuroscan CNT with SEED labels) ->
ingest -> split -> shard, under the paper's within-subject trial protocol and the cross-subject one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_corpora import (
    DEFAULT_SEED_MAT,
    SAMPLES,
    SEED_CHANNELS,
    build_seed_cnt,
    build_seed_mat,
    ingest_split_shard,
    read_samples,
    seed_trial_lengths,
)

from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_data.sources import get_source
from neurolm_data.sources.base import RecordingError
from neurolm_data.sources.seed import read_cnt
from neurolm_data.tasks.seed import SEED_TRIAL_SPLIT, trial_split

LABELS = [0, 1, 2, 2, 1, 0, 2, 1, 0, 0, 1, 2, 1, 0, 2]  # label.mat 1/0/-1 -> H 0 / N 1 / S 2 (spec §2.7)


@pytest.fixture(scope="module")
def seed_mat(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed_root")
    build_seed_mat(root)
    out = tmp_path_factory.mktemp("seed_out")
    ledger, recs, wins = ingest_split_shard("seed", root, out, "seed")  # default protocol: the paper's
    return root, out, ledger, recs, wins


def test_seed_mat_within_subject_trial_split(seed_mat) -> None:
    root, out, ledger, recs, wins = seed_mat
    assert (ledger["status"] == "done").all() and recs.height == 15 * len(DEFAULT_SEED_MAT)
    assert set(recs["session"]) == {d for _, d, _, _, _ in DEFAULT_SEED_MAT}  # includes the v7.3 (HDF5) file
    samples = read_samples(out, "seed")
    assert len(samples) == wins.height
    assert all(x.shape == (62, 800) and x.dtype == np.float32 for x, _ in samples.values())
    assert next(iter(samples.values()))[1]["channels"] == list(SEED_CHANNELS)
    assert set(wins["label"].to_list()) == {0, 1, 2}
    trial = {r: int(run[5:]) for r, run in recs.select("recording_id", "run").rows()}
    for rid, split, label in wins.select("recording", "split", "label").rows():
        assert split == trial_split(trial[rid]) and label == LABELS[trial[rid]]
    # every subject is in every split (within-subject), each trial in one split only
    assert wins.group_by("subject").agg(pl.col("split").n_unique())["split"].min() == 3
    assert wins.group_by("recording").agg(pl.col("split").n_unique())["split"].max() == 1
    # windows per trial = floor(length / 4 s); trials are one recording each
    for k, (subj, date, _, _, _) in enumerate(DEFAULT_SEED_MAT):
        for t, sec in enumerate(seed_trial_lengths(k)):
            n = wins.filter(pl.col("recording") == f"seed_{subj}_{date}_trial{t:02d}").height
            assert n == int(round(sec * 200)) // 800
    assert sorted(set(wins["split"])) == sorted(SEED_TRIAL_SPLIT)


def test_seed_mat_cross_subject_split(seed_mat) -> None:
    root, out, *_ = seed_mat
    run_shard(out, "seed", protocol="seed_xsub")
    w = pl.read_parquet(out / "shards" / "seed" / "windows.parquet")
    assert dict(w.select("subject", "split").unique().rows()) == {"1": "train", "10": "val", "13": "test"}
    assert set(w["label"].to_list()) == {0, 1, 2}


def test_seed_raw_cnt_with_data_format_and_trial_table(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    build_seed_cnt(root)
    opts = {"data_format": "int16", "trial_table": str(root / "trials.csv")}
    ledger, recs, wins = ingest_split_shard("seed", root, tmp_path / "out", "seed", "seed_xsub", opts)
    assert (ledger["status"] == "done").all() and recs.height == 2
    dropped = {d for js in recs["dropped_channels"] for d, _ in json.loads(js)}
    assert {"M1", "M2", "VEO", "HEO"} <= dropped  # spec §2.7: dropped from the CNT
    samples = read_samples(tmp_path / "out", "seed")
    assert [x.shape for x, _ in samples.values()] == [(62, 800)] * 2
    # trial 0 = [0.5, 4.6) s gives one window at 0.5 s, label H (0); trial 1 (3 s) is shorter than a window
    assert wins.select("start_s", "label").rows() == [(0.5, 0), (0.5, 0)]
    # the default trial table (spec §2.7, 3,807 s) does not fit these 7.67-s sessions: a per-file reason
    run_ingest("seed", root, tmp_path / "out2", source_options={"data_format": "int16"})
    led = pl.read_parquet(tmp_path / "out2" / "ledger.parquet")
    assert (led["status"] == "failed").all()
    assert all("event past the end of the signal" in r for r in led["reason"])


def test_cnt_data_format_option(tmp_path: Path) -> None:
    cnt = SAMPLES / "neuroscan-cnt"
    with pytest.raises(RecordingError, match="data_format='auto'"):
        read_cnt(cnt / "scan41_short.cnt", "auto")
    sig = read_cnt(cnt / "test_CNT_events_mne_JWoess_clipped.cnt", "int32")
    assert sig.ch_names == ["F8", "FCz"] and sig.sfreq == 1000.0 and sig.data.shape == (2, 90000)
    root = tmp_path / "s"
    build_seed_cnt(root, sessions=(("1", "20131027"),))
    (root / "2_20131105.cnt").write_bytes((cnt / "test_CNT_events_mne_JWoess_clipped.cnt").read_bytes())
    src = get_source("seed", data_format="int32", trial_table=str(root / "trials.csv"))
    refs = {r.subject: r for r in src.discover(root)}
    with pytest.raises(RecordingError, match=r"missing channel\(s\) \['FP1', 'FPZ'"):
        src.read(refs["2"])
    with pytest.raises(ValueError, match="data_format must be one of"):
        get_source("seed", data_format="float32")
