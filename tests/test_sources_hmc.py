"""HMC end to end (issue 4 acceptance 1 and 2): ``SNxxx.edf`` PSGs built from a real sleep-lab BDF with windows of
the real SN001 scoring (``_sleepscoring.edf``, and one ``.txt``) -> ingest -> split -> shard.

Asserts 4 x 6000 windows, the five AASM stages, one window per scored epoch and none zero-filled (spec §2.5
bug), the paper's sorted-subject 100/25/rest rule, and malformed scoring failing per file.
"""

from __future__ import annotations

from pathlib import Path

import edfio
import numpy as np
import polars as pl
import pytest
from fixtures_corpora import (
    DEFAULT_HMC,
    HMC_EPOCHS,
    build_hmc,
    hmc_scoring_window,
    ingest_split_shard,
    read_samples,
)

from neurolm_data.annotations import HMC_STAGES
from neurolm_data.protocols import load_protocol
from neurolm_data.shard import run_shard
from neurolm_data.split import assign_subjects


@pytest.fixture(scope="module")
def hmc(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmc_root")
    files = build_hmc(root)
    out = tmp_path_factory.mktemp("hmc_out")
    ledger, recs, wins = ingest_split_shard("hmc", root, out, "hmc")
    return files, out, ledger, recs, wins


def test_hmc_epochs_shapes_and_stages(hmc) -> None:
    files, out, ledger, recs, wins = hmc
    assert (ledger["status"] == "done").all() and recs.height == 4
    assert set(recs["montage"]) == {"mastoid"}
    samples = read_samples(out, "hmc")
    assert len(samples) == wins.height == 4 * HMC_EPOCHS
    store = dict(recs.select("recording_id", "store_path").rows())
    for x, meta in samples.values():
        assert x.shape == (4, 6000) and x.dtype == np.float32
        assert meta["channels"] == ["F4", "C4", "O2", "C3"]
        assert float(np.abs(x).max()) > 0 and (x.std(axis=1) > 0).all()  # never a zero-filled sample
        a = int(round(meta["start_s"] * 200))
        assert np.array_equal(x, np.load(out / store[meta["recording"]], mmap_mode="r")[:, a : a + 6000])
    assert set(wins["label"].to_list()) == {0, 1, 2, 3, 4}
    for f in files:  # labels follow the real scoring rows, .txt (SN904) and .edf alike
        rows = hmc_scoring_window(DEFAULT_HMC[f.subject][1], HMC_EPOCHS * 30)
        expected = [(o, HMC_STAGES[t]) for o, d, t in rows if t in HMC_STAGES]
        assert (
            sorted(wins.filter(pl.col("subject") == f.subject).select("start_s", "label").rows()) == expected
        )


def test_hmc_sorted_split_rule(hmc, tmp_path: Path) -> None:
    files, out, ledger, recs, wins = hmc
    assert set(wins["split"]) == {"train"}  # 4 subjects < 100: all train under the paper's protocol
    proto = load_protocol("hmc")
    assert (proto.rule, proto.counts, proto.rest) == ("sorted", {"train": 100, "val": 25}, "test")
    subjects = [f"SN{k:03d}" for k in range(154, 0, -1) if k not in (14, 64, 135)]
    df = pl.DataFrame(
        {"source": "hmc", "subject": subjects, "recording_id": subjects, "official_split": None}
    )
    got, _, _ = assign_subjects(df, proto)
    split_of = dict(got.select("subject", "split").rows())
    ordered = sorted(subjects)
    assert [split_of[s] for s in ordered] == ["train"] * 100 + ["val"] * 25 + ["test"] * 26
    small = tmp_path / "hmc_small.toml"
    small.write_text(
        Path(proto.path)
        .read_text()
        .replace('name = "hmc"', 'name = "hmc_small"')
        .replace("train = 100", "train = 2")
        .replace("val = 25", "val = 1")
    )
    run_shard(out, "hmc", protocol=small)
    w = pl.read_parquet(out / "shards" / "hmc" / "windows.parquet")
    assert dict(w.select("subject", "split").unique().rows()) == {
        "SN901": "train",
        "SN902": "train",
        "SN903": "val",
        "SN904": "test",
    }


def test_hmc_malformed_scoring_costs_only_its_epochs(tmp_path: Path) -> None:
    """Issue 14: an unknown label, an overlap or an epoch past the end costs only those epochs (ledger
    warnings); a missing scoring file, or one without a valid epoch, fails the recording."""
    files = {
        f.subject: f
        for f in build_hmc(
            tmp_path / "root", {**DEFAULT_HMC, "SN905": (100.0, 690.0, "edf"), "SN906": (60.0, 690.0, "edf")}
        )
    }

    def rewrite(path, rows):
        edfio.Edf([], annotations=[edfio.EdfAnnotation(o, d or None, t) for o, d, t in rows]).write(path)

    rewrite(files["SN901"].annotation, [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage 2")])  # R&K label
    rewrite(
        files["SN902"].annotation,
        [
            (0, 30, "Sleep stage W"),
            (20, 30, "Sleep stage N1"),  # overlap
            (60, 30, "Sleep stage N2"),
        ],
    )
    rewrite(files["SN903"].annotation, [(0, 30, "Sleep stage W"), (100, 30, "Sleep stage N1")])  # past 120 s
    files["SN904"].annotation.unlink()  # missing
    rewrite(
        files["SN906"].annotation, [(0, 30, "Sleep stage W"), (10, 30, "Sleep stage N1")]
    )  # nothing valid
    ledger, recs, wins = ingest_split_shard("hmc", tmp_path / "root", tmp_path / "out", "hmc")
    failed = dict(ledger.filter(pl.col("status") == "failed").select("recording_id", "reason").rows())
    assert sorted(failed) == ["hmc_SN904", "hmc_SN906"]
    assert "SN904_sleepscoring.edf: scoring file is missing" in failed["hmc_SN904"]
    assert (
        "SN906_sleepscoring.edf: no valid event (1 problem(s), first: SN906_sleepscoring.edf: overlapping"
        in failed["hmc_SN906"]
    )
    warn = dict(ledger.select("recording_id", "warnings").rows())
    assert warn["hmc_SN901"] == [
        "SN901_sleepscoring.edf: unknown label 'Sleep stage 2' at 30.0000 s (known: "
        "Sleep stage W, Sleep stage N1, Sleep stage N2, Sleep stage N3, Sleep stage R, "
        "Lights off, Lights on)"
    ]
    assert warn["hmc_SN902"] == [
        "SN902_sleepscoring.edf: overlapping events: 'Sleep stage W' 0.0000-30.0000 s and "
        "'Sleep stage N1' 20.0000-50.0000 s (both left out)"
    ]
    assert warn["hmc_SN903"] == [
        "SN903_sleepscoring.edf: event past the end of the signal: 'Sleep stage N1' "
        "100.0000-130.0000 s, signal lasts 120.0000 s (event left out)"
    ]
    assert warn["hmc_SN905"] == []
    got = {
        s: sorted(wins.filter(pl.col("subject") == s).select("start_s", "label").rows())
        for s in set(wins["subject"])
    }
    assert got["SN901"] == [(0.0, 0)] and got["SN902"] == [(60.0, 2)] and got["SN903"] == [(0.0, 0)]
    assert len(got["SN905"]) == HMC_EPOCHS and set(got) == {"SN901", "SN902", "SN903", "SN905"}
