"""The shard loader on real shards (``workload_out``, ``pretrain_out``): token layout, padding, seeded order,
worker independence, mid-epoch resume, rank balance, task mixing and the exact evaluation pass."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from neurolm_data.channels import PAD_INDEX
from neurolm_data.shard import ShardConfig, run_shard
from neurolm_train.data import (
    TokenLoader,
    discover,
    eval_batches,
    mixing_weights,
    window_tokens,
)
from neurolm_train.prompts import task_id

torch.set_num_threads(1)


def _keys(loader: TokenLoader, n: int) -> list[list[str]]:
    return [loader.next()["key"] for _ in range(n)]


def _loader(tasks, bs=8, seed=0, bpe=5, world=1, rank=0, workers=0, n_streams=None, mixing="proportional"):
    w = mixing_weights([t.n_windows for t in tasks], mixing)
    return TokenLoader(tasks, w, bs, seed, bpe, world, rank, workers, 64, 1024, n_streams=n_streams)


@pytest.fixture(scope="module")
def both_roots(workload_out: Path, pretrain_out: Path) -> str:
    return os.pathsep.join([str(workload_out / "shards"), str(pretrain_out / "shards")])


@pytest.fixture(scope="module")
def many_shards(workload_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Workload windows re-sharded by the real shard writer with a 1-MiB bound (16 windows per tar)."""
    out = tmp_path_factory.mktemp("reshard") / "out"
    out.mkdir()
    for name in ("recordings.parquet", "splits.parquet", "ledger.parquet"):
        shutil.copy(workload_out / name, out / name)
    (out / "recordings").symlink_to(workload_out / "recordings")
    run_shard(out, "workload", config=ShardConfig(max_shard_bytes=1 << 20))
    return out / "shards"


