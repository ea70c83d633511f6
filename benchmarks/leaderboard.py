"""The Workload leaderboard as shown in the README: every built-in row, all windows, 3 seeds.

Usage (OUT holds ``shards/workload`` from ``neurolm-data ingest/split/shard``)::

    python -m benchmarks.leaderboard OUT [--seeds 0,1,2] [--n-boot 1000]

It is the same as the two CLI commands it prints first (``neurolm-train leaderboard run`` with the NeuroLM
``tiny`` training budget below, then ``leaderboard show``), and prints the Markdown table and the wall time.
Re-running skips the finished records. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from neurolm_train.pipeline import NEUROLM_TINY_BUDGET as NEUROLM_TINY  # the main job's budget


def commands(out: str, seeds: str, n_boot: int) -> list[list[str]]:
    """The ``run`` and ``show`` command lines."""
    run = ["neurolm-train", "leaderboard", "run", out, "--task", "workload", "--seeds", seeds]
    for item in NEUROLM_TINY:
        run += ["--set", f"neurolm-tiny.{item}"]
    show = ["neurolm-train", "leaderboard", "show", out, "--task", "workload", "--n-boot", str(n_boot)]
    return [run, show]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder holding shards/workload")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    for cmd in commands(args.out, args.seeds, args.n_boot):
        print("$", shlex.join(cmd), flush=True)
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            return done.returncode
    wall = time.perf_counter() - t0
    print((Path(args.out) / "leaderboard" / "leaderboard.md").read_text())
    print(f"wall time: {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
