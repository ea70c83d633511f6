"""Scaling out: the data commands without torch, Ray as executor, object storage (S3 via moto's server).

Ray tests start one local Ray instance per module (2 CPUs, no dashboard). The S3 tests start moto's
S3-compatible HTTP server on 127.0.0.1 (the server s3fs's own test suite uses) and talk to it through s3fs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _link_files(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True)
    for n in names:
        (dst / n).symlink_to((src / n).resolve())
    return dst


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.name not in skip
    }


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
    root = _link_files(
        eegmat_dir, tmp_path / "root", [f"Subject0{i}_{r}.edf" for i in range(4) for r in (1, 2)]
    )
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
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600
    )
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


def test_ray_executor_matches_process_pool_and_resumes_after_kill(
    workload_out: Path, eegmat_dir: Path, tmp_path: Path, ray_local
) -> None:
    """EEGMAT (72 files) ingested with --executor ray, killed part-way and resumed, then split and sharded with
    one Ray task per shard: manifests, arrays and shards byte-identical to the process-pool run (workload_out)."""
    from neurolm_data.ingest import run_ingest
    from neurolm_data.shard import run_shard
    from neurolm_data.split import run_split

    out = tmp_path / "out"
    address = ray_local.get_runtime_context().gcs_address
    code = (
        "import sys; from neurolm_data.ingest import run_ingest; "
        "run_ingest('workload', sys.argv[1], sys.argv[2], executor='ray')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(eegmat_dir), str(out)],
        cwd=REPO,
        env={**os.environ, "RAY_ADDRESS": address},
    )
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
    deadline = time.monotonic() + 120  # Ray cancels the dead driver's tasks: wait until both CPUs are free
    while ray_local.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)

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
    signals = [
        edfio.EdfSignal(
            np.tile(s.data, times),
            s.sampling_frequency,
            label=s.label,
            physical_dimension=s.physical_dimension,
        )
        for s in edf.signals
    ]
    edfio.Edf(signals).write(dst)
    return dst


def test_ray_task_whose_worker_dies_is_retried_then_failed(
    eegmat_dir: Path, tmp_path: Path, ray_local
) -> None:
    """A Ray worker killed (SIGKILL) while it reads a file: Ray re-runs the task in a fresh worker; killed again,
    the file is a `failed` ledger row ("its worker died"), and the other files are done."""
    from neurolm_data.ingest import run_ingest

    root = _link_files(eegmat_dir, tmp_path / "root", ["Subject00_1.edf", "Subject01_1.edf"])
    _tiled_edf(eegmat_dir / "Subject02_1.edf", root / "Subject02_1.edf", 8)
    out = tmp_path / "out"
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(s=run_ingest("workload", root, out, executor="ray")), daemon=True
    )
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
    ((path, reason),) = s.failures
    assert path == "Subject02_1.edf" and "worker died" in reason and "Ray retried" in reason, reason
    assert [r["status"] for r in _ledger_rows(out)] == ["done", "done", "failed"]
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ object storage (S3)

BUCKET = "neurolm-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3-compatible HTTP server on 127.0.0.1 (a free port), with a bucket; fsspec's ``s3`` config points
    at it for this module (``FSSPEC_S3_*`` for child processes)."""
    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    saved_env = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    saved_conf = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    yield endpoint
    fsspec.config.conf.pop("s3")
    if saved_conf is not None:
        fsspec.config.conf["s3"] = saved_conf
    for k, v in saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _s3():
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    return fs


def test_s3_ingest_and_shards_equal_local_then_train_streams_them(
    s3_endpoint: str, eegmat_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """EEGMAT files uploaded to S3 (moto's server); ingest from s3:// into s3://, split, shard into s3://; the
    objects equal a local run's files byte for byte; then the local cache is deleted and a few tiny training
    steps stream the shards from S3 through webdataset + fsspec, after the loader's checks against shards.json."""
    from fixtures_trainer import step_records, tiny, write_corpus

    from neurolm_data.ingest import run_ingest
    from neurolm_data.shard import ShardConfig, run_shard
    from neurolm_data.split import run_split
    from neurolm_train.data import ShardError, discover
    from neurolm_train.train import train

    monkeypatch.setenv("NEUROLM_CACHE", str(tmp_path / "cache"))
    names = [f"Subject{i:02d}_{r}.edf" for i in range(6) for r in (1, 2)]
    root = tmp_path / "root"  # copies, not links: ledger paths are relative to the real root
    root.mkdir()
    for n in names:
        shutil.copy(eegmat_dir / n, root / n)
    fs = _s3()
    for n in names:
        fs.put_file(str(root / n), f"{BUCKET}/eegmat/{n}")
    cfg = ShardConfig(max_shard_bytes=2 * 1024 * 1024)
    url = f"s3://{BUCKET}/out"

    s = run_ingest("workload", f"s3://{BUCKET}/eegmat", url)
    assert s.ok and s.n_done == len(names), s.line()
    run_split(url, "workload")
    run_shard(url, "workload", config=cfg)

    local = tmp_path / "local"
    assert run_ingest("workload", root, local).ok
    run_split(local, "workload")
    run_shard(local, "workload", config=cfg)

    fs = _s3()
    remote = {p.split("/out/", 1)[1]: fs.cat_file(p) for p in fs.find(f"{BUCKET}/out")}
    for rel in ("recordings.parquet", "splits.parquet"):
        assert remote[rel] == (local / rel).read_bytes(), rel
    shards = _tree(local / "shards")
    assert shards and {k: v for k, v in remote.items() if k.startswith("shards/")} == {
        f"shards/{k}": v for k, v in shards.items()
    }
    assert len([k for k in shards if k.endswith(".tar")]) >= 3

    # resume on the object store: a re-run downloads nothing new and redoes nothing
    shutil.rmtree(tmp_path / "cache")
    s2 = run_ingest("workload", f"s3://{BUCKET}/eegmat", url)
    assert (s2.n_reused, s2.n_processed) == (len(names), 0)
    assert run_shard(url, "workload", config=cfg).noop

    # the trainer streams the shards from S3 (no local copy), after the same checks as local shards
    shutil.rmtree(tmp_path / "cache")
    found = discover(f"{url}/shards", ["workload"], "train", verify=True)
    assert all(p.startswith(f"s3://{BUCKET}/out/shards/workload/train/") for p in found[0].shards)
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    train(tiny("vq", run, f"{url}/shards", corpus, ["workload"], 2, steps=3, data={"num_workers": 0}))
    recs = step_records(run)
    assert [r["step"] for r in recs] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in recs)

    # an object modified on the store is refused by name, as a local file is
    first = found[0].shards[0]
    fs.pipe_file(first.removeprefix("s3://"), fs.cat_file(first.removeprefix("s3://"))[:-512])
    with pytest.raises(ShardError, match="truncated or modified"):
        discover(f"{url}/shards", ["workload"], "train")
