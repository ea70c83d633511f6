"""Scaling out: the data commands without torch, Ray as executor, object storage (S3 via moto's server).

Ray tests start one local Ray instance per module (2 CPUs, no dashboard). The S3 tests start moto's
S3-compatible HTTP server on 127.0.0.1 (the server s3fs's own test suite uses) and talk to it through s3fs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _link_files(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True)
    for n in names:
        (dst / n).symlink_to((src / n).resolve())
    return dst


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name not in skip}


def _ledger_rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    for r in rows:
        r.pop("seconds")  # timing: the one column that differs between runs
    return rows


# ----------------------------------------------------------------------------------- no torch in neurolm-data


def test_data_commands_do_not_import_torch(eegmat_dir: Path, tmp_path: Path) -> None:
    """ingest, split, shard and verify through the CLI in a fresh interpreter: neither torch nor webdataset
    is imported (shards are written with Python's tarfile)."""
    root = _link_files(eegmat_dir, tmp_path / "root", [f"Subject0{i}_{r}.edf" for i in range(4) for r in (1, 2)])
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        from cli import data_app
        for argv in (["ingest", "workload", {str(root)!r}, "--out", {str(out)!r}],
                     ["split", {str(out)!r}, "--protocol", "workload"],
                     ["shard", {str(out)!r}, "--task", "workload"],
                     ["verify", {str(out)!r}]):
            try:
                data_app(argv, standalone_mode=False)
            except SystemExit as e:
                assert not e.code, (argv, e.code)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "webdataset", "transformers"))
        print("HEAVY", heavy)
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "HEAVY []" in res.stdout, res.stdout[-2000:]
    assert json.loads((out / "shards" / "workload" / "shards.json").read_text())["n_windows"] > 0


# ------------------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs (no dashboard), shut down after the module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_executor_matches_process_pool_and_resumes_after_kill(workload_out: Path, eegmat_dir: Path,
                                                                  tmp_path: Path, ray_local) -> None:
    """EEGMAT (72 files) ingested with --executor ray, killed part-way and resumed, then split and sharded with
    one Ray task per shard: manifests, arrays and shards byte-identical to the process-pool run (workload_out)."""
    from neurolm_data.ingest import run_ingest
    from neurolm_data.shard import run_shard
    from neurolm_data.split import run_split

    out = tmp_path / "out"
    address = ray_local.get_runtime_context().gcs_address
    code = ("import sys; from neurolm_data.ingest import run_ingest; "
            "run_ingest('workload', sys.argv[1], sys.argv[2], executor='ray')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(eegmat_dir), str(out)], cwd=REPO,
                            env={**os.environ, "RAY_ADDRESS": address})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(list((out / "recordings").glob("*.json"))) >= 4:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.stem for p in (out / "recordings").glob("*.json"))
    assert 4 <= len(finished) < 72, f"kill came too late or too early: {len(finished)} finished"
    assert not (out / "recordings.parquet").exists()
    time.sleep(1.0)  # let Ray cancel the killed driver's tasks before this run takes the output over

    s = run_ingest("workload", eegmat_dir, out, executor="ray")
    assert s.ok and s.n_done == 72 and s.n_reused >= len(finished), s.line()
    ref = workload_out
    assert (out / "recordings.parquet").read_bytes() == (ref / "recordings.parquet").read_bytes()
    assert _ledger_rows(out) == _ledger_rows(ref)
    arrays = {p.name: p.read_bytes() for p in sorted((out / "recordings").glob("*.npy"))}
    assert arrays == {p.name: p.read_bytes() for p in sorted((ref / "recordings").glob("*.npy"))}
    assert not list((out / "recordings").glob(".*"))  # no in-flight marker or temp file left

    run_split(out, "workload")
    assert (out / "splits.parquet").read_bytes() == (ref / "splits.parquet").read_bytes()
    res = run_shard(out, "workload", executor="ray")
    assert not res.noop
    assert _tree(out / "shards" / "workload") == _tree(ref / "shards" / "workload")
    assert run_shard(out, "workload", executor="ray").noop  # resume: nothing to redo


def _tiled_edf(src: Path, dst: Path, times: int) -> Path:
    """A real EEGMAT recording repeated ``times`` times (a long file, written with edfio)."""
    import edfio
    import numpy as np

    edf = edfio.read_edf(src)
    signals = [edfio.EdfSignal(np.tile(s.data, times), s.sampling_frequency, label=s.label,
                               physical_dimension=s.physical_dimension)
               for s in edf.signals]
    edfio.Edf(signals).write(dst)
    return dst


def test_ray_task_whose_worker_dies_is_retried_then_failed(eegmat_dir: Path, tmp_path: Path, ray_local) -> None:
    """A Ray worker killed (SIGKILL) while it reads a file: Ray re-runs the task in a fresh worker; killed again,
    the file is a `failed` ledger row ("its worker died"), and the other files are done."""
    from neurolm_data.ingest import run_ingest

    root = _link_files(eegmat_dir, tmp_path / "root", ["Subject00_1.edf", "Subject01_1.edf"])
    _tiled_edf(eegmat_dir / "Subject02_1.edf", root / "Subject02_1.edf", 8)
    out = tmp_path / "out"
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(s=run_ingest("workload", root, out, executor="ray")), daemon=True)
    worker.start()
    killed: list[int] = []
    marker = out / "recordings" / ".workload_Subject02_1.inflight"
    deadline = time.monotonic() + 300
    while worker.is_alive() and time.monotonic() < deadline and len(killed) < 2:
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            time.sleep(0.002)
            continue
        if pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.002)
    worker.join(300)
    assert len(killed) == 2, f"killed {killed}"
    s = result["s"]
    assert (s.n_done, s.n_failed) == (2, 1), s.line()
    (path, reason), = s.failures
    assert path == "Subject02_1.edf" and "worker died" in reason and "Ray retried" in reason, reason
    assert [r["status"] for r in _ledger_rows(out)] == ["done", "done", "failed"]
    assert not marker.exists()
