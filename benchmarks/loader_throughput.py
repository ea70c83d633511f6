"""Loader throughput: ``neurolm_train.data.TokenLoader`` against the official-style per-sample-pickle loader.

Issue 3, acceptance 6. In one run, on the same windows and with the same DataLoader worker count:

  (a) the reference ``../shared/baselines/ref_pickle_loader.py`` (loaded by path): one float64 pickle per
      window, scaled by 1/100, padded to 256 tokens, per-item |FFT| targets and a dense 256x256 boolean
      stair-step mask (reference §3.1, §9.18-19), ``DataLoader(batch_size=64, shuffle=True, num_workers=W)``;
      its pickles are written from the shards into a temporary folder first (``{"X": float64 µV, "y"}``,
      as the official makers write them, reference §2);
  (b) this project's loader over the WebDataset shards: seeded streaming, time-major tokens padded per
      batch, no masks or FFT in workers (both are built batched on the device), batch 64, W workers.

Both run ``--epochs`` passes over the windows after one warm-up pass, ``--repeat`` times, alternating (the
machine may be shared: each side's best run is reported, with the median); samples/s and tokens/s (valid
EEG tokens) are printed, with the speed-up of the best runs (target >= 10x). ``--json`` writes the numbers.

usage: python benchmarks/loader_throughput.py --shards OUT/shards [--task workload] [--split train]
       [--workers 2] [--epochs 3] [--repeat 3] [--reference PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROLM_SHARED", REPO.parent / "shared"))
DEFAULT_REFERENCE = SHARED / "baselines" / "ref_pickle_loader.py"
BATCH = 64  # the reference's batch size


def write_pickles(shards: list[str], dst: Path) -> tuple[int, int]:
    """One official-style pickle per window (float64 µV, reference §2). Returns (windows, valid tokens)."""
    import webdataset as wds

    n = tokens = 0
    for s in wds.tarfile_samples(iter([{"url": u} for u in shards])):
        eeg = np.load(io.BytesIO(s["eeg.npy"])).astype(np.float64)
        meta = json.loads(s["meta.json"])
        with open(dst / f"{s['__key__']}.pkl", "wb") as f:
            pickle.dump({"X": eeg, "y": meta["label"], "ch_names": meta["channels"]}, f)
        n += 1
        tokens += eeg.shape[0] * eeg.shape[1] // 200
    return n, tokens


def bench_reference(ref: Path, pkl_dir: Path, workers: int, epochs: int, tokens_per_epoch: int) -> dict:
    spec = importlib.util.spec_from_file_location("ref_pickle_loader", ref)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dl = DataLoader(
        mod.PickleSet(pkl_dir),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    for _ in dl:  # warm-up pass
        pass
    t, n = time.perf_counter(), 0
    for _ in range(epochs):
        for b in dl:
            n += b[0].shape[0]
    dt = time.perf_counter() - t
    return {
        "samples": n,
        "seconds": dt,
        "samples_per_s": n / dt,
        "tokens_per_s": tokens_per_epoch * epochs / dt,
    }


def bench_ours(tasks: list, workers: int, epochs: int) -> dict:
    from neurolm_train.data import TokenLoader, mixing_weights

    n_win = sum(t.n_windows for t in tasks)
    bpe = max(1, n_win // BATCH)
    loader = TokenLoader(
        tasks,
        mixing_weights([t.n_windows for t in tasks]),
        BATCH,
        0,
        bpe,
        num_workers=workers,
        max_tokens=1024,
    )
    for _ in range(bpe):  # warm-up pass (starts the workers)
        loader.next()
    t, n, tok = time.perf_counter(), 0, 0
    for _ in range(epochs * bpe):
        b = loader.next()
        n += b["x"].shape[0]
        tok += int(b["mask"].sum())
    dt = time.perf_counter() - t
    return {"samples": n, "seconds": dt, "samples_per_s": n / dt, "tokens_per_s": tok / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", required=True, help="OUT/shards root")
    ap.add_argument("--task", default="workload")
    ap.add_argument("--split", default="train")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference", default=str(DEFAULT_REFERENCE))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    from neurolm_train.data import discover

    tasks = discover(a.shards, [a.task], a.split)
    refs, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        n, tokens = write_pickles(list(tasks[0].shards), Path(tmp))
        print(f"{n} windows ({tokens} tokens) written as pickles in {time.perf_counter() - t0:.1f} s")
        for _ in range(a.repeat):
            refs.append(bench_reference(Path(a.reference), Path(tmp), a.workers, a.epochs, tokens))
            ours.append(bench_ours(tasks, a.workers, a.epochs))
    best = {}
    for name, runs in (("reference (pickles)", refs), ("neurolm_train.data", ours)):
        r = max(runs, key=lambda r: r["samples_per_s"])
        med = float(np.median([x["samples_per_s"] for x in runs]))
        best[name] = r
        print(
            f"{name:20s} {r['samples_per_s']:10.0f} samples/s {r['tokens_per_s']:12.0f} tokens/s "
            f"(best of {len(runs)}; median {med:.0f} samples/s; {a.workers} workers, {r['samples']} samples)"
        )
    speedup = best["neurolm_train.data"]["samples_per_s"] / best["reference (pickles)"]["samples_per_s"]
    print(f"speed-up: {speedup:.1f}x (target >= 10x)")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "reference": refs,
                    "ours": ours,
                    "speedup_best": speedup,
                    "windows": n,
                    "workers": a.workers,
                    "epochs": a.epochs,
                    "task": a.task,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
