"""Issue 2 acceptance 1 and 2 on the complete EEGMAT release (the NeuroLM "Workload" task).

1. ingest + split + shard give 2,088 windows of 19 x 800, split 1,508 / 290 / 290 by subject, label 0 for
   ``SubjectNN_1`` (rest) and 1 for ``SubjectNN_2`` (mental arithmetic), read back from the tar shards with
   webdataset (neurolm-spec.md §2.6).
2. the whole pipeline with 1 and with 2 ingest workers gives byte-identical manifests and shards (only the
   ledger's ``seconds`` timing column may differ).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import webdataset as wds
from fixtures_pipeline import run_pipeline

from neurolm_data.protocols import load_protocol
from neurolm_data.tasks.workload import WORKLOAD_CHANNELS


def test_acceptance_1_workload_windows(workload_out: Path) -> None:
    task_dir = workload_out / "shards" / "workload"
    rec = pl.read_parquet(workload_out / "recordings.parquet")
    assert rec.height == 72
    # Expected label from the file name alone, independent of the source's own labelling.
    expect_label = {
        r: (0 if Path(p).stem.endswith("_1") else 1) for r, p in rec.select("recording_id", "path").rows()
    }
    assert Counter(expect_label.values()) == {0: 36, 1: 36}
    subject_of = dict(rec.select("recording_id", "subject").rows())
    duration = dict(rec.select("recording_id", "duration_s").rows())
    lists = load_protocol("workload").subjects

    counts: Counter[str] = Counter()
    per_recording: dict[str, list[float]] = {}
    for split in ("train", "val", "test"):
        urls = sorted(str(p) for p in (task_dir / split).glob("workload-*.tar"))
        assert urls
        for sample in wds.WebDataset(urls, shardshuffle=False).decode():
            x, meta = sample["eeg.npy"], sample["meta.json"]
            assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (19, 800)
            assert np.isfinite(x).all() and 0.1 < float(np.abs(x).mean()) < 1000.0  # µV scale, not V or zeros
            assert meta["split"] == split and meta["channels"] == list(WORKLOAD_CHANNELS)
            assert meta["label"] == expect_label[meta["recording"]]
            assert meta["subject"] == subject_of[meta["recording"]] and meta["subject"] in lists[split]
            per_recording.setdefault(meta["recording"], []).append(meta["start_s"])
            counts[split] += 1
    assert counts == {"train": 1508, "val": 290, "test": 290}
    assert sum(counts.values()) == 2088
    assert len(per_recording) == 72
    for rid, starts in per_recording.items():  # the last 60 s: 29 windows, 2-s stride, ending at the end
        assert sorted(starts) == pytest.approx([duration[rid] - 60 + 2 * k for k in range(29)], abs=1e-9)
    windows = pl.read_parquet(task_dir / "windows.parquet")
    assert windows.group_by("split").len().sort("split").rows() == [
        ("test", 290),
        ("train", 1508),
        ("val", 290),
    ]
    assert set(windows["n_channels"]) == {19}


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _without_timing(sidecar: Path) -> dict:
    """An ingest sidecar (``recordings/<id>.json``: manifest row + ledger row) minus the ledger's timing."""
    d = json.loads(sidecar.read_text())
    del d["ledger"]["seconds"]
    return d


def test_acceptance_2_byte_identical_with_1_and_2_workers(
    workload_out: Path, eegmat_dir: Path, tmp_path: Path
) -> None:
    # workload_out was built with 2 ingest workers; build the same pipeline with 1.
    one = run_pipeline(
        "workload", eegmat_dir, tmp_path / "out", task="workload", protocol="workload", workers=1
    )
    a, b = _files(one), _files(workload_out)
    assert a.keys() == b.keys()
    assert any(k.endswith(".tar") for k in a) and "splits.parquet" in a and "recordings.parquet" in a
    differ = [k for k in a if k != "ledger.parquet" and a[k].read_bytes() != b[k].read_bytes()]
    # The only files allowed to differ carry the ledger's timing column: ledger.parquet and the per-recording
    # sidecars that ingest writes for resume (they repeat the ledger row).
    sidecars = [k for k in differ if k.startswith("recordings/") and k.endswith(".json")]
    assert differ == sidecars
    assert all(_without_timing(a[k]) == _without_timing(b[k]) for k in sidecars)
    la, lb = (pl.read_parquet(x["ledger.parquet"]).drop("seconds") for x in (a, b))
    assert la.equals(lb)
