"""WebDataset shards: layout, tar determinism, size bound, atomic re-runs, stale-config replacement, pretrain.

Shard-writing tests work on a copy of the session fixture ``workload_out`` (manifests copied, the array folder
symlinked, since ``store_path`` is relative to OUT) so the fixture itself is never modified.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import webdataset as wds
import xxhash
from typer.testing import CliRunner

from cli import data_app
from neurolm_data.shard import ShardConfig, run_shard
from neurolm_data.split import run_split
from neurolm_data.tasks import get_task
from neurolm_data.tasks.pretrain import PretrainConfig

META_KEYS = {
    "key",
    "task",
    "split",
    "subject",
    "recording",
    "start_s",
    "sfreq",
    "channels",
    "channel_indices",
    "label",
    "window_hash",
}


def _copy_out(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("recordings.parquet", "splits.parquet"):
        shutil.copy(src / name, dst / name)
    (dst / "recordings").symlink_to((src / "recordings").resolve(), target_is_directory=True)
    return dst


def _tree(task_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(task_dir).as_posix(): p.read_bytes() for p in sorted(task_dir.rglob("*")) if p.is_file()
    }


def test_shard_files_match_contract(workload_out: Path) -> None:
    task_dir = workload_out / "shards" / "workload"
    manifest = json.loads((task_dir / "shards.json").read_text())
    windows = pl.read_parquet(task_dir / "windows.parquet")
    assert windows.columns == [
        "key",
        "shard",
        "split",
        "subject",
        "recording",
        "start_s",
        "n_channels",
        "channel_indices",
        "label",
        "window_hash",
    ]
    assert windows.select("split", "key").rows() == sorted(windows.select("split", "key").rows())
    assert not windows["key"].str.contains(".", literal=True).any()
    listed = {s["path"] for s in manifest["shards"]}
    assert (
        listed
        == set(windows["shard"])
        == {p.relative_to(task_dir).as_posix() for p in task_dir.glob("*/*.tar")}
    )
    for s in manifest["shards"]:
        path = task_dir / s["path"]
        assert path.name == f"workload-{s['split']}-{int(path.stem.rsplit('-', 1)[1]):06d}.tar"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == s["sha256"]
        assert path.stat().st_size == s["bytes"] <= manifest["config"]["shard"]["max_shard_bytes"]
        assert s["samples"] == (windows["shard"] == s["path"]).sum()
    assert (
        manifest["inputs"]["recordings_sha256"]
        == hashlib.sha256((workload_out / "recordings.parquet").read_bytes()).hexdigest()
    )
    assert (
        manifest["inputs"]["splits_sha256"]
        == hashlib.sha256((workload_out / "splits.parquet").read_bytes()).hexdigest()
    )
    assert manifest["task_config_hash"] == get_task("workload").config_hash()
    assert (
        manifest["windows_parquet_sha256"]
        == hashlib.sha256((task_dir / "windows.parquet").read_bytes()).hexdigest()
    )


def test_tar_members_are_deterministic_and_match_the_store(workload_out: Path) -> None:
    task_dir = workload_out / "shards" / "workload"
    windows = pl.read_parquet(task_dir / "windows.parquet")
    rec = pl.read_parquet(workload_out / "recordings.parquet")
    store = dict(rec.select("recording_id", "store_path").rows())
    chans = dict(rec.select("recording_id", "channels").rows())
    shard = windows["shard"][0]
    with tarfile.open(task_dir / shard) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: (n.split(".", 1)[0], n))  # key order, then extension
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "neurolm", "neurolm", 0o444)
    }
    rows = {r["key"]: r for r in windows.filter(pl.col("shard") == shard).iter_rows(named=True)}
    seen = 0
    for sample in wds.WebDataset(str(task_dir / shard), shardshuffle=False):
        x = np.load(io.BytesIO(sample["eeg.npy"]), allow_pickle=False)
        meta = json.loads(sample["meta.json"])
        row = rows[sample["__key__"]]
        assert set(meta) == META_KEYS and meta["key"] == sample["__key__"] and meta["sfreq"] == 200.0
        assert x.dtype == np.float32 and x.shape == (row["n_channels"], 800)
        assert xxhash.xxh3_128_hexdigest(x.tobytes()) == meta["window_hash"] == row["window_hash"]
        arr = np.load(workload_out / store[meta["recording"]], mmap_mode="r")
        picks = [list(chans[meta["recording"]]).index(c) for c in meta["channels"]]
        start = round(meta["start_s"] * 200)
        np.testing.assert_array_equal(x, arr[picks, start : start + 800])
        seen += 1
    assert seen == len(rows)


def test_size_bound_stale_replacement_and_noop(workload_out: Path, tmp_path: Path) -> None:
    out = _copy_out(workload_out, tmp_path / "out")
    reference = _tree(workload_out / "shards" / "workload")
    small = ShardConfig(max_shard_bytes=2_000_000)
    res = run_shard(out, "workload", config=small)
    task_dir = out / "shards" / "workload"
    tars = sorted(task_dir.glob("*/*.tar"))
    assert not res.noop and len(tars) == len(res.manifest["shards"]) > 20
    assert all(t.stat().st_size <= 2_000_000 for t in tars)
    assert pl.read_parquet(task_dir / "windows.parquet").height == 2088
    # Back to the fixture's config: the small shards are gone (replaced, never mixed), bytes match the fixture.
    res = run_shard(out, "workload")
    assert not res.noop and _tree(task_dir) == reference
    assert not list((out / "shards").glob(".*"))  # no staging or old folder left behind
    # Same inputs and config again: nothing is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in task_dir.rglob("*") if p.is_file()}
    assert run_shard(out, "workload").noop
    assert stamps == {p: p.stat().st_mtime_ns for p in task_dir.rglob("*") if p.is_file()}
    # A damaged shard is detected and rewritten to identical bytes.
    victim = sorted(task_dir.glob("train/*.tar"))[0]
    victim.chmod(0o644)
    victim.write_bytes(b"broken")
    assert not run_shard(out, "workload").noop and _tree(task_dir) == reference


def test_refuses_foreign_or_stale_splits(workload_out: Path, tmp_path: Path) -> None:
    out = _copy_out(workload_out, tmp_path / "out")
    with pytest.raises(ValueError, match="protocol 'workload' for task 'workload', not 'pretrain'"):
        run_shard(out, "pretrain")
    rec = pl.read_parquet(out / "recordings.parquet")
    rec.filter(pl.col("subject") != "Subject00").write_parquet(out / "recordings.parquet")
    with pytest.raises(ValueError, match="older recordings.parquet"):
        run_shard(out, "workload")
    run_split(out, "workload")
    assert run_shard(out, "workload").n_windows == 2088 - 58


def test_shard_cli(workload_out: Path, tmp_path: Path) -> None:
    out = _copy_out(workload_out, tmp_path / "out")
    result = CliRunner().invoke(
        data_app, ["shard", str(out), "--task", "workload", "--max-shard-bytes", "50000000"]
    )
    assert result.exit_code == 0, result.output
    assert "1508" in result.output and "290" in result.output
    result = CliRunner().invoke(data_app, ["shard", str(out), "--task", "nope"])
    assert result.exit_code == 2 and "unknown task 'nope'" in result.output


def test_pretrain_window_length_rule() -> None:
    task = get_task("pretrain")
    # ⌊1024 / C⌋ s (neurolm-spec.md §2.1), capped at the 64 rows of the time embedding (§1.2, §9.7).
    assert [task.window_s(c) for c in (23, 20, 19, 16, 8, 1)] == [44, 51, 53, 64, 64, 64]
    uncapped = type(task)(PretrainConfig(max_window_s=10**6))
    assert uncapped.window_s(8) == 128


def test_pretrain_shards_of_unlabeled_edf_ingest(pretrain_out: Path) -> None:
    task_dir = pretrain_out / "shards" / "pretrain"
    manifest = json.loads((task_dir / "shards.json").read_text())
    windows = pl.read_parquet(task_dir / "windows.parquet")
    rec = pl.read_parquet(pretrain_out / "recordings.parquet")
    assert set(rec["source"]) == {"edf"} and rec["label"].is_null().all()
    assert windows["label"].is_null().all() and windows.height == manifest["n_windows"] > 0
    skipped = {s["recording"] for s in manifest["skipped"]}
    # MB0400FU (29 s, 21 channels) is shorter than one 48-s window; Subject03_1 hashes into val (fixture doc).
    assert skipped == {"edf_MB0400FU"} and "shorter than the 48 s" in manifest["skipped"][0]["reason"]
    assert manifest["splits"]["val"]["subjects"] == 1 and manifest["splits"]["train"]["subjects"] == 2
    task = get_task("pretrain")
    for r in rec.iter_rows(named=True):
        step = task.window_s(len(r["channels"])) * 200
        mine = windows.filter(pl.col("recording") == r["recording_id"]).sort("start_s")
        assert mine.height == r["n_samples"] // step
        assert (r["recording_id"] in skipped) == (mine.height == 0)
        assert mine["start_s"].to_list() == [k * step / 200 for k in range(mine.height)]
        assert all(list(ci) == list(r["channel_indices"]) for ci in mine["channel_indices"])
    n = 0
    for split in manifest["splits"]:
        for sample in wds.WebDataset(
            sorted(str(p) for p in (task_dir / split).glob("*.tar")), shardshuffle=False
        ):
            meta = json.loads(sample["meta.json"])
            x = np.load(io.BytesIO(sample["eeg.npy"]), allow_pickle=False)
            assert meta["label"] is None and meta["task"] == "pretrain" and meta["split"] == split
            assert x.shape == (len(meta["channels"]), task.window_s(len(meta["channels"])) * 200)
            assert x.shape[0] * x.shape[1] // 200 <= 1024  # at most 1024 tokens per window
            n += 1
    assert n == windows.height


@pytest.mark.parametrize("key", ["workload_Subject00_1_w0003", "x" * 120, "S\u00fcbject00_w0001"])
def test_member_bytes_equal_what_tarfile_writes(key, tmp_path):
    # the size bound is computed before writing: one 512-byte block per plain ustar header, tarfile's own
    # header bytes otherwise (a long or non-ASCII name gets a PAX extended header)
    from neurolm_data.shard import TarOptions, _member_bytes

    sample = {"__key__": key, "eeg.npy": b"\x01" * 1000, "meta.json": b"{}"}
    opts = TarOptions()
    path = tmp_path / "one.tar"
    with open(path, "wb") as f:
        w = wds.TarWriter(
            f, user=opts.user, group=opts.group, mode=opts.mode, mtime=opts.mtime, encoder=False
        )
        w.write(sample)
        w.close()
    with tarfile.open(path) as tf:
        last = tf.getmembers()[-1]
        written = last.offset_data + -(-last.size // 512) * 512  # every member's header(s) and padded data
        assert [m.name for m in tf.getmembers()] == [f"{key}.eeg.npy", f"{key}.meta.json"]
    assert _member_bytes(sample, opts) == written
