"""The README's main job (`neurolm-train pipeline`) end to end on real EEGMAT files, and its resume."""

from __future__ import annotations

import shutil

import polars as pl
from typer.testing import CliRunner

from cli import train_app

#: Two train subjects, one val and one test subject of the Workload protocol (spec §2.6).
SUBJECTS = ("Subject00", "Subject01", "Subject27", "Subject33")


def test_pipeline_runs_and_resumes(eegmat_dir, tmp_path):
    root = tmp_path / "eegmat"
    root.mkdir()
    for s in SUBJECTS:
        for run in (1, 2):
            shutil.copy(eegmat_dir / f"{s}_{run}.edf", root)
    out = tmp_path / "out"
    args = [
        "pipeline",
        "--root",
        str(root),
        "--out",
        str(out),
        "-m",
        "chance-majority",
        "-m",
        "bandpower-lr",
        "--seeds",
        "0",
    ]
    first = CliRunner().invoke(train_app, args)
    assert first.exit_code == 0, first.output
    windows = pl.read_parquet(out / "shards" / "workload" / "windows.parquet")
    assert windows.height == 8 * 29
    assert windows.group_by("split").len().sort("split").to_dicts() == [
        {"split": "test", "len": 58},
        {"split": "train", "len": 116},
        {"split": "val", "len": 58},
    ]
    md = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "bandpower-lr" in md and "chance-majority" in md and "reported" in md
    assert (out / "leaderboard" / "leaderboard.png").stat().st_size > 1000
    second = CliRunner().invoke(train_app, args)
    assert second.exit_code == 0, second.output
    assert "0 already done" not in second.output and "8 already done" in second.output
    assert second.output.count("skipped") >= 2  # both leaderboard records are current


def test_pipeline_without_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUROLM_EEGMAT", raising=False)
    res = CliRunner().invoke(train_app, ["pipeline", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--root" in res.output and "--download" in res.output
