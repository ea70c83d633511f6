"""TUAB end to end (issue 4 acceptance 1): native v3 layout built from real EEG -> ingest -> split -> shard.

Asserts 23 x 2000 windows, the two classes, test = official eval subjects, val = the hash-bucket 20 % of the
official train subjects, subject-disjoint splits, and a file lacking TUAB channels failing with its reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_corpora import DEFAULT_TUAB, build_tuab, ingest_split_shard, read_samples

from neurolm_data.ingest import build_config
from neurolm_data.protocols import hash_bucket, load_protocol
from neurolm_data.sources import get_source
from neurolm_data.sources.tuab import TUAB_CHANNELS


@pytest.fixture(scope="module")
def tuab(tmp_path_factory, eegmat_dir: Path):
    root = tmp_path_factory.mktemp("tuab_root")
    files = build_tuab(root, eegmat_dir)
    out = tmp_path_factory.mktemp("tuab_out")
    ledger, recs, wins = ingest_split_shard("tuab", root, out, "tuab")
    return files, out, ledger, recs, wins


def test_tuab_windows_labels_and_channels(tuab) -> None:
    files, out, ledger, recs, wins = tuab
    samples = read_samples(out, "tuab")
    assert len(samples) == wins.height > 0
    for x, meta in samples.values():
        assert x.shape == (23, 2000) and x.dtype == np.float32
        assert meta["channels"] == list(TUAB_CHANNELS)
        assert meta["label"] in (0, 1)
    assert set(wins["label"].to_list()) == {0, 1}
    # every 20-s recording gives exactly 2 windows, with its folder's label
    label_of = {f"tuab_{f.path.stem}": f.label for f in files}
    per_rec = wins.group_by("recording").agg(pl.len(), pl.col("label").unique())
    for rid, n, labels in per_rec.rows():
        assert n == 2 and labels == [label_of[rid]]


def test_tuab_split_rules(tuab) -> None:
    files, out, ledger, recs, wins = tuab
    proto = load_protocol("tuab")
    split_of = dict(pl.read_parquet(out / "splits.parquet").select("subject", "split").rows())
    official = {(f.subject, f.official_split) for f in files if f.subject != "aaaaaaaz"}
    eval_subjects = {s for s, o in official if o == "eval"}
    train_subjects = {s for s, o in official if o == "train"}
    assert {s for s, sp in split_of.items() if sp == "test"} == eval_subjects
    expected_val = {s for s in train_subjects if hash_bucket(proto.salt, "tuab", s) < 0.2}
    assert {s for s, sp in split_of.items() if sp == "val"} == expected_val and expected_val
    assert {s for s, sp in split_of.items() if sp == "train"} == train_subjects - expected_val
    # windows are subject-disjoint across splits
    assert wins.group_by("subject").agg(pl.col("split").n_unique())["split"].max() == 1


def test_tuab_missing_channels_fail_with_reason(tuab) -> None:
    _, _, ledger, recs, _ = tuab
    failed = ledger.filter(pl.col("status") == "failed")
    assert failed["path"].to_list() == ["edf/train/normal/01_tcp_ar/aaaaaaaz_s001_t000.edf"]
    assert "missing channel(s) ['A1', 'A2', 'T1', 'T2'] of the 23 TUAB channels" in failed["reason"][0]
    assert recs.height == len(DEFAULT_TUAB) - 1
    assert set(recs["montage"]) == {"REF"}
    assert all(list(c) == list(TUAB_CHANNELS) for c in recs["channels"])


def test_tuab_v2_layout_discovers_the_same_recordings(tmp_path: Path, eegmat_dir: Path, tuab) -> None:
    files = build_tuab(tmp_path, eegmat_dir, specs=DEFAULT_TUAB[:3] + DEFAULT_TUAB[7:9], layout="v2")
    stray = tmp_path / "edf" / "train" / "stray.edf"
    stray.write_bytes(files[0].path.read_bytes())
    assert get_source("tuab").skipped(tmp_path) == [
        (stray, "path is outside the TUAB layout edf/{train,eval}/{normal,abnormal}/...")
    ]
    refs = get_source("tuab").discover(tmp_path)
    assert [r.extra["layout"] for r in refs] == ["v2"] * 5
    got = {(r.subject, r.session, r.run, r.label, r.official_split) for r in refs}
    assert got == {
        (f.subject, f.path.stem.split("_")[1], f.path.stem.split("_")[2], f.label, f.official_split)
        for f in files
    }
    sig = get_source("tuab").read(refs[0])
    assert sig.data.shape == (23, 20 * 250) and sig.sfreq == 250.0


def test_tuab_notch_defaults_to_60_and_paper_option_is_50() -> None:
    default = build_config("tuab")
    paper = build_config("tuab", {"notch_hz": 50})
    assert default.preprocess.notch_hz == 60.0 and paper.preprocess.notch_hz == 50.0
    assert default.hash != paper.hash
    assert build_config("tuev", {"notch_hz": "50"}).preprocess.notch_hz == 50.0
    with pytest.raises(ValueError, match="unknown option"):
        get_source("tuab", notch=50)