def test_tokens_are_time_major_in_100uv(workload_out: Path):
    shard = sorted((workload_out / "shards" / "workload" / "val").glob("*.tar"))[0]
    with tarfile.open(shard) as tf:
        names = tf.getnames()
        eeg = np.load(io.BytesIO(tf.extractfile(names[0]).read()))
        meta = json.loads(tf.extractfile(names[1]).read())
    assert names[0].endswith(".eeg.npy") and names[1].endswith(".meta.json")
    c, n = eeg.shape
    x, chans, times = window_tokens(eeg, meta["channel_indices"])
    assert x.shape == (n // 200 * c, 200) and x.dtype == np.float32
    for k in (0, 1, c - 1, c, 2 * c + 3, len(x) - 1):  # token k = (second k // C, channel k % C)
        t, ch = divmod(k, c)
        np.testing.assert_array_equal(x[k], eeg[ch, t * 200 : (t + 1) * 200] / np.float32(100))
        assert chans[k] == meta["channel_indices"][ch] and times[k] == t
    first = next(eval_batches(discover(workload_out / "shards", ["workload"], "val"), 4))
    assert first["key"][0] == meta["key"]
    np.testing.assert_array_equal(first["x"][0].numpy(), x)


def test_batches_pad_mixed_lengths(both_roots: str):
    tasks = discover(both_roots, ["workload", "pretrain"], "train")
    b = _loader(tasks, bs=16, mixing="uniform").next()
    assert set(b) == {"x", "chans", "times", "mask", "n_chans", "label", "task", "key"}
    lengths = b["mask"].sum(1)
    assert b["x"].shape == (16, int(lengths.max()), 200)
    assert {int(v) for v in b["task"]} == {task_id("workload"), task_id("pretrain")}
    for i in range(16):
        n = int(lengths[i])
        assert b["mask"][i, :n].all() and not b["mask"][i, n:].any()
        assert (b["chans"][i, n:] == PAD_INDEX).all() and (b["times"][i, n:] == 0).all()
        assert (b["x"][i, n:] == 0).all()
        assert n == int(b["n_chans"][i]) * (int(b["times"][i, :n].max()) + 1)
        assert (int(b["label"][i]) == -1) == (int(b["task"][i]) == task_id("pretrain"))


def test_order_is_seeded_and_independent_of_worker_processes(workload_out: Path):
    tasks = discover(workload_out / "shards", ["workload"], "train")
    with_workers = _keys(_loader(tasks, workers=2), 7)
    in_process = _keys(_loader(tasks, workers=0, n_streams=2), 7)
    assert with_workers == in_process
    assert _keys(_loader(tasks, workers=0, n_streams=2), 7) == in_process
    assert _keys(_loader(tasks, seed=1, workers=0, n_streams=2), 7) != in_process
    epoch0 = [k for b in in_process[:5] for k in b]
    assert len(set(epoch0)) == len(epoch0)  # no window twice within an epoch's first pass
    assert in_process[5] != in_process[0]  # epoch 1 is reshuffled


@pytest.mark.parametrize("position", [(0, 3), (1, 2), (2, 0)])
def test_resume_mid_epoch_reproduces_the_stream(workload_out: Path, position: tuple[int, int]):
    tasks = discover(workload_out / "shards", ["workload"], "train")
    full = _keys(_loader(tasks, workers=2), 14)
    resumed = _loader(tasks, workers=2)
    state = {**resumed.state_dict(), "epoch": position[0], "batch": position[1]}
    resumed.load_state_dict(state)
    start = position[0] * 5 + position[1]
    assert _keys(resumed, 14 - start) == full[start:]
    with pytest.raises(ValueError, match="n_streams"):
        _loader(tasks, workers=0).load_state_dict(state)


@pytest.mark.parametrize("case", ["shard-level", "sample-level"])
def test_ranks_get_equal_disjoint_batches(case: str, workload_out: Path, many_shards: Path):
    root = many_shards if case == "shard-level" else workload_out / "shards"
    tasks = discover(root, ["workload"], "train")
    assert (len(tasks[0].shards) >= 4) == (case == "shard-level")  # 2 ranks x 2 workers = 4 slots
    per_rank = [_keys(_loader(tasks, bs=8, bpe=6, world=2, rank=r, workers=2), 6) for r in range(2)]
    assert [len(k) for k in per_rank] == [6, 6]
    flat = [k for keys in per_rank for b in keys for k in b]
    assert len(flat) == 96
    if case == "sample-level":  # strided over one global order: every slot reads distinct windows
        assert len(set(flat)) == len(flat)
    else:  # shard-level: ranks read distinct shards
        shard_of = dict(
            pl.read_parquet(root / "workload" / "windows.parquet").select("key", "shard").iter_rows()
        )
        s0 = {shard_of[k] for b in per_rank[0] for k in b}
        s1 = {shard_of[k] for b in per_rank[1] for k in b}
        assert not s0 & s1


def test_fewer_windows_than_slots_still_balances(pretrain_out: Path):
    tasks = discover(pretrain_out / "shards", ["pretrain"], "train")
    assert tasks[0].n_windows < 8  # 4 ranks x 2 workers
    per_rank = [_keys(_loader(tasks, bs=2, bpe=3, world=4, rank=r, workers=2), 3) for r in range(4)]
    assert all(len(k) == 3 and all(len(b) == 2 for b in k) for k in per_rank)


def test_mixing_weights_and_task_frequencies(both_roots: str):
    tasks = discover(both_roots, ["workload", "pretrain"], "train")
    counts = [t.n_windows for t in tasks]
    np.testing.assert_allclose(mixing_weights(counts, "proportional"), np.array(counts) / sum(counts))
    np.testing.assert_allclose(mixing_weights(counts, "uniform"), [0.5, 0.5])
    tempered = mixing_weights(counts, "tempered", 2.0)
    np.testing.assert_allclose(tempered, np.sqrt(counts) / np.sqrt(counts).sum())
    with pytest.raises(ValueError, match="mixing mode"):
        mixing_weights(counts, "bogus")
    b = _loader(tasks, bs=64, mixing="uniform").next()
    freq = Counter(int(t) for t in b["task"])
    assert 16 <= freq[task_id("pretrain")] <= 48
    b = _loader(tasks, bs=64, mixing="proportional").next()
    assert Counter(int(t) for t in b["task"])[task_id("pretrain")] <= 3  # 4 of 1512 windows


def test_eval_pass_is_exact_across_ranks(workload_out: Path):
    tasks = discover(workload_out / "shards", ["workload"], "test")
    manifest = pl.read_parquet(workload_out / "shards" / "workload" / "windows.parquet").filter(
        pl.col("split") == "test"
    )
    seen = [
        k for r in range(2) for b in eval_batches(tasks, 32, world=2, rank=r, num_workers=2) for k in b["key"]
    ]
    assert sorted(seen) == sorted(manifest["key"].to_list())
    labels = {k: int(v) for b in eval_batches(tasks, 64) for k, v in zip(b["key"], b["label"], strict=True)}
    assert labels == dict(manifest.select("key", "label").iter_rows())


def test_too_long_windows_and_missing_tasks_raise(pretrain_out: Path):
    tasks = discover(pretrain_out / "shards", ["pretrain"], "val")
    with pytest.raises(ValueError, match="max_tokens"):
        next(eval_batches(tasks, 2, max_tokens=276))
    with pytest.raises(FileNotFoundError, match="tuab"):
        discover(pretrain_out / "shards", ["tuab"], "train")


def test_non_ustar_shards_read_the_same(workload_out: Path, tmp_path: Path):
    """A gzip-compressed copy of a shard goes through webdataset's tarfile reader and gives the same batches."""
    import gzip

    src = workload_out / "shards" / "workload"
    dst = tmp_path / "shards" / "workload"
    (dst / "val").mkdir(parents=True)
    shutil.copy(src / "windows.parquet", dst / "windows.parquet")
    for tar in (src / "val").glob("*.tar"):
        (dst / "val" / tar.name).write_bytes(gzip.compress(tar.read_bytes(), compresslevel=1))
    # the reader checks shards against their index: re-packed shards need theirs (sizes and sha256 updated)
    index = json.loads((src / "shards.json").read_text())
    index["shards"] = [s for s in index["shards"] if s["split"] == "val"]
    for s in index["shards"]:
        data = (dst / s["path"]).read_bytes()
        s["bytes"], s["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (dst / "shards.json").write_text(json.dumps(index))
    fast = list(eval_batches(discover(workload_out / "shards", ["workload"], "val"), 64))
    slow = list(eval_batches(discover(tmp_path / "shards", ["workload"], "val"), 64))
    assert len(fast) == len(slow) == 5
    for a, b in zip(fast, slow, strict=True):
        assert a["key"] == b["key"] and all(torch.equal(a[k], b[k]) for k in a if k != "key")
