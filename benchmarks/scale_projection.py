"""Scale projection: what ingesting and sharding a 25,000-hour corpus costs on N workers, from costs measured here.

This machine cannot hold the corpus NeuroLM was pre-trained on (about 25,000 hours, mostly TUEG), so the
evidence is a projection from three measurements on real EEGMAT files, taken in this process:

  1. per-recording CPU cost of ``run_ingest`` (1 worker, in this process) per hour of input EEG,
  2. CPU cost of ``run_split`` + ``run_shard`` per hour of stored EEG,
  3. Ray's task overhead: wall time of ``--executor ray`` against the process pool (2 workers) on the same
     files, per recording, and the round trip of an empty Ray task,

and a table of projected wall time and cost for N workers, with every assumption printed (corpus hours, mean
recording length, input sampling rate and channel count, per-worker object-store bandwidth, price per vCPU-hour).
Cost is assumed linear in input samples (channels x rate x duration): ingest reads, filters and resamples every
sample, and sharding copies every stored sample once.

usage: python benchmarks/scale_projection.py [--root EEGMAT_DIR] [--files N] [--hours 25000] [--workers 1,16,...]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROLM_SHARED", REPO.parent / "shared"))
DEFAULT_ROOT = Path(os.environ.get("NEUROLM_EEGMAT", SHARED / "eeg-samples" / "eegmat"))


def _noop(i: int) -> int:
    """An empty Ray task (its round trip is the per-task overhead)."""
    return i


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _input_rate(files: list[Path]) -> tuple[float, float, int]:
    """(EEG seconds, mean sampling rate Hz, mean channel count) of EDF files (headers only)."""
    import pyedflib

    secs, rates, chans = 0.0, [], []
    for f in files:
        r = pyedflib.EdfReader(str(f), pyedflib.DO_NOT_READ_ANNOTATIONS)
        secs += r.file_duration
        rates.append(max(r.getSampleFrequencies()))
        chans.append(r.signals_in_file)
        r.close()
    return secs, sum(rates) / len(rates), round(sum(chans) / len(chans))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="EEGMAT folder (default: %(default)s)")
    ap.add_argument("--files", type=int, default=24, help="EEGMAT files measured (default: %(default)s)")
    ap.add_argument("--hours", type=float, default=25_000.0, help="corpus size, hours of EEG")
    ap.add_argument(
        "--mean-recording-min",
        type=float,
        default=20.0,
        help="assumed mean recording length, minutes (TUEG sessions are mostly 15-30 min)",
    )
    ap.add_argument(
        "--input-sfreq",
        type=float,
        default=256.0,
        help="assumed input sampling rate, Hz (TUEG: mostly 250/256)",
    )
    ap.add_argument(
        "--input-channels", type=int, default=32, help="assumed EDF signals per file (TUEG: ~24-36)"
    )
    ap.add_argument("--stored-channels", type=int, default=19, help="channels kept after mapping (10-20 EEG)")
    ap.add_argument(
        "--bandwidth-mbs",
        type=float,
        default=100.0,
        help="assumed object-store throughput per worker, MB/s (read input + write arrays and shards)",
    )
    ap.add_argument(
        "--usd-per-cpu-hour", type=float, default=0.04, help="assumed price of one vCPU-hour, USD"
    )
    ap.add_argument("--workers", default="1,16,64,256,1024", help="worker counts of the table")
    ap.add_argument("--ray-tasks", type=int, default=200, help="empty Ray tasks timed for the round trip")
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from neurolm_data.executors import ray_init, ray_map
    from neurolm_data.ingest import run_ingest
    from neurolm_data.shard import run_shard
    from neurolm_data.split import run_split

    files = sorted(args.root.glob("Subject*_*.edf"))[: args.files]
    if not files:
        sys.exit(f"no EEGMAT files in {args.root}")
    eeg_s, sfreq, nch = _input_rate(files)
    work = Path(tempfile.mkdtemp(prefix="neurolm-scale-"))
    try:
        root = work / "root"
        root.mkdir()
        for f in files:
            shutil.copy(f, root / f.name)
        load0 = os.getloadavg()

        # 1. ingest, 1 worker, in this process (imports done above: start-up is not part of a per-recording cost)
        c0, t0 = _cpu(), time.perf_counter()
        s = run_ingest("workload", root, work / "local", workers=1)
        ingest_cpu, ingest_wall = _cpu() - c0, time.perf_counter() - t0
        assert s.ok, s.failures
        # 2. split + shard of what was stored
        c0 = _cpu()
        run_split(work / "local", "workload")
        res = run_shard(work / "local", "workload")
        shard_cpu = _cpu() - c0
        stored_bytes = sum(p.stat().st_size for p in (work / "local" / "recordings").glob("*.npy"))
        shard_bytes = sum(x["bytes"] for x in res.manifest["shards"])

        # 3. Ray: the same ingest as Ray tasks vs the 2-worker process pool, and empty-task round trips
        t0 = time.perf_counter()
        assert run_ingest("workload", root, work / "pool", workers=2).ok
        pool_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray = ray_init(None) if os.environ.get("RAY_ADDRESS") else None
        if ray is None:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert run_ingest("workload", root, work / "ray", executor="ray").ok
        ray_cold = time.perf_counter() - t0  # includes starting the Ray workers (imports), once per worker
        t0 = time.perf_counter()
        assert run_ingest("workload", root, work / "ray2", executor="ray").ok
        ray_wall = time.perf_counter() - t0  # warm workers: the per-task overhead
        t0 = time.perf_counter()
        for _ in ray_map(_noop, [(0,)] * args.ray_tasks):
            pass
        task_rt = (time.perf_counter() - t0) / args.ray_tasks
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    hours_here = eeg_s / 3600
    samples_here = eeg_s * sfreq * nch
    cpu_per_sample = (ingest_cpu + shard_cpu) / samples_here
    overhead_per_rec = max(0.0, (ray_wall - pool_wall) / len(files) * 2)  # per recording per worker (2 here)
    n_recs = args.hours * 60 / args.mean_recording_min
    samples = args.hours * 3600 * args.input_sfreq * args.input_channels
    cpu_total = samples * cpu_per_sample  # CPU-s
    in_bytes = samples * 2  # EDF: 16-bit samples
    out_bytes = (
        args.hours * 3600 * 200 * args.stored_channels * 4 * 2
    )  # float32 arrays + shards of the same data
    io_mb = (in_bytes + out_bytes) / 1e6

    print(
        f"measured here: {len(files)} EEGMAT files, {hours_here:.2f} h of EEG at {sfreq:.0f} Hz x {nch} signals; "
        f"{os.cpu_count()} CPUs; load average at start {load0[0]:.2f} (machine shared)"
    )
    print(
        f"  ingest, 1 worker: {ingest_cpu:.2f} CPU-s ({ingest_wall:.2f} s wall) = {ingest_cpu / hours_here:.1f} "
        f"CPU-s per EEG-hour; split + shard: {shard_cpu:.2f} CPU-s = {shard_cpu / hours_here:.1f} CPU-s per EEG-hour"
    )
    print(
        f"  stored arrays {stored_bytes / 1e6:.0f} MB, shards {shard_bytes / 1e6:.0f} MB "
        f"({stored_bytes / hours_here / 1e6:.0f} MB per EEG-hour)"
    )
    print(
        f"  Ray: local start {ray_start:.2f} s; ingest as Ray tasks {ray_cold:.2f} s with worker start-up, "
        f"{ray_wall:.2f} s with warm workers, vs process pool (2 workers) {pool_wall:.2f} s wall = {overhead_per_rec * 1000:.0f} ms overhead per recording per worker; empty "
        f"task round trip {task_rt * 1000:.2f} ms ({args.ray_tasks} tasks)"
    )
    print(
        f"assumptions: {args.hours:,.0f} h of EEG in {n_recs:,.0f} recordings of {args.mean_recording_min:g} min; "
        f"input {args.input_sfreq:g} Hz x {args.input_channels} signals of 16 bits; "
        f"{args.stored_channels} stored channels at 200 Hz float32 (arrays + shards); cost linear in input "
        f"samples at the measured {cpu_per_sample * 1e9:.1f} CPU-ns per sample; one CPU per worker; "
        f"{args.bandwidth_mbs:g} MB/s object-store throughput per worker overlapping compute; "
        f"${args.usd_per_cpu_hour:g} per vCPU-hour; Ray overhead per recording as measured"
    )
    print(
        f"corpus: {in_bytes / 1e12:.2f} TB of EDF in, {out_bytes / 1e12:.2f} TB out; {cpu_total / 3600:,.0f} "
        f"CPU-hours of ingest + split + shard"
    )
    startup_h = max(0.0, ray_cold - ray_wall) / 3600  # Ray workers start in parallel: once per run
    print(
        f"wall = max(compute, I/O) + Ray per-task overhead + Ray worker start-up ({startup_h * 3600:.1f} s, "
        f"measured: cold minus warm run); cost = wall x workers x price"
    )
    hdr = (
        f"{'workers':>8s} {'compute h':>10s} {'I/O h':>8s} {'Ray ovh h':>10s} {'wall h':>8s} {'cost USD':>9s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for n in (int(x) for x in args.workers.split(",")):
        compute = cpu_total / n / 3600
        io = io_mb / (args.bandwidth_mbs * n) / 3600
        ovh = n_recs * overhead_per_rec / n / 3600
        wall = max(compute, io) + ovh + startup_h
        print(
            f"{n:8d} {compute:10.2f} {io:8.2f} {ovh:10.3f} {wall:8.3f} {wall * n * args.usd_per_cpu_hour:9.2f}"
        )


if __name__ == "__main__":
    main()
