"""Cross-corpus leakage audit (issue 4 acceptance 3): a TUEG fixture that holds a TUAB evaluation subject.

Planted overlaps, all built from real EEG:
- ``aaaaaaag``: the TUAB eval recording copied byte for byte into the TUEG layout under the same subject id
  (subject AND whole-signal match);
- ``aaaaaazz``: another TUAB eval recording re-exported under a new TUEG subject id with one extra vocabulary
  channel (same digital samples): only the per-channel fingerprints can find it;
- ``aaaaaaaa``: a TUAB *train* subject id reused in TUEG for a different signal (subject overlap, not a leak).
The audit must report the leaks, ``split --exclude-eval-of`` must remove both eval matches from the TUEG
splits, and a re-audit must be clean. With TUAB ingested at the paper's 50-Hz notch (preprocessing differs
from TUEG's 60 Hz) the correlation check must still find the re-identified recording.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyedflib
import pytest
from fixtures_corpora import DEFAULT_TUAB, build_tuab
from fixtures_tuh import TuhSpec, build_tueg_tree
from typer.testing import CliRunner

from cli import data_app
from neurolm_data.audit import exclusion_table, run_audit
from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_data.split import run_split


def add_channel_copy(src: Path, dst: Path, label: str, copy_of: str) -> None:
    """Rewrite ``src`` as ``dst`` with the same digital samples plus ``label`` duplicating ``copy_of``."""
    r = pyedflib.EdfReader(str(src))
    try:
        n = r.signals_in_file
        heads = [r.getSignalHeader(i) for i in range(n)]
        data = [r.readSignal(i, digital=True) for i in range(n)]
    finally:
        r.close()
    k = [h["label"] for h in heads].index(copy_of)
    heads.append({**heads[k], "label": label})
    data.append(data[k].copy())
    dst.parent.mkdir(parents=True, exist_ok=True)
    w = pyedflib.EdfWriter(str(dst), len(heads), file_type=pyedflib.FILETYPE_EDF)
    try:
        w.setSignalHeaders(heads)
        w.writeSamples(data, digital=True)
    finally:
        w.close()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, eegmat_dir: Path):
    tmp = tmp_path_factory.mktemp("audit")
    specs = tuple(s for s in DEFAULT_TUAB if s.subject in {"aaaaaaaa", "aaaaaaab", "aaaaaaag", "aaaaaaah"})
    tuab_files = build_tuab(tmp / "tuab", eegmat_dir, specs)
    build_tueg_tree(
        tmp / "tueg",
        eegmat_dir,
        (
            TuhSpec("000", "aaaaaaaa", "s002_2015", "t000", "REF", 250, 60, "Subject30_1.edf", 0.0),
            TuhSpec("000", "aaaaaabb", "s001_2015", "t000", "LE", 256, 60, "Subject31_1.edf", 0.0),
        ),
    )
    ev = {f.subject: f.path for f in tuab_files if f.official_split == "eval"}
    same = tmp / "tueg/edf/000/aaaaaaag/s001_2012/01_tcp_ar/aaaaaaag_s001_t000.edf"
    same.parent.mkdir(parents=True)
    shutil.copy(ev["aaaaaaag"], same)
    add_channel_copy(
        ev["aaaaaaah"],
        tmp / "tueg/edf/001/aaaaaazz/s002_2016/01_tcp_ar/aaaaaazz_s002_t001.edf",
        "EEG OZ-REF",
        "EEG O1-REF",
    )
    for name in ("tuab", "tueg"):
        run_ingest(name, tmp / name, tmp / f"out_{name}")
    run_split(tmp / "out_tuab", "tuab")
    run_split(tmp / "out_tueg", "pretrain")
    return tmp


def leaks(report: dict) -> dict[tuple[str, str], tuple[list[str], set[tuple[str, str, str]]]]:
    return {
        (p["a"]["split"], p["b"]["split"]): (
            p["subjects"],
            {(c["a_recording"], c["b_recording"], c["method"]) for c in p["content"]},
        )
        for p in report["pairs"]
        if p["leak"]
    }


def test_audit_finds_planted_overlaps(corpora: Path) -> None:
    rep_path = corpora / "audit.json"
    rep = run_audit([corpora / "out_tuab", corpora / "out_tueg"], rep_path)
    assert json.loads(rep_path.read_text()) == rep and not rep["ok"]
    found = {}
    for subjects, content in leaks(rep).values():
        for s in subjects:
            found.setdefault(s, set()).add("subject")
        for _a, b, method in content:
            found.setdefault(b.split("_")[1], set()).add(method)
    assert found == {"aaaaaaag": {"subject", "signal_hash"}, "aaaaaazz": {"channel_hash"}}
    zz = [c for p in rep["pairs"] for c in p["content"] if c["b_recording"].startswith("tueg_aaaaaazz")]
    assert zz[0]["a_recording"] == "tuab_aaaaaaah_s002_t001" and zz[0]["channels"] == 23
    # the shared TUAB-train id is reported as an overlap but is not a leak (train vs train)
    tt = [
        p
        for p in rep["pairs"]
        if p["a"]["split"] == "train" and p["b"]["split"] == "train" and p["a"]["source"] != p["b"]["source"]
    ]
    assert [p["subjects"] for p in tt] == [["aaaaaaaa"]] and not tt[0]["leak"]
    # every (source, split) group pair was compared, within and across outputs
    n = len(rep["groups"])
    assert len(rep["pairs"]) == n * (n - 1) // 2


def test_exclusion_removes_the_leak(corpora: Path) -> None:
    table = exclusion_table(corpora / "out_tueg", [corpora / "out_tuab"])
    assert sorted(set(table["subject"])) == ["aaaaaaag", "aaaaaazz"]
    res = CliRunner().invoke(
        data_app,
        [
            "split",
            str(corpora / "out_tueg"),
            "--protocol",
            "pretrain",
            "--exclude-eval-of",
            str(corpora / "out_tuab"),
        ],
    )
    assert res.exit_code == 0, res.output
    splits = pl.read_parquet(corpora / "out_tueg" / "splits.parquet")
    assert not {"aaaaaaag", "aaaaaazz"} & set(splits["subject"])
    assert {"aaaaaaaa", "aaaaaabb"} <= set(splits["subject"])
    ex = pl.read_parquet(corpora / "out_tueg" / "exclusions.parquet")
    assert set(ex["subject"]) == {"aaaaaaag", "aaaaaazz"}
    run_shard(corpora / "out_tueg", "pretrain")
    w = pl.read_parquet(corpora / "out_tueg" / "shards" / "pretrain" / "windows.parquet")
    assert w.height > 0 and not {"aaaaaaag", "aaaaaazz"} & set(w["subject"])
    rep = CliRunner().invoke(
        data_app,
        [
            "audit",
            str(corpora / "out_tuab"),
            str(corpora / "out_tueg"),
            "--report",
            str(corpora / "after.json"),
        ],
    )
    assert rep.exit_code == 0, rep.output
    after = json.loads((corpora / "after.json").read_text())
    assert after["ok"] and after["leaks"] == 0
    # the excluded recordings are still reported as overlapping, as unassigned (in no shard)
    assert any(p["b"]["split"] == "unassigned" and p["content"] for p in after["pairs"])


def test_audit_cli_fails_on_leak_and_correlation_catches_other_preprocessing(corpora: Path) -> None:
    out50 = corpora / "out_tuab50"
    run_ingest("tuab", corpora / "tuab", out50, source_options={"notch_hz": 50})
    run_split(out50, "tuab")
    tueg_fresh = corpora / "out_tueg_fresh"
    shutil.copytree(corpora / "out_tueg", tueg_fresh)
    run_split(tueg_fresh, "pretrain")  # no exclusion
    res = CliRunner().invoke(
        data_app, ["audit", str(out50), str(tueg_fresh), "--report", str(corpora / "a50.json")]
    )
    assert res.exit_code == 1 and "LEAK" in res.output
    rep = json.loads((corpora / "a50.json").read_text())
    assert rep["outs"][0]["preprocess_hash"] != rep["outs"][1]["preprocess_hash"]
    methods = {
        (c["b_recording"].split("_")[1], c["method"]) for p in rep["pairs"] if p["leak"] for c in p["content"]
    }
    assert methods == {("aaaaaaag", "signal_hash"), ("aaaaaazz", "correlation")}
    scores = [c["score"] for p in rep["pairs"] for c in p["content"] if c["method"] == "correlation"]
    assert scores and min(scores) >= 0.99 and rep["correlation"]["pairs_checked"] >= 1
    assert np.isfinite(scores).all()
