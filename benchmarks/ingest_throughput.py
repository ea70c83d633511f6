"""Ingest throughput: the project's pipeline (1 and 2 workers) against the official-maker-style reference.

Acceptance 7 of issue 2. On the same EEGMAT files in the same run, prints seconds of EEG processed per
CPU-second and peak RSS for:

  (a) ``run_ingest("workload", ...)`` with 1 worker (in-process), in the environment ``neurolm-data ingest``
      runs it in (``_PIPELINE_ENV``: OpenBLAS single-threaded, set by the CLI before numpy is imported),
  (b) the same with 2 workers (process pool; wall-clock speed-up over (a)),
  (c) the reference ``../shared/baselines/ref_neurolm_maker.py`` (MNE read, filter, notch, resample, one
      pickle per window), called by path,
  (d) ingest + split + shard in one process (the reference's end product: Workload windows), and
  (e) (a) with ``engine="exact"`` (no MNE resampler drift; an option, not the default),

and the ratio (a) / (c). Each run is a fresh child process measured with ``os.wait4`` (this process is a Linux
child subreaper, so every descendant is reaped here: CPU = user + system of the child and all its
descendants, pool workers included; peak RSS = the largest resident set among them). CPU is reported twice:
with start-up (interpreter and imports) included, and net of it (minus the least CPU of a child that only
imports the modules the configuration loads, ``_PIPELINE_IMPORTS`` / ``_REFERENCE_IMPORTS``). The pipeline runs on half and on all of
the corpus to show that peak RSS per worker does not grow with the corpus. With ``--repeat N`` the
configurations run in N interleaved rounds (so that a change in the machine's load hits all of them) and the
least-CPU run of each is shown (wall: its least wall); the pipeline / reference ratio is also given per round
(each round's pipeline run against the same round's reference run, then their median and range), which is the
robust number on a shared machine whose speed drifts between rounds. Outputs go to a temporary folder (under
``--work``, default the system's) deleted at the end.

usage: python benchmarks/ingest_throughput.py [--root EEGMAT_DIR] [--reference PATH] [--repeat N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROLM_SHARED", REPO.parent / "shared"))
DEFAULT_ROOT = Path(os.environ.get("NEUROLM_EEGMAT", SHARED / "eeg-samples" / "eegmat"))
DEFAULT_REFERENCE = SHARED / "baselines" / "ref_neurolm_maker.py"

_PIPELINE = (
    "import json, sys\n"
    "from neurolm_data.ingest import run_ingest\n"
    "s = run_ingest('workload', sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), engine=sys.argv[4])\n"
    "assert s.n_failed == 0, s.failures\n"
    "print(json.dumps({'done': s.n_done, 'worker_rss_mb': s.worker_peak_rss_mb,"
    " 'worker_cpu_s': s.worker_cpu_seconds, 'run_wall_s': s.wall_seconds}))\n"
)
#: The whole data pipeline for the Workload task in one process (1 worker): ingest, split, shard. The reference
#: writes Workload windows, so this is the like-for-like end product; ``ingest`` alone is acceptance 7's number
#: (one ingest serves every task sharded from it).
_END_TO_END = (
    "import json, sys\n"
    "from neurolm_data.ingest import run_ingest\n"
    "from neurolm_data.split import run_split\n"
    "from neurolm_data.shard import run_shard\n"
    "w = int(sys.argv[3]) if len(sys.argv) > 3 else 1\n"
    "s = run_ingest('workload', sys.argv[1], sys.argv[2], workers=w)\n"
    "assert s.n_failed == 0, s.failures\n"
    "run_split(sys.argv[2], 'workload')\n"
    "run_shard(sys.argv[2], 'workload', workers=w)\n"
    "print(json.dumps({'done': s.n_done, 'worker_rss_mb': s.worker_peak_rss_mb}))\n"
)
#: What each configuration imports (its start-up): the pipeline's modules (pyarrow for the manifests), and for
#: the reference MNE plus the submodules its calls load lazily (read_raw_edf, filter/notch/resample).
_PIPELINE_IMPORTS = "import neurolm_data.ingest, neurolm_data.sources, pyedflib, scipy.fft, pyarrow.parquet\n"
_REFERENCE_IMPORTS = "import pickle, mne, mne.io.edf.edf, mne.filter, scipy.signal\n"
_END_TO_END_IMPORTS = _PIPELINE_IMPORTS.rstrip("\n") + ", neurolm_data.split, neurolm_data.shard\n"
#: The pipeline's children (run and import-only) get the environment default that ``neurolm-data ingest`` sets
#: before importing numpy (cli.py: no OpenBLAS thread pool); the reference runs as its script is shipped.
_PIPELINE_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def _become_subreaper() -> None:
    """Linux ``prctl(PR_SET_CHILD_SUBREAPER)``: orphaned descendants (a forkserver and its workers) are
    re-parented to this process, so that ``_run`` can reap them and count their CPU."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # 36 = PR_SET_CHILD_SUBREAPER (linux/prctl.h)
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _run(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` (with ``env``, default this process's environment) and reap it and every descendant with
    ``os.wait4``.

    Returns wall s, CPU s (user + system summed over the child and all its descendants, pool workers
    included), peak RSS MiB (the largest single process) and stdout. Raises RuntimeError if it fails.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        cpu, rss = ru.ru_utime + ru.ru_stime, ru.ru_maxrss
        while True:  # orphans re-parented to us (subreaper): wait for them too
            try:
                _, _, ru = os.wait4(-1, 0)
            except ChildProcessError:
                break
            cpu, rss = cpu + ru.ru_utime + ru.ru_stime, max(rss, ru.ru_maxrss)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "rss_mb": rss / 1024.0, "stdout": out}


def eeg_seconds(files: list[Path]) -> float:
    """Total duration of the EEG files, s (from their headers)."""
    import pyedflib

    total = 0.0
    for f in files:
        r = pyedflib.EdfReader(str(f), pyedflib.DO_NOT_READ_ANNOTATIONS)
        total += r.file_duration
        r.close()
    return total


def best(runs: list[dict]) -> dict:
    """Least CPU and least wall over repeated runs (each the least disturbed by other load on a shared
    machine); the other fields come from the least-CPU run."""
    r = dict(min(runs, key=lambda r: r["cpu_s"]))
    r["wall_s"] = min(x["wall_s"] for x in runs)
    if "run_wall_s" in r:
        r["run_wall_s"] = min(x["run_wall_s"] for x in runs)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="EEGMAT folder (default: %(default)s)")
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="reference maker script")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the least-CPU run is shown")
    ap.add_argument(
        "--work", type=Path, default=None, help="folder for the temporary outputs (default: system tmp)"
    )
    args = ap.parse_args()

    _become_subreaper()
    files = sorted(args.root.glob("Subject*_*.edf"))
    if not files:
        sys.exit(f"no EEGMAT files in {args.root}")
    for f in files:  # warm the page cache so that no configuration pays the first disk read
        f.read_bytes()
    py = sys.executable
    pipe_env = {**_PIPELINE_ENV, **os.environ}  # a value set by the user wins, as in the CLI
    load0 = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="neurolm-bench-", dir=args.work))
    try:
        half_dir = work / "half"
        half_dir.mkdir()
        half = files[: len(files) // 2]
        for f in half:
            (half_dir / f.name).symlink_to(f.resolve())
        corpora = {
            "half": (half_dir, eeg_seconds(half), len(half)),
            "full": (args.root, eeg_seconds(files), len(files)),
        }
        # (label, corpus, workers (-1: ingest + split + shard in one process, 0: the reference), engine)
        configs = [
            ("pipeline, 1 worker", "half", 1),
            ("pipeline, 2 workers", "half", 2),
            ("pipeline, 1 worker", "full", 1),
            ("pipeline, 2 workers", "full", 2),
            ("reference", "full", 0),
            ("+ split + shard", "full", -1),
            ("engine exact, 1 worker", "full", 1, "exact"),
            ("+ split + shard, 2 w", "full", -2),
        ]
        runs: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
        imports: dict[str, list[dict]] = {"pipeline": [], "reference": [], "end_to_end": []}
        for rnd in range(args.repeat):
            imports["pipeline"].append(_run([py, "-c", _PIPELINE_IMPORTS], env=pipe_env))
            imports["reference"].append(_run([py, "-c", _REFERENCE_IMPORTS]))
            imports["end_to_end"].append(_run([py, "-c", _END_TO_END_IMPORTS], env=pipe_env))
            for i, (_, corpus, workers, *engine) in enumerate(configs):
                root = corpora[corpus][0]
                out = work / f"out-{i}-{rnd}"
                if workers < 0:
                    r = _run([py, "-c", _END_TO_END, str(root), str(out), str(-workers)], env=pipe_env)
                    r.update(json.loads(r["stdout"].strip().splitlines()[-1]))
                elif workers:
                    r = _run(
                        [py, "-c", _PIPELINE, str(root), str(out), str(workers), *(engine or ["fast"])],
                        env=pipe_env,
                    )
                    r.update(json.loads(r["stdout"].strip().splitlines()[-1]))
                    if r["done"] != corpora[corpus][2]:
                        raise RuntimeError(
                            f"{configs[i]}: {r['done']} recordings done of {corpora[corpus][2]}"
                        )
                else:
                    r = _run([py, str(args.reference), str(root), str(out)])
                    r["worker_rss_mb"] = r["rss_mb"]  # one process does all the work
                runs[i].append(r)
                shutil.rmtree(out)
        start = {k: min(x["cpu_s"] for x in v) for k, v in imports.items()}
        res = []
        for i, (label, corpus, workers, *_) in enumerate(configs):
            r = best(runs[i])
            secs = corpora[corpus][1]
            net = r["cpu_s"] - start["end_to_end" if workers < 0 else "pipeline" if workers else "reference"]
            r.update(
                label=label,
                corpus=corpus,
                eeg_s=secs,
                net_cpu_s=net,
                rate=secs / r["cpu_s"],
                net_rate=secs / max(net, 1e-9),
            )
            res.append(r)
        a_half, b_half, a, b, c, e, x, e2 = res

        print(
            f"EEGMAT at {args.root}: {len(files)} files, {corpora['full'][1]:.0f} s of EEG "
            f"(half: {len(half)} files, {corpora['half'][1]:.0f} s); {os.cpu_count()} CPUs; load average "
            f"(1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at end "
            f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        print(
            f"{args.repeat} interleaved round(s); per configuration the least-CPU run (wall: the least wall). "
            f"Start-up CPU (interpreter + imports, a child that only imports): pipeline {start['pipeline']:.2f} s, "
            f"reference {start['reference']:.2f} s, pipeline + split + shard {start['end_to_end']:.2f} s "
            "(no torch: shards are written with tarfile)"
        )
        hdr = (
            f"{'configuration':22s} {'corpus':6s} {'wall s':>7s} {'CPU s':>7s} {'EEG-s/CPU-s':>12s} "
            f"{'net CPU s':>10s} {'EEG-s/net CPU-s':>16s} {'peak RSS MiB':>13s} {'per worker':>11s}"
        )
        print(hdr)
        print("-" * len(hdr))
        for r in res:
            print(
                f"{r['label']:22s} {r['corpus']:6s} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {r['rate']:12.0f} "
                f"{r['net_cpu_s']:10.2f} {r['net_rate']:16.0f} {r['rss_mb']:13.0f} {r['worker_rss_mb']:11.0f}"
            )
        print(
            f"pipeline (1 worker) / reference, EEG-s per CPU-s on the full corpus: {a['rate'] / c['rate']:.1f}x "
            f"with start-up included, {a['net_rate'] / c['net_rate']:.1f}x with start-up excluded "
            f"(wall {c['wall_s'] / a['wall_s']:.1f}x)"
        )
        print(
            f"end to end (ingest + split + shard: Workload windows in WebDataset shards, the reference's end "
            f"product) / reference: {e['rate'] / c['rate']:.1f}x with start-up included, "
            f"{e['net_rate'] / c['net_rate']:.1f}x with start-up excluded"
        )
        print(
            f"engine exact (no MNE resampler drift, one inverse FFT; not MNE-equivalent, so not the default) / "
            f"reference: {x['rate'] / c['rate']:.1f}x with start-up included, {x['net_rate'] / c['net_rate']:.1f}x "
            "with start-up excluded"
        )
        print(
            f"whole data pipeline (ingest + split + shard), 2 workers vs 1 worker: wall-clock speed-up "
            f"{e['wall_s'] / e2['wall_s']:.2f}x; total CPU 2 workers / 1 worker {e2['cpu_s'] / e['cpu_s']:.2f}"
        )
        paired = sorted(
            (corpora["full"][1] / r["cpu_s"]) / (corpora["full"][1] / q["cpu_s"])
            for r, q in zip(runs[2], runs[4], strict=True)
        )
        paired_net = sorted(
            (q["cpu_s"] - start["reference"]) / (r["cpu_s"] - start["pipeline"])
            for r, q in zip(runs[2], runs[4], strict=True)
        )
        print(
            f"per round (pipeline 1 worker vs the same round's reference, full corpus, {args.repeat} rounds): "
            f"median {statistics.median(paired):.1f}x (range {paired[0]:.1f}-{paired[-1]:.1f}) with start-up, "
            f"median {statistics.median(paired_net):.1f}x (range {paired_net[0]:.1f}-{paired_net[-1]:.1f}) "
            "with start-up excluded"
        )
        print(
            f"2 workers vs 1 worker: wall-clock speed-up {a['wall_s'] / b['wall_s']:.2f}x full, "
            f"{a_half['wall_s'] / b_half['wall_s']:.2f}x half (whole command); run_ingest only "
            f"{a['run_wall_s'] / b['run_wall_s']:.2f}x full; total CPU 2 workers / 1 worker "
            f"{b['cpu_s'] / a['cpu_s']:.2f} (full)"
        )
        print(
            f"peak RSS per worker, half -> full corpus: 1 worker {a_half['worker_rss_mb']:.0f} -> "
            f"{a['worker_rss_mb']:.0f} MiB, 2 workers {b_half['worker_rss_mb']:.0f} -> {b['worker_rss_mb']:.0f} MiB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
