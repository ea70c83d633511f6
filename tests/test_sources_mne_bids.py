"""Issue 17, acceptance 2: the ``mne`` and ``bids`` sources on real recordings.

The ``mne`` source ingests the BrainVision, EEGLAB, Neuroscan CNT and GDF samples of ``../shared/eeg-samples``.
A BIDS dataset written with mne-bids in ``tmp_path`` from real EEGMAT EDF files and the BrainVision sample ingests
through ``bids`` with one command, taking subjects, sessions, events and labels from the BIDS files.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import mne
import polars as pl
import pytest
from typer.testing import CliRunner

from cli import data_app
from neurolm_data.ingest import run_ingest

#: 10-20 names given, in file order, to the EEGLAB sample's ``EEG 000``..``EEG 031`` and the CNT sample's
#: numbered electrodes: those files number their channels, so a user supplies the names (``-o rename=``).
NAMES = (
    "FP1",
    "FP2",
    "F7",
    "F3",
    "FZ",
    "F4",
    "F8",
    "T7",
    "C3",
    "CZ",
    "C4",
    "T8",
    "P7",
    "P3",
    "PZ",
    "P4",
    "P8",
    "O1",
    "OZ",
    "O2",
    "AF3",
    "AF4",
    "FC5",
    "FC1",
    "FC2",
    "FC6",
    "CP5",
    "CP1",
    "CP2",
    "CP6",
    "PO3",
    "PO4",
)
FILES = (
    "brainvision/test.vhdr",
    "brainvision/test.eeg",
    "brainvision/test.vmrk",
    "eeglab/test_raw.set",
    "eeglab/test_raw.fdt",
    "gdf/test_1ch.gdf",
    "neuroscan-cnt/scan41_short.cnt",
)


def _events(rec: dict) -> list[list]:
    return json.loads(rec["events"])


def test_mne_source_reads_four_formats(samples_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples_dir / f, root / f)
    rename = {
        **{f"EEG {i:03d}": n for i, n in enumerate(NAMES)},
        **{str(i + 1): n for i, n in enumerate(NAMES)},
        "ECG": "CZ",
    }  # the GDF sample is a 1-channel ECG standing in for GDF reader coverage (its README)
    (tmp_path / "rename.json").write_text(json.dumps(rename))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        data_app,
        [
            "ingest",
            "mne",
            str(root),
            "--out",
            str(out),
            "-o",
            f"rename={tmp_path / 'rename.json'}",
            "-o",
            "data_format=int16",
            "-o",
            "events=Stimulus/S255:1",
        ],
    )
    assert res.exit_code == 0, res.output
    rec = {
        r["extra"] and json.loads(r["extra"])["format"]: r
        for r in pl.read_parquet(out / "recordings.parquet").to_dicts()
    }
    assert sorted(rec) == ["cnt", "gdf", "set", "vhdr"]
    assert rec["set"]["channels"][:3] == ["FP1", "FP2", "F7"] and len(rec["set"]["channels"]) == 32
    assert len(rec["cnt"]["channels"]) == 32 and rec["gdf"]["channels"] == ["CZ"]
    assert rec["vhdr"]["channels"][:4] == ["FP1", "FP2", "F3", "F4"]
    for r in rec.values():
        assert r["sfreq"] == 200.0 and r["n_samples"] > 200
    # EEGLAB at 128 Hz and GDF at 150 Hz are up-sampled before the 75-Hz low-pass
    assert json.loads(rec["set"]["extra"])["reader"]["upsampled_from_hz"] == 128.0
    assert abs(rec["set"]["duration_s"] - 238.3125) < 0.01
    # annotations of each format become events; the mapped BrainVision marker gets its label
    vhdr = mne.io.read_raw_brainvision(samples_dir / "brainvision" / "test.vhdr", verbose="error")
    stim = [round(a["onset"], 3) for a in vhdr.annotations if a["description"] == "Stimulus/S255"]
    mapped = [e for e in _events(rec["vhdr"]) if e[3] == "Stimulus/S255"]
    assert stim and [round(e[0], 3) for e in mapped] == stim and all(e[2] == 1 for e in mapped)
    assert any(e[2] == -1 for e in _events(rec["vhdr"]))
    assert {e[3] for e in _events(rec["cnt"])} >= {"7", "109"}
    assert len(_events(rec["set"])) == 154


def test_mne_source_names_an_unreadable_file(samples_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(samples_dir / "gdf" / "test_1ch.gdf", root / "ok.gdf")
    (root / "broken.set").write_bytes(b"not a MATLAB file")
    summary = run_ingest("mne", root, tmp_path / "out", source_options={"rename": "ECG:CZ"})
    assert summary.n_failed == 1 and "broken.set" in summary.failures[0][1]
    assert pl.read_parquet(tmp_path / "out" / "recordings.parquet").height == 1


def _write_bids(samples_dir: Path, root: Path) -> None:
    """sub-00 and sub-01 from EEGMAT EDF files (EDF), sub-02/ses-01 from the BrainVision sample (BrainVision)."""
    from mne_bids import BIDSPath, write_raw_bids

    for sub, (name, desc) in {"00": ("Subject00_1", "rest"), "01": ("Subject01_2", "arithmetic")}.items():
        raw = mne.io.read_raw_edf(samples_dir / "eegmat" / f"{name}.edf", verbose="error")
        raw.set_channel_types({"ECG ECG": "ecg"})
        raw.set_annotations(
            mne.Annotations([10.0, 30.0, 50.0], [4.0, 4.0, 4.0], [desc] * 3, orig_time=raw.info["meas_date"])
        )
        write_raw_bids(
            raw,
            BIDSPath(subject=sub, task="arithmetic", root=root, datatype="eeg"),
            format="EDF",
            verbose="error",
        )
    raw = mne.io.read_raw_brainvision(samples_dir / "brainvision" / "test.vhdr", verbose="error")
    write_raw_bids(
        raw, BIDSPath(subject="02", session="01", task="oddball", root=root, datatype="eeg"), verbose="error"
    )  # format "auto": the BrainVision files are copied as they are
    path = root / "participants.tsv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["group"] = "patient" if r["participant_id"] == "sub-01" else "control"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def test_bids_dataset_ingests_with_one_command(samples_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "bids"
    _write_bids(samples_dir, root)
    assert (root / "sub-02" / "ses-01" / "eeg" / "sub-02_ses-01_task-oddball_events.tsv").is_file()
    out = tmp_path / "out"
    res = CliRunner().invoke(
        data_app,
        [
            "ingest",
            "bids",
            str(root),
            "--out",
            str(out),
            "-o",
            "events=rest:0,arithmetic:1",
            "-o",
            "label_column=group",
            "-o",
            "labels=control:0,patient:1",
        ],
    )
    assert res.exit_code == 0, res.output
    rec = {r["subject"]: r for r in pl.read_parquet(out / "recordings.parquet").to_dicts()}
    assert sorted(rec) == ["sub-00", "sub-01", "sub-02"]
    assert rec["sub-02"]["session"] == "ses-01" and rec["sub-00"]["session"] == ""
    assert rec["sub-00"]["run"] == "task-arithmetic" and rec["sub-02"]["run"] == "task-oddball"
    # labels from participants.tsv, participant rows kept
    assert [rec[s]["label"] for s in ("sub-00", "sub-01", "sub-02")] == [0, 1, 0]
    assert json.loads(rec["sub-01"]["extra"])["participant"]["group"] == "patient"
    # events from events.tsv: onsets, durations and the mapped trial_type labels
    for sub, label in (("sub-00", 0), ("sub-01", 1)):
        ev = [e for e in _events(rec[sub]) if e[2] >= 0]
        assert [(round(e[0], 3), e[1], e[2]) for e in ev] == [
            (10.0, 4.0, label),
            (30.0, 4.0, label),
            (50.0, 4.0, label),
        ]
    assert len(_events(rec["sub-02"])) > 0 and all(e[2] == -1 for e in _events(rec["sub-02"]))
    # channels.tsv types: the EEGMAT ECG channel (written as type ECG) is dropped as a non-EEG type
    dropped = dict(json.loads(rec["sub-00"]["dropped_channels"]))
    assert "ECG ECG" in dropped and len(rec["sub-00"]["channels"]) == 19
    # a re-run finds everything done
    again = run_ingest(
        "bids",
        root,
        out,
        source_options={
            "events": "rest:0,arithmetic:1",
            "label_column": "group",
            "labels": "control:0,patient:1",
        },
    )
    assert again.n_reused == 3 and again.n_processed == 0 and again.n_failed == 0


def test_bids_refuses_an_unmapped_participant(samples_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "bids"
    _write_bids(samples_dir, root)
    with pytest.raises(ValueError, match="sub-01 has group='patient'"):
        run_ingest(
            "bids", root, tmp_path / "out", source_options={"label_column": "group", "labels": "control:0"}
        )
