"""Ingest (neurolm_data/ingest.py) on real EEGMAT files: manifests, determinism, resume, bad input, CLI.

Acceptance 3 (an interrupted ingest resumes without redoing finished recordings) and 4 (each bad input kind
ends up in the ledger with its reason while the others complete) of issue 2, plus byte-identical manifests
for 1 and 2 workers. Corpora are built in ``tmp_path`` from symlinks to, or damaged copies of, real files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyedflib
import pytest
import xxhash
from typer.testing import CliRunner

from cli import data_app
from neurolm_data.channels import STANDARD_1020
from neurolm_data.download import eegmat_data_files, fetch_eegmat, parse_sha256sums, verify_folder
from neurolm_data.ingest import ConfigMismatchError, run_ingest
from neurolm_data.sources.workload import WORKLOAD_CHANNELS

SUBSET = ("Subject00_1.edf", "Subject00_2.edf", "Subject31_1.edf", "Subject31_2.edf")


def link_files(src: Path, dst: Path, names) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dst / n).symlink_to(src / n)
    return dst


def ledger_without_seconds(out: Path):
    t = pq.read_table(out / "ledger.parquet")
    return t.drop(["seconds"])


def write_edf(path: Path, labels: list[str], data: np.ndarray, sfreq: int) -> Path:
    """Plain EDF with pyedflib: real µV samples, 1-s records."""
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders(
        [
            dict(
                label=lab,
                dimension="uV",
                sample_frequency=sfreq,
                physical_min=-3000.0,
                physical_max=3000.0,
                digital_min=-32768,
                digital_max=32767,
            )
            for lab in labels
        ]
    )
    w.writeSamples(list(data))
    w.close()
    return path


def test_workload_manifest_follows_the_contract(eegmat_dir, tmp_path):
    root = link_files(eegmat_dir, tmp_path / "eegmat", SUBSET)
    s = run_ingest("workload", root, tmp_path / "out")
    assert (s.n_done, s.n_failed, s.n_processed, s.ok) == (4, 0, 4, True)
    rec = pq.read_table(tmp_path / "out" / "recordings.parquet").to_pylist()
    assert [r["recording_id"] for r in rec] == [
        "workload_Subject00_1",
        "workload_Subject00_2",
        "workload_Subject31_1",
        "workload_Subject31_2",
    ]
    cfg = json.loads((tmp_path / "out" / "ingest_config.json").read_text())
    for r in rec:
        assert r["label"] == (0 if r["run"] == "1" else 1)
        assert r["channels"] == list(WORKLOAD_CHANNELS)
        assert r["channel_indices"] == [STANDARD_1020.index(c) for c in WORKLOAD_CHANNELS]
        assert r["channel_indices"][:3] == [0, 2, 17] and r["channel_indices"][6] == 88  # FP1 FP2 F3 .. T3
        assert r["sfreq"] == 200.0 and r["duration_s"] == r["n_samples"] / 200.0
        assert r["montage"] == "unspecified" and r["config_hash"] == cfg["config_hash"]
        assert dict(map(tuple, json.loads(r["dropped_channels"]))) == {
            "ECG ECG": "non-EEG channel type",
            "EEG A2-A1": "reference-electrode pair 'A2-A1' (not a scalp channel)",
        }
        x = np.load(tmp_path / "out" / r["store_path"], mmap_mode="r", allow_pickle=False)
        assert x.dtype == np.float32 and x.shape == (19, r["n_samples"])
        assert xxhash.xxh3_128_hexdigest(np.ascontiguousarray(x).tobytes()) == r["data_hash"]
    # EEGMAT durations are not fixed: _1 182 s (Subject31_1: 80 s), _2 62 s (eegmat/README.md)
    assert [r["n_samples"] for r in rec] == [36400, 12400, 16000, 12400]
    assert cfg["config"]["preprocess"]["notch_hz"] == 50.0 and cfg["config"]["source"] == "workload"


def test_signal_hash_is_the_integer_samples_and_their_calibration(eegmat_dir, tmp_path):
    # docs/architecture.md: for an EDF read as integers, signal_hash = XXH3-128(int16 samples of the kept
    # channels, then per-channel gain and offset as float64), which determine the decoded µV exactly
    from neurolm_data.readers import read_edf

    root = link_files(eegmat_dir, tmp_path / "eegmat", ("Subject03_2.edf",))
    run_ingest("workload", root, tmp_path / "out")
    rec = pq.read_table(tmp_path / "out" / "recordings.parquet").to_pylist()[0]
    sig = read_edf(eegmat_dir / "Subject03_2.edf", channels=WORKLOAD_CHANNELS)
    d = sig.digital
    blob = (
        d.samples.astype("<i2").tobytes() + d.gain.astype("<f8").tobytes() + d.offset.astype("<f8").tobytes()
    )
    assert rec["signal_hash"] == xxhash.xxh3_128_hexdigest(blob) == d.content_hash()
    edf = pyedflib.EdfReader(str(eegmat_dir / "Subject03_2.edf"))
    labels = [lab.strip() for lab in edf.getSignalLabels()]
    decoded = d.decode()
    for row, name in enumerate(sig.ch_names):
        np.testing.assert_array_equal(decoded[row], edf.readSignal(labels.index(name)))
    edf.close()
    # reading .data materializes the float64 signal; from then on it is the signal (digital is dropped)
    np.testing.assert_array_equal(sig.data, decoded)
    assert sig.digital is None and sig.n_samples == decoded.shape[1]


def test_spawned_workers_get_single_threaded_openblas_and_the_parent_env_is_restored(monkeypatch):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from neurolm_data.ingest import _worker_environment

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with _worker_environment("spawn"):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            assert pool.submit(os.getenv, "OPENBLAS_NUM_THREADS").result() == "1"
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    with _worker_environment("fork"):  # forked workers share the parent's numpy: nothing to set
        assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")  # the user's choice wins and stays
    with _worker_environment("spawn"):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"


@pytest.mark.parametrize("mp_context", [None, "forkserver"])  # default (fork on Linux) and a pickling method
def test_manifests_identical_for_one_and_two_workers(eegmat_dir, tmp_path, mp_context):
    root = link_files(eegmat_dir, tmp_path / "eegmat", SUBSET)
    run_ingest("workload", root, tmp_path / "w1", workers=1)
    s2 = run_ingest("workload", root, tmp_path / "w2", workers=2, mp_context=mp_context)
    assert s2.n_done == 4 and s2.n_processed == 4
    a, b = tmp_path / "w1", tmp_path / "w2"
    assert (a / "recordings.parquet").read_bytes() == (b / "recordings.parquet").read_bytes()
    assert ledger_without_seconds(a).equals(ledger_without_seconds(b))
    for n in sorted(os.listdir(a / "recordings")):
        if n.endswith(".npy"):
            assert (a / "recordings" / n).read_bytes() == (b / "recordings" / n).read_bytes()


def test_resume_does_not_redo_finished_recordings(eegmat_dir, tmp_path):
    root = link_files(eegmat_dir, tmp_path / "eegmat", SUBSET[:2])
    out = tmp_path / "out"
    run_ingest("workload", root, out)
    first = {n: (out / "recordings" / n).stat().st_mtime_ns for n in os.listdir(out / "recordings")}
    link_files(eegmat_dir, root, SUBSET[2:])
    s = run_ingest("workload", root, out)
    assert (s.n_reused, s.n_processed, s.n_done) == (2, 2, 4)
    assert {n: (out / "recordings" / n).stat().st_mtime_ns for n in first} == first  # untouched
    fresh = run_ingest("workload", root, tmp_path / "fresh")
    assert fresh.n_processed == 4
    assert (out / "recordings.parquet").read_bytes() == (
        tmp_path / "fresh" / "recordings.parquet"
    ).read_bytes()


def test_killed_ingest_resumes_where_it_stopped(eegmat_dir, tmp_path):
    names = [f"Subject{i:02d}_1.edf" for i in range(10)]
    root = link_files(eegmat_dir, tmp_path / "eegmat", names)
    out = tmp_path / "out"
    code = (
        "import sys; from neurolm_data.ingest import run_ingest; "
        "run_ingest('workload', sys.argv[1], sys.argv[2], engine='mne')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(out)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(list((out / "recordings").glob("*.json"))) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.stem for p in (out / "recordings").glob("*.json"))
    assert 2 <= len(finished) < len(names), f"kill came too late or too early: {finished}"
    assert not (out / "recordings.parquet").exists()  # the killed run never got to its manifests
    mtimes = {p: (out / "recordings" / f"{p}.npy").stat().st_mtime_ns for p in finished}
    s = run_ingest("workload", root, out, engine="mne")
    assert (s.n_reused, s.n_processed, s.n_done) == (len(finished), len(names) - len(finished), len(names))
    assert {p: (out / "recordings" / f"{p}.npy").stat().st_mtime_ns for p in finished} == mtimes
    assert not list((out / "recordings").glob("*.tmp"))  # temp files are cleaned by os.replace or unlink
    assert pq.read_table(out / "ledger.parquet").column("status").to_pylist() == ["done"] * len(names)


def test_changed_config_is_refused_unless_forced(eegmat_dir, tmp_path):
    root = link_files(eegmat_dir, tmp_path / "eegmat", SUBSET[1:2])
    out = tmp_path / "out"
    first = run_ingest("workload", root, out)
    with pytest.raises(ConfigMismatchError, match="--force"):
        run_ingest("workload", root, out, source_options={"notch_hz": 60})
    s = run_ingest("workload", root, out, source_options={"notch_hz": 60}, force=True)
    assert s.n_processed == 1 and s.config_hash != first.config_hash
    cfg = json.loads((out / "ingest_config.json").read_text())
    assert cfg["config_hash"] == s.config_hash and cfg["config"]["preprocess"]["notch_hz"] == 60.0


def _garble_annotations(src: Path, dst: Path) -> Path:
    """Copy an EDF+ and overwrite its 'EDF Annotations' bytes in every data record (signals intact)."""
    b = bytearray(src.read_bytes())
    ns = int(b[252:256])
    labels = [b[256 + 16 * i : 256 + 16 * (i + 1)].decode().strip() for i in range(ns)]
    nsamp = [int(b[256 + ns * 216 + 8 * i : 256 + ns * 216 + 8 * (i + 1)]) for i in range(ns)]
    n_rec, a = int(b[236:244]), labels.index("EDF Annotations")
    rec, off = sum(nsamp) * 2, 256 * (ns + 1) + sum(nsamp[:a]) * 2
    for r in range(n_rec):
        b[off + r * rec : off + r * rec + nsamp[a] * 2] = b"\xff" * (nsamp[a] * 2)
    dst.write_bytes(bytes(b))
    return dst


def test_every_bad_input_kind_is_a_failed_ledger_row(samples_dir, eegmat_dir, tmp_path):
    root = tmp_path / "edfs"
    root.mkdir()
    shutil.copy(samples_dir / "nihon-kohden" / "chtypes_edf.edf", root / "good_nk.edf")
    shutil.copy(samples_dir / "tuh-nedc" / "example.edf", root / "good_tuh.edf")
    data = (eegmat_dir / "Subject00_2.edf").read_bytes()
    (root / "truncated.edf").write_bytes(data[: len(data) * 6 // 10])
    (root / "garbage.edf").write_bytes(b"this is not an EDF header " * 200)
    (root / "empty.edf").write_bytes(b"")
    shutil.copy(samples_dir / "sleep-edf" / "SC4001EC-Hypnogram.edf", root / "no_eeg_hypnogram.edf")
    shutil.copy(samples_dir / "sleep-edf" / "SC4001E0-PSG.edf", root / "no_eeg_bipolar_psg.edf")
    _garble_annotations(samples_dir / "nihon-kohden" / "chtypes_edf.edf", root / "bad_annotations.edf")
    real = pyedflib.EdfReader(str(eegmat_dir / "Subject00_2.edf"))
    x = np.array([real.readSignal(i, 0, 1000) for i in range(3)])  # 2 s of real EEG
    real.close()
    write_edf(root / "short.edf", ["EEG Fp1", "EEG Cz", "EEG O2"], x, 500)
    s = run_ingest("edf", root, tmp_path / "out", min_duration_s=4.0)
    led = {r["path"]: r for r in pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()}
    assert {p for p, r in led.items() if r["status"] == "done"} == {"good_nk.edf", "good_tuh.edf"}
    expected = {
        "truncated.edf": "truncated EDF",
        "garbage.edf": "corrupt EDF",
        "empty.edf": "not an EDF/BDF file",
        "no_eeg_hypnogram.edf": "no usable EEG channel",
        "no_eeg_bipolar_psg.edf": "no usable EEG channel",
        "bad_annotations.edf": "unreadable EDF+ annotations",
        "short.edf": "shorter than one window (4 s)",
    }
    for name, phrase in expected.items():
        assert led[name]["status"] == "failed", name
        assert led[name]["reason"].startswith(f"{name}: ") and phrase in led[name]["reason"], led[name][
            "reason"
        ]
    assert (s.n_failed, s.n_done, s.ok) == (7, 2, False)
    assert len(pq.read_table(tmp_path / "out" / "recordings.parquet")) == 2
    # a rerun retries the failures but not the finished recordings
    again = run_ingest("edf", root, tmp_path / "out", min_duration_s=4.0)
    assert (again.n_reused, again.n_processed, again.n_failed) == (2, 7, 7)


def test_cli_exit_status_and_summary_on_bad_workload_files(eegmat_dir, tmp_path):
    root = link_files(eegmat_dir, tmp_path / "eegmat", SUBSET[:2])
    data = (eegmat_dir / "Subject01_1.edf").read_bytes()
    (root / "Subject90_1.edf").write_bytes(data[:100_000])  # truncated
    r = pyedflib.EdfReader(str(eegmat_dir / "Subject01_2.edf"))
    labels = [
        f"EEG {c}"
        for c in (
            "Fp1",
            "Fp2",
            "F3",
            "F4",
            "F7",
            "F8",
            "T3",
            "T4",
            "C3",
            "C4",
            "T5",
            "T6",
            "P3",
            "P4",
            "O1",
            "O2",
            "Fz",
            "Cz",
            "Pz",
        )
    ]
    x = np.array([r.readSignal(i, 0, 1500) for i in range(19)])  # 3 s < one 4-s Workload window
    r.close()
    write_edf(root / "Subject91_2.edf", labels, x, 500)
    write_edf(root / "Subject92_1.edf", labels[:5], x[:5], 500)  # 14 of the 19 channels missing
    (root / "notes.edf").write_bytes(b"")  # not an EEGMAT name: skipped
    proc = subprocess.run(
        [
            shutil.which("neurolm-data") or "neurolm-data",
            "ingest",
            "workload",
            str(root),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "3 failed" in proc.stderr and "2 recordings ingested" in proc.stderr and "1 skipped" in proc.stderr
    led = {x["path"]: x for x in pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()}
    assert "truncated EDF" in led["Subject90_1.edf"]["reason"]
    assert "shorter than one window (4 s)" in led["Subject91_2.edf"]["reason"]
    assert "missing Workload channel(s)" in led["Subject92_1.edf"]["reason"]
    assert led["notes.edf"]["status"] == "skipped" and led["notes.edf"]["recording_id"] is None


def test_download_verifies_published_sha256(eegmat_dir, tmp_path):
    sums = parse_sha256sums((eegmat_dir / "SHA256SUMS.txt").read_text())
    assert len(sums) == 75 and sum(n.endswith(".edf") for n in sums) == 72
    assert verify_folder(eegmat_dir, {n: sums[n] for n in ("Subject00_1.edf", "RECORDS")}) == []
    # a complete local copy: pooch verifies every file against the sums and downloads nothing (offline)
    dest = tmp_path / "cache"
    dest.mkdir()
    files = eegmat_data_files(sums)
    assert len(files) == 74  # 72 EDF + RECORDS + subject-info.csv
    for n in [*files, "SHA256SUMS.txt"]:
        (dest / n).symlink_to(eegmat_dir / n)
    assert fetch_eegmat(dest) == dest
    # a damaged file is detected; pooch would re-download it (no network here: it must not pass silently)
    (dest / "Subject00_2.edf").unlink()
    damaged = bytearray((eegmat_dir / "Subject00_2.edf").read_bytes())
    damaged[5000] ^= 0xFF
    (dest / "Subject00_2.edf").write_bytes(bytes(damaged))
    assert verify_folder(dest, {n: sums[n] for n in files}) == ["Subject00_2.edf"]
    with pytest.raises(Exception):  # noqa: B017 - ValueError (hash) or a network error, never success
        fetch_eegmat(dest)
    with pytest.raises(ValueError, match="line 1"):
        parse_sha256sums("not-a-hash Subject00_1.edf\n")


def test_cli_engine_exact_is_its_own_config(eegmat_dir, tmp_path):
    # `neurolm-data ingest --engine exact`: another preprocessing config (hash), refused over a fast ingest
    # without --force, and the same shapes as the default engine
    root = link_files(eegmat_dir, tmp_path / "eegmat", SUBSET[:1])
    fast = run_ingest("workload", root, tmp_path / "fast")
    run = CliRunner().invoke(
        data_app, ["ingest", "workload", str(root), "--out", str(tmp_path / "exact"), "--engine", "exact"]
    )
    assert run.exit_code == 0, run.output
    cfg = json.loads((tmp_path / "exact" / "ingest_config.json").read_text())
    assert cfg["config"]["preprocess"]["engine"] == "exact" and cfg["config_hash"] != fast.config_hash
    a, b = (pq.read_table(tmp_path / d / "recordings.parquet").to_pylist()[0] for d in ("fast", "exact"))
    assert a["n_samples"] == b["n_samples"] and a["data_hash"] != b["data_hash"]
    with pytest.raises(ConfigMismatchError, match="--force"):
        run_ingest("workload", root, tmp_path / "fast", engine="exact")
