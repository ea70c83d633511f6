"""Pre-training sources end to end: Sleep-EDF, EEGMMIDB, TUSZ, SEED family and Siena, each in its native layout
built from real signals -> ingest -> ``pretrain`` split -> shard. Asserts layout parsing (subject / session /
run), kept channels and their vocabulary indices, the per-source mains notch, the events each source keeps,
and the pretrain window length ``min(1024 // C, 64)`` s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_corpora import (
    build_eegmmidb,
    build_seed_family,
    build_siena,
    build_sleep_edf,
    build_tusz,
    ingest_split_shard,
    read_samples,
)

from neurolm_data.channels import STANDARD_1020
from neurolm_data.sources import available_sources

CASES = {
    # source: (builder needs eegmat?, options, expected recordings, channels per recording, mains Hz)
    "sleep_edf": (True, {}, 2, 2, 50.0),
    "eegmmidb": (False, {}, 2, 64, 60.0),
    "tusz": (True, {}, 2, 19, 60.0),
    "seed_family": (False, {"data_format": "int16"}, 7, None, 50.0),
    "siena": (True, {}, 2, 19, 50.0),
}
BUILDERS = {
    "sleep_edf": build_sleep_edf,
    "eegmmidb": build_eegmmidb,
    "tusz": build_tusz,
    "seed_family": build_seed_family,
    "siena": build_siena,
}


@pytest.mark.parametrize("source", sorted(CASES))
def test_pretrain_source_end_to_end(source: str, tmp_path: Path, eegmat_dir: Path) -> None:
    needs_eegmat, opts, n_rec, n_ch, mains = CASES[source]
    BUILDERS[source](tmp_path / "root", *([eegmat_dir] if needs_eegmat else []))
    ledger, recs, wins = ingest_split_shard(
        source, tmp_path / "root", tmp_path / "out", "pretrain", "pretrain", opts
    )
    assert (ledger["status"] == "done").all(), ledger.filter(pl.col("status") != "done")["reason"].to_list()
    assert recs.height == n_rec
    cfg = json.loads((tmp_path / "out" / "ingest_config.json").read_text())["config"]
    assert cfg["preprocess"]["notch_hz"] == mains
    cls = available_sources()[source]
    assert cls.citation and cls.license
    for chans, idx in recs.select("channels", "channel_indices").rows():
        assert [STANDARD_1020[i] for i in idx] == list(chans)
        if n_ch is not None:
            assert len(chans) == n_ch
    samples = read_samples(tmp_path / "out", "pretrain")
    assert len(samples) == wins.height > 0
    for x, meta in samples.values():
        c = x.shape[0]
        assert x.shape[1] == min(1024 // c, 64) * 200 and meta["label"] is None
    check = CHECKS[source]
    check(recs, ledger)


def _sleep_edf(recs: pl.DataFrame, ledger: pl.DataFrame) -> None:
    assert recs.select("subject", "session").rows() == [("SC400", "1"), ("SC400", "2")]
    assert all(list(c) == ["FPZ", "PZ"] for c in recs["channels"])
    ev = [json.loads(e) for e in recs["events"]]
    assert [e[2] for e in ev[0]] == [0] * 10  # the real 300-s PSG is all Wake, hypnogram clipped at 300 s
    assert {e[2] for e in ev[1]} == {0, 2, 3}  # W, N2 and N3 (R&K 3/4) in the second PSG
    extra = json.loads(recs["extra"][0])
    assert extra["derivations"] == {"FPZ": "Fpz-Cz", "PZ": "Pz-Oz"}


def _eegmmidb(recs: pl.DataFrame, ledger: pl.DataFrame) -> None:
    assert recs.select("subject", "run").rows() == [("S001", "R04"), ("S002", "R01")]
    ev = json.loads(recs["events"][0])
    assert ev and {e[3] for e in ev} <= {"T0", "T1", "T2"} and {e[2] for e in ev} <= {0, 1, 2}
    assert "FCZ" in recs["channels"][0].to_list() and "IZ" in recs["channels"][0].to_list()


def _tusz(recs: pl.DataFrame, ledger: pl.DataFrame) -> None:
    assert set(recs["official_split"]) == {"train", "eval"} and set(recs["montage"]) == {"LE"}
    ev = {s: json.loads(e) for s, e in recs.select("subject", "events").rows()}
    assert [(e[0], e[1], e[2]) for e in ev["aaaaaaac"]] == [(0.0, 6.0, 0), (6.0, 28.0, 1), (34.0, 26.0, 0)]


def _seed_family(recs: pl.DataFrame, ledger: pl.DataFrame) -> None:
    rows = recs.select("subject", "session", "run").rows()
    assert ("1", "1", "20160518_trial00") in rows and ("3", "1", "20180804") in rows
    mats = recs.filter(pl.col("run").str.contains("trial"))
    assert mats.height == 6 and all(len(c) == 62 for c in mats["channels"])
    cnt = recs.filter(~pl.col("run").str.contains("trial"))
    assert "M1" in cnt["channels"][0].to_list() and len(cnt["channels"][0]) == 64  # 62 + M1 + M2 kept


def _siena(recs: pl.DataFrame, ledger: pl.DataFrame) -> None:
    assert recs.select("subject", "run").rows() == [("PN00", "1"), ("PN01", "1")]
    dropped = json.loads(recs["dropped_channels"][0])
    assert ["EKG EKG", "non-EEG channel type"] in dropped
    assert np.isclose(recs["duration_s"][0], 60.0, atol=0.01)


CHECKS = {
    "sleep_edf": _sleep_edf,
    "eegmmidb": _eegmmidb,
    "tusz": _tusz,
    "seed_family": _seed_family,
    "siena": _siena,
}
