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
        assert np.array_equal(x, np.load(out / store[meta["recording"]], mmap_mode="r")[:, a:a + 6000])
    assert set(wins["label"].to_list()) == {0, 1, 2, 3, 4}
    for f in files:  # labels follow the real scoring rows, .txt (SN904) and .edf alike
        rows = hmc_scoring_window(DEFAULT_HMC[f.subject][1], HMC_EPOCHS * 30)
        expected = [(o, HMC_STAGES[t]) for o, d, t in rows if t in HMC_STAGES]
        assert sorted(wins.filter(pl.col("subject") == f.subject).select("start_s", "label").rows()) == expected


def test_hmc_sorted_split_rule(hmc, tmp_path: Path) -> None:
    files, out, ledger, recs, wins = hmc
    assert set(wins["split"]) == {"train"}  # 4 subjects < 100: all train under the paper's protocol
    proto = load_protocol("hmc")
    assert (proto.rule, proto.counts, proto.rest) == ("sorted", {"train": 100, "val": 25}, "test")
    subjects = [f"SN{k:03d}" for k in range(154, 0, -1) if k not in (14, 64, 135)]
    df = pl.DataFrame({"source": "hmc", "subject": subjects, "recording_id": subjects, "official_split": None})
    got, _, _ = assign_subjects(df, proto)
    split_of = dict(got.select("subject", "split").rows())
    ordered = sorted(subjects)
    assert [split_of[s] for s in ordered] == ["train"] * 100 + ["val"] * 25 + ["test"] * 26
    small = tmp_path / "hmc_small.toml"
    small.write_text(Path(proto.path).read_text().replace('name = "hmc"', 'name = "hmc_small"')
                     .replace("train = 100", "train = 2").replace("val = 25", "val = 1"))
    run_shard(out, "hmc", protocol=small)
    w = pl.read_parquet(out / "shards" / "hmc" / "windows.parquet")
    assert dict(w.select("subject", "split").unique().rows()) == {
        "SN901": "train", "SN902": "train", "SN903": "val", "SN904": "test"}


def test_hmc_malformed_scoring_fails_per_file(tmp_path: Path) -> None:
    files = {f.subject: f for f in build_hmc(tmp_path / "root", {**DEFAULT_HMC, "SN905": (100.0, 690.0, "edf")})}

    def rewrite(path, rows):
        edfio.Edf([], annotations=[edfio.EdfAnnotation(o, d or None, t) for o, d, t in rows]).write(path)

    rewrite(files["SN901"].annotation, [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage 2")])       # R&K label
    rewrite(files["SN902"].annotation, [(0, 30, "Sleep stage W"), (20, 30, "Sleep stage N1")])      # overlap
    rewrite(files["SN903"].annotation, [(0, 30, "Sleep stage W"), (100, 30, "Sleep stage N1")])     # past 120 s
    files["SN904"].annotation.unlink()                                                               # missing
    ledger, recs, wins = ingest_split_shard("hmc", tmp_path / "root", tmp_path / "out", "hmc")
    reasons = dict(ledger.filter(pl.col("status") == "failed").select("recording_id", "reason").rows())
    assert "SN901_sleepscoring.edf: unknown label 'Sleep stage 2'" in reasons["hmc_SN901"]
    assert "SN902_sleepscoring.edf: overlapping events" in reasons["hmc_SN902"]
    assert "SN903_sleepscoring.edf: event past the end of the signal" in reasons["hmc_SN903"]
    assert "SN904_sleepscoring.edf: scoring file is missing" in reasons["hmc_SN904"]
    assert recs["subject"].to_list() == ["SN905"] and wins.height == HMC_EPOCHS
