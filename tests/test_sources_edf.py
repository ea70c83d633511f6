"""The ``edf`` source's ``subject_regex``: a person's files share one subject, so splits keep them together."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from neurolm_data.ingest import run_ingest
from neurolm_data.sources import get_source
from neurolm_data.split import run_split


def _copy(eegmat_dir, dest, names):
    dest.mkdir()
    for n in names:
        shutil.copy(eegmat_dir / n, dest)
    return dest


def test_default_subject_is_the_file_stem(eegmat_dir, tmp_path):
    root = _copy(eegmat_dir, tmp_path / "r", ["Subject03_1.edf", "Subject03_2.edf"])
    refs = get_source("edf").discover(root)
    assert [(r.subject, r.run) for r in refs] == [("Subject03_1", ""), ("Subject03_2", "")]


def test_subject_regex_groups_a_persons_recordings(eegmat_dir, tmp_path):
    names = [f"Subject{s:02d}_{r}.edf" for s in (3, 7, 11) for r in (1, 2)]
    root = _copy(eegmat_dir, tmp_path / "r", names)
    src = get_source("edf", subject_regex=r"(?P<subject>Subject\d+)_")
    refs = src.discover(root)
    assert [r.subject for r in refs] == [
        "Subject03",
        "Subject03",
        "Subject07",
        "Subject07",
        "Subject11",
        "Subject11",
    ]
    assert len({r.recording_id for r in refs}) == 6  # the run (whole stem) keeps ids unique
    out = tmp_path / "out"
    summary = run_ingest(
        "edf", root, out, workers=1, source_options={"subject_regex": r"(?P<subject>Subject\d+)_"}
    )
    assert summary.n_failed == 0
    run_split(out, "pretrain")
    splits = pl.read_parquet(out / "splits.parquet")
    assert sorted(splits["subject"].to_list()) == [
        "Subject03",
        "Subject07",
        "Subject11",
    ]  # one row per person


def test_subject_regex_errors_name_the_problem(eegmat_dir, tmp_path):
    root = _copy(eegmat_dir, tmp_path / "r", ["Subject03_1.edf"])
    with pytest.raises(ValueError, match="not a regular expression"):
        get_source("edf", subject_regex="(")
    with pytest.raises(ValueError, match="Subject03_1.edf: file name does not match"):
        get_source("edf", subject_regex=r"^patient(\d+)").discover(root)
