"""TUSL end to end (issue 4 acceptance 1 and 2): TUH layout with ``.tse_agg``/``.tse``/v2 ``.csv`` partners from
real EEG -> ingest -> split -> shard.

Asserts 23 x 2000 windows inside the term segments, the three classes bckg/seiz/slow, a split BY SUBJECT (hash
rule; every subject in one split, not file order), per-channel ``.csv`` rows aggregated to terms, and malformed
annotation files failing per file while the rest completes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_corpora import DEFAULT_TUSL, build_tusl, ingest_split_shard, read_samples, write_tse

from neurolm_data.protocols import hash_bucket, load_protocol

CLASSES = {"bckg": 0, "seiz": 1, "slow": 2}


@pytest.fixture(scope="module")
def tusl(tmp_path_factory, eegmat_dir: Path):
    root = tmp_path_factory.mktemp("tusl_root")
    files = build_tusl(root, eegmat_dir)
    out = tmp_path_factory.mktemp("tusl_out")
    ledger, recs, wins = ingest_split_shard("tusl", root, out, "tusl")
    return files, out, ledger, recs, wins


def test_tusl_windows_follow_the_segments(tusl) -> None:
    files, out, ledger, recs, wins = tusl
    assert (ledger["status"] == "done").all()
    samples = read_samples(out, "tusl")
    assert len(samples) == wins.height
    assert all(x.shape == (23, 2000) and x.dtype == np.float32 for x, _ in samples.values())
    assert set(wins["label"].to_list()) == {0, 1, 2}
    for subj, (_, _, _, rows) in DEFAULT_TUSL.items():
        expected = sorted(
            (float(a + 10 * k), CLASSES[lab]) for a, b, lab in rows for k in range(int((b - a) // 10))
        )
        got = sorted(wins.filter(pl.col("subject") == subj).select("start_s", "label").rows())
        assert got == expected, subj


def test_tusl_split_by_subject(tusl) -> None:
    files, out, ledger, recs, wins = tusl
    proto = load_protocol("tusl")
    split_of = dict(pl.read_parquet(out / "splits.parquet").select("subject", "split").rows())
    for f in files:
        u = hash_bucket(proto.salt, "tusl", f.subject)
        assert split_of[f.subject] == ("train" if u < 0.6 else "val" if u < 0.8 else "test")
    assert set(split_of.values()) == {"train", "val", "test"}
    assert wins.group_by("subject").agg(pl.col("split").n_unique())["split"].max() == 1


def test_tusl_malformed_annotations_cost_only_their_events(tmp_path: Path, eegmat_dir: Path) -> None:
    """Issue 14: a bad row costs only itself (listed in the ledger's warnings column, its windows left out);
    TSE rows need not tile the recording; a missing partner still fails the recording."""
    files = {f.subject: f for f in build_tusl(tmp_path / "root", eegmat_dir)}
    write_tse(files["aaaaaaka"].annotation, [(0, 10, "bckg"), (10, 20, "spsw"), (20, 30, "seiz")])
    write_tse(files["aaaaaakb"].annotation, [(0, 10, "slow"), (15, 30, "bckg")])
    files["aaaaaakg"].annotation.unlink()
    c = files["aaaaaakk"].annotation
    c.write_text(c.read_text().replace("FP1-F7,10.0000,30.0000,bckg", "FP1-F7,10.0000,31.0000,bckg"))
    ledger, recs, wins = ingest_split_shard("tusl", tmp_path / "root", tmp_path / "out", "tusl")
    failed = dict(ledger.filter(pl.col("status") == "failed").select("recording_id", "reason").rows())
    assert list(failed) == ["tusl_aaaaaakg_s001_t000"]
    assert "annotation file is missing" in failed["tusl_aaaaaakg_s001_t000"]
    warn = dict(ledger.select("recording_id", "warnings").rows())
    assert warn["tusl_aaaaaaka_s001_t000"] == [
        "aaaaaaka_s001_t000.tse_agg: unknown label 'spsw' at 10.0000 s (known: bckg, seiz, slow) (event left out)"
    ]
    assert warn["tusl_aaaaaakb_s001_t000"] == []  # a gap is not a problem
    assert len(warn["tusl_aaaaaakk_s001_t000"]) == 1
    assert (
        "event past the end of the signal: 'bckg' 10.0000-31.0000 s on FP1-F7"
        in warn["tusl_aaaaaakk_s001_t000"][0]
    )
    assert recs["subject"].to_list() == ["aaaaaaka", "aaaaaakb", "aaaaaakc", "aaaaaakk"]
    got = {
        s: sorted(wins.filter(pl.col("subject") == s).select("start_s", "label").rows())
        for s in set(wins["subject"])
    }
    assert got["aaaaaaka"] == [(0.0, 0), (20.0, 1)]  # the spsw row's 10 s are left out
    assert got["aaaaaakb"] == [(0.0, 2), (15.0, 0)]
    assert got["aaaaaakk"] == [(0.0, 2), (10.0, 0), (20.0, 0)]  # the other channels still label 10-30 s
