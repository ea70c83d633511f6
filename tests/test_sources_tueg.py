"""Sources ``tueg`` and ``edf`` (acceptance 6 of issue 2) and ``workload`` discovery, on real signals.

The TUEG tree is built by ``tests/fixtures_tuh.py`` from real EEGMAT signals (FIXTURES.md §2.1): REF and LE
montages, the ``03_tcp_ar_a`` folder, 250 and 256 Hz, 1-Hz IBI/BURSTS/SUPPR, EKG/PHOTIC and a leftover
``EEG 26-REF``-style channel. ``tuh-nedc/example.edf`` and the two Nihon Kohden files go through ``edf``.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from fixtures_tuh import DEFAULT_TUEG_SPECS, build_tueg_tree, write_tuh_edf

from neurolm_data.channels import STANDARD_1020
from neurolm_data.ingest import run_ingest
from neurolm_data.sources import get_source


@pytest.fixture(scope="module")
def tueg_ingest(tmp_path_factory, eegmat_dir):
    root = tmp_path_factory.mktemp("tueg")
    files = build_tueg_tree(root, eegmat_dir)
    write_tuh_edf(root / "edf" / "stray.edf", seconds=5, source_edf=eegmat_dir / "Subject04_1.edf")
    out = root.parent / (root.name + "_out")
    summary = run_ingest("tueg", root, out, workers=2)
    return root, files, out, summary


def test_tueg_layout_ingests_with_vocabulary_indices(tueg_ingest):
    root, files, out, summary = tueg_ingest
    assert (summary.n_done, summary.n_failed, summary.n_skipped) == (5, 0, 1)
    rows = {r["path"]: r for r in pq.read_table(out / "recordings.parquet").to_pylist()}
    for f, spec in zip(
        files, sorted(DEFAULT_TUEG_SPECS, key=lambda s: (s.group, s.subject, s.session, s.token)), strict=True
    ):
        r = rows[f.path.relative_to(root).as_posix()]
        assert (r["subject"], r["session"], r["run"]) == (spec.subject, spec.session, spec.token)
        assert r["recording_id"] == f"tueg_{spec.subject}_{spec.session}_{spec.token}"
        assert r["channels"] == f.eeg_names
        assert r["channel_indices"] == [STANDARD_1020.index(n) for n in f.eeg_names]
        assert r["montage"] == {"REF": "REF", "LE": "LE", "AR_A": "REF"}[f.montage]  # LE files are kept
        assert (
            json.loads(r["extra"])["montage_folder"]
            == {"REF": "01_tcp_ar", "LE": "02_tcp_le", "AR_A": "03_tcp_ar_a"}[f.montage]
        )
        assert r["n_samples"] == int(spec.seconds * 200) and r["sfreq"] == 200.0
        dropped = dict(map(tuple, json.loads(r["dropped_channels"])))
        assert "sampling rate 1 Hz differs from the EEG rate" in dropped["IBI"]
        assert set(f.odd_rate_channels) | {"PHOTIC-REF"} <= set(dropped)
        assert any(k.startswith("EEG EKG1-") for k in dropped)
        assert ("EEG 26-LE" in dropped) == spec.leftovers
        x = np.load(out / r["store_path"], mmap_mode="r")
        assert x.shape == (len(f.eeg_names), r["n_samples"])
        assert np.abs(x[:, 400:-400].mean(axis=1)).max() < 5.0  # the ~3-4.5 mV DC offsets are gone
        assert json.loads(r["extra"])["reader"]["age"] == 60
    led = {r["path"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}
    assert led["edf/stray.edf"]["status"] == "skipped" and "TUEG layout" in led["edf/stray.edf"]["reason"]


def test_tueg_signal_is_the_real_eeg(tueg_ingest, eegmat_dir):
    # the 250-Hz REF file holds Subject00_1 [0, 60) s: its stored FP1 must track EEGMAT's FP1 through
    # the pipeline (same filter chain on the 500-Hz original, compared away from the edges)
    from neurolm_data.preprocess import PreprocessConfig, preprocess
    from neurolm_data.readers import read_edf

    root, files, out, _ = tueg_ingest
    x = np.load(out / "recordings" / "tueg_aaaaaaaa_s001_2015_t000.npy")[0]
    orig = read_edf(eegmat_dir / "Subject00_1.edf", channels=["FP1"]).data[:, : 60 * 500]
    ref = preprocess(orig, 500.0, PreprocessConfig().resolved(60.0))[0]
    a, b = x[600:-600].astype(float), ref[600:-600].astype(float)
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_tueg_discovery_and_montage_mismatch(tmp_path, eegmat_dir):
    # an LE-labelled file filed under 01_tcp_ar is kept, montage from the names, conflict noted
    p = tmp_path / "edf" / "000" / "aaaaaaax" / "s001_2019" / "01_tcp_ar" / "aaaaaaax_s001_t000.edf"
    write_tuh_edf(p, montage="LE", seconds=10, source_edf=eegmat_dir / "Subject05_2.edf")
    src = get_source("tueg")
    (ref,) = src.discover(tmp_path)
    sig = src.read(ref)
    assert "montage_mismatch" in sig.meta and sig.sfreq == 250.0 and len(sig.ch_names) == 19
    with pytest.raises(FileNotFoundError):
        src.discover(tmp_path / "edf" / "000" / "aaaaaaax")  # no edf/ layout below


def test_edf_source_reads_tuh_example_and_nihon_kohden(samples_dir, tmp_path):
    root = tmp_path / "edfs"
    (root / "tuh").mkdir(parents=True)
    (root / "nk").mkdir()
    (root / "tuh" / "example.edf").symlink_to(samples_dir / "tuh-nedc" / "example.edf")
    for n in ("MB0400FU.EDF", "chtypes_edf.edf"):
        (root / "nk" / n).symlink_to(samples_dir / "nihon-kohden" / n)
    s = run_ingest("edf", root, tmp_path / "out", source_options={"notch_hz": 60})
    assert (s.n_done, s.n_failed) == (3, 0)
    rows = {r["subject"]: r for r in pq.read_table(tmp_path / "out" / "recordings.parquet").to_pylist()}
    ex, mb, ch = rows["example"], rows["MB0400FU"], rows["chtypes_edf"]
    # example.edf: plain EDF, 250 Hz + 1-Hz channels, 5 s, ~4.5 mV DC offset
    assert ex["session"] == "tuh" and ex["n_samples"] == 1000 and ex["montage"] == "REF"
    assert ex["channels"][:4] == ["FP1", "FP2", "F3", "F4"] and len(ex["channels"]) == 23
    assert json.loads(ex["extra"])["reader"] == {"reader": "pyedflib", "file_type": "EDF"}
    # MB0400FU.EDF: EDF+D read through MNE, right hemisphere first, mixed-case -Ref names
    assert json.loads(mb["extra"])["reader"]["file_type"] == "EDF+D"
    assert mb["channels"][:4] == ["FP2", "FP1", "F4", "F3"] and mb["n_samples"] == 29 * 200
    assert mb["channel_indices"][:2] == [2, 0] and mb["montage"] == "REF"
    assert len(json.loads(mb["events"])) > 0
    # chtypes_edf.edf: EDF+C with POL/ECG/SaO2 extras dropped and listed, annotations kept as events
    dropped = dict(map(tuple, json.loads(ch["dropped_channels"])))
    assert {"ECG ECG1", "SaO2 X9", "POL DC01"} <= set(dropped)
    assert ["T7", "T8", "P7", "P8"] == [c for c in ch["channels"] if c in ("T7", "T8", "P7", "P8")]
    assert any(e[3] == "A1+A2 OFF" for e in json.loads(ch["events"]))


def test_workload_discovery_on_the_complete_release(eegmat_dir):
    refs = get_source("workload").discover(eegmat_dir)
    assert len(refs) == 72 and len({r.subject for r in refs}) == 36
    assert [r.label for r in refs[:4]] == [0, 1, 0, 1]
    assert refs[0].recording_id == "workload_Subject00_1" and refs[-1].recording_id == "workload_Subject35_2"
    assert get_source("workload").skipped(eegmat_dir) == []
    with pytest.raises(ValueError, match="unknown option"):
        get_source("workload", bogus=1)
