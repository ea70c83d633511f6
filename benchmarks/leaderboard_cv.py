"""The cross-validated leaderboards of the README: Workload, EEGMMIDB motor imagery and ADHD, baselines only.

Usage::

    nice -n 10 python -m benchmarks.leaderboard_cv --samples ../shared/eeg-samples --out out/cv \\
        [--tasks workload,mi,adhd] [--models chance-majority,...] [--seeds 0,1,2] [--set eegnet.epochs=10 ...]

For each task it runs the three user commands (``neurolm-data ingest``, ``neurolm-data shard --protocol
<task>_cv``, ``neurolm-train leaderboard run`` with the models passed explicitly) and ``leaderboard show``,
then prints the wall time of each step. Re-running skips finished recordings, identical shards and current
records. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

#: task -> (source, folder under eeg-samples, CV protocol)
TASKS = {
    "workload": ("workload", "eegmat", "workload_cv"),
    "mi": ("eegmmidb", "eegmmidb-mi", "mi_cv"),
    "adhd": ("adhd", "adhd", "adhd_cv"),
}
BASELINES = (
    "chance-majority",
    "chance-stratified",
    "bandpower-lr",
    "riemann-ts-lr",
    "csp-lda",
    "smallnet",
    "eegnet",
    "shallow-fbcsp",
)


def commands(
    task: str, samples: Path, out: Path, models: list[str], seeds: str, sets: list[str], n_boot: int
) -> list[list[str]]:
    source, folder, protocol = TASKS[task]
    o = str(out / task)
    run = ["neurolm-train", "leaderboard", "run", o, "--task", task, "--seeds", seeds]
    for m in models:
        run += ["--model", m]
    for s in sets:
        if s.split(".", 1)[0] in models:
            run += ["--set", s]
    return [
        ["neurolm-data", "ingest", source, str(samples / folder), "--out", o, "-j", "2"],
        ["neurolm-data", "shard", o, "--task", task, "--protocol", protocol],
        run,
        ["neurolm-train", "leaderboard", "show", o, "--task", task, "--n-boot", str(n_boot)],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default="../shared/eeg-samples")
    p.add_argument("--out", default="out/cv")
    p.add_argument("--tasks", default="workload,mi,adhd")
    p.add_argument("--models", default=",".join(BASELINES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--set", action="append", default=[], dest="sets")
    p.add_argument("--n-boot", type=int, default=1000)
    a = p.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    for task in a.tasks.split(","):
        for cmd in commands(task, Path(a.samples), Path(a.out), models, a.seeds, a.sets, a.n_boot):
            print("$", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            done = subprocess.run(cmd, check=False)
            print(
                f"[{task}] {cmd[1]} {cmd[2]}: {time.perf_counter() - t0:.0f} s wall (exit {done.returncode})",
                flush=True,
            )
            if done.returncode != 0:
                return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
