"""Helpers for the LaBraM trainer tests: a small real-window subset of a task's shards, tiny run configs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import polars as pl

from neurolm_train.models.labram.run import stage_config


def subset_shards(src: Path, task: str, dst: Path, per_label: int) -> Path:
    """Copy ``per_label`` real windows per label of each split of ``src/TASK`` (an ``OUT/shards`` root) into one
    ustar shard per split under ``dst/TASK``, with a matching ``windows.parquet``. Returns ``dst``."""
    windows = pl.read_parquet(src / task / "windows.parquet")
    keep = (
        windows.sort("key")
        .group_by(["split", "label"], maintain_order=True)
        .head(per_label)
        .sort(["split", "key"])
    )
    rows = []
    for split in ("train", "val", "test"):
        part = keep.filter(pl.col("split") == split)
        want = set(part["key"].to_list())
        rel = f"{split}/{task}-{split}-000000.tar"
        (dst / task / split).mkdir(parents=True, exist_ok=True)
        with tarfile.open(dst / task / rel, "w", format=tarfile.USTAR_FORMAT) as out:
            for shard in sorted(set(part["shard"].to_list())):
                with tarfile.open(src / task / shard) as tin:
                    for m in tin.getmembers():
                        if m.name.split(".", 1)[0] in want:
                            out.addfile(m, io.BytesIO(tin.extractfile(m).read()))
        rows.append(part.with_columns(pl.lit(rel).alias("shard")))
    pl.concat(rows).write_parquet(dst / task / "windows.parquet")
    # The index the loader checks the subset against (path, split, samples, bytes, sha256 per shard).
    shards = []
    for split in ("train", "val", "test"):
        rel = f"{split}/{task}-{split}-000000.tar"
        data = (dst / task / rel).read_bytes()
        shards.append(
            {
                "path": rel,
                "split": split,
                "samples": keep.filter(pl.col("split") == split).height,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    parquet_sha = hashlib.sha256((dst / task / "windows.parquet").read_bytes()).hexdigest()
    (dst / task / "shards.json").write_text(
        json.dumps({"subset_of": str(src / task), "shards": shards, "windows_parquet_sha256": parquet_sha})
    )
    return dst


def tiny(stage: str, out: Path, shards: Path, tasks: list[str], batch_size: int, **kw):
    """A LaBraM ``tiny`` run config with seed 0 and ``batch_size`` windows per step."""
    data = {"shards": str(shards), "tasks": tasks, "batch_size": batch_size, **kw.pop("data", {})}
    kw.setdefault("seed", 0)
    return stage_config(stage, "tiny", out=str(out), data=data, **kw)


def records(run: Path) -> list[dict]:
    """Step records of ``metrics.jsonl`` (validation records left out)."""
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("kind") != "val"
    ]
