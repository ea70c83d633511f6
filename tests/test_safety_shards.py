"""Issue 14, acceptance 2: a shard that is truncated, deleted, has flipped bytes or a renamed member makes
``train``, ``evaluate`` and ``neurolm-data verify`` fail with a message naming the shard (and the member where
there is one); nothing exits 0 on partial data. Results record the windows scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fixtures_trainer import cli, random_tiny_neurolm, write_corpus
from typer.testing import CliRunner

from cli import data_app
from neurolm_data.shard import verify_shards
from neurolm_train.official import save_official_neurolm, save_official_vq

torch.set_num_threads(1)
CASES = ("truncate", "delete", "flip", "rename")


def copy_task(src_out: Path, task: str, split: str, dst_out: Path) -> Path:
    """``dst_out/shards/task`` with its own copy of ``split`` (other splits symlinked, read-only); returns the
    first shard of ``split`` in the copy."""
    src, d = src_out / "shards" / task, dst_out / "shards" / task
    d.mkdir(parents=True)
    for name in ("windows.parquet", "shards.json"):
        shutil.copy(src / name, d / name)
    for sub in sorted(p for p in src.iterdir() if p.is_dir()):
        if sub.name == split:
            shutil.copytree(sub, d / sub.name)
        else:
            (d / sub.name).symlink_to(sub)
    return sorted((d / split).glob("*.tar"))[0]


def _members(tar: Path) -> list[tuple[str, int, int]]:
    """(name, header offset, size) of every member of a plain ustar shard."""
    data, out, pos = tar.read_bytes(), [], 0
    while pos + 512 <= len(data) and data[pos : pos + 512] != b"\0" * 512:
        name = data[pos : pos + 100].split(b"\0", 1)[0].decode()
        size = int(data[pos + 124 : pos + 136].strip(b"\0 ") or b"0", 8)
        out.append((name, pos, size))
        pos += 512 + -(-size // 512) * 512
    return out


def tamper(tar: Path, case: str) -> str:
    """Damage ``tar`` as ``case`` says; returns the member concerned ("" when none)."""
    if case == "truncate":
        tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
        return ""
    if case == "delete":
        tar.unlink()
        return ""
    data = bytearray(tar.read_bytes())
    name, pos, _ = next(m for m in _members(tar) if m[0].endswith(".eeg.npy"))
    if case == "flip":  # one byte of the first window's samples (past the 128-byte .npy header)
        data[pos + 512 + 200] ^= 0xFF
        tar.write_bytes(bytes(data))
        return name
    meta, pos, _ = next(m for m in _members(tar) if m[0].endswith(".meta.json"))
    new = meta.replace(".meta.json", ".meta.jsox").encode()  # same length, checksum recomputed: a valid tar
    data[pos : pos + 100] = new.ljust(100, b"\0")
    data[pos + 148 : pos + 156] = b" " * 8
    data[pos + 148 : pos + 156] = b"%06o\0 " % sum(data[pos : pos + 512])
    tar.write_bytes(bytes(data))
    return meta


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("official")
    model, tok = random_tiny_neurolm("instruct")
    save_official_vq(tok, root / "VQ.pt", torch.randn(50257, model.cfg.vq.n_embd))
    save_official_neurolm(model, root / "NeuroLM-T.pt")
    return f"{root / 'VQ.pt'},{root / 'NeuroLM-T.pt'}"


def has(text: str, part: str) -> bool:
    """``part`` in ``text`` ignoring spaces (rich wraps long paths inside the console width)."""
    return part.replace(" ", "") in text.replace(" ", "")


def _verify_cli(out: Path) -> str:
    res = CliRunner().invoke(data_app, ["verify", str(out)])
    text = " ".join(res.output.split())
    assert res.exit_code == 1, text
    return text


@pytest.mark.parametrize("case", CASES)
def test_evaluate_and_verify_refuse_a_damaged_shard(
    case: str, official: str, workload_out: Path, tmp_path: Path
):
    out = tmp_path / "out"
    tar = copy_task(workload_out, "workload", "test", out)
    member = tamper(tar, case)
    text = cli(
        "evaluate",
        "--checkpoint",
        official,
        "--config",
        "tiny",
        "--shards",
        str(out / "shards"),
        "--tasks",
        "workload",
        "--splits",
        "test",
        "--limit",
        "8",
        "--out",
        str(tmp_path / "e"),
        ok=False,
    )
    want = {
        "truncate": "bytes, shards.json records",
        "delete": "listed in shards.json but missing",
        "flip": "sha256 differs from shards.json (modified bytes)",
        "rename": "sha256 differs from shards.json (modified bytes)",
    }[case]
    assert has(text, f"evaluate failed: {tar}: ") and has(text, want), text
    assert has(text, f"neurolm-data verify {out}")
    assert not (tmp_path / "e" / "results.json").exists()
    text = _verify_cli(out)
    assert has(text, str(tar))
    if case == "delete":
        assert has(text, f"{tar}: listed in shards.json but missing")
    elif case == "truncate":
        assert has(text, "not a readable tar") or has(text, "is missing")
    elif case == "flip":
        assert has(text, f"{tar}: member {member}: window_hash differs from windows.parquet")
    else:
        renamed = member.replace(".meta.json", ".meta.jsox")
        assert has(text, f"{tar}: member {renamed} is not a window member listed in windows.parquet")
        assert has(text, f"{tar}: member {member} is missing")


@pytest.mark.parametrize("case", CASES)
def test_train_refuses_a_damaged_shard(case: str, pretrain_out: Path, tmp_path: Path):
    out = tmp_path / "out"
    tar = copy_task(pretrain_out, "pretrain", "train", out)
    member = tamper(tar, case)
    corpus = write_corpus(tmp_path / "corpus.txt")
    args = (
        "vq",
        "--shards",
        str(out / "shards"),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--text",
        str(corpus),
        "--set",
        "text.block=32",
        "--set",
        "text.batch_size=2",
        "--set",
        "data.shuffle_buffer=4",
    )
    text = cli(*args, "--out", str(tmp_path / "run"), ok=False)
    assert has(text, f"vq failed: {tar}"), text
    if case == "truncate":
        assert has(text, "bytes, shards.json records")
    elif case == "delete":
        assert has(text, "listed in shards.json but missing")
    elif case == "flip":  # read in the first batch: the window's content hash does not match its meta.json
        assert has(text, f"member {member}: cannot decode (ValueError: window_hash differs")
        text = cli(*args, "--verify", "--out", str(tmp_path / "run2"), ok=False)
        assert has(text, f"vq failed: {tar}: sha256 differs from shards.json")
    else:
        key = member.removesuffix(".meta.json")
        assert has(text, f"sample {key} has no meta.json member (members: {key}.eeg.npy, {key}.meta.jsox)")
    assert not (tmp_path / "run" / "ckpt.pt").exists()


def test_verify_passes_intact_shards_and_results_count_windows(
    official: str, workload_out: Path, tmp_path: Path
):
    assert verify_shards(workload_out) == {"workload": []}
    res = CliRunner().invoke(data_app, ["verify", str(workload_out)])
    assert res.exit_code == 0 and has(res.output, "workload: shards match shards.json (sha256 verified)")
    cli(
        "evaluate",
        "--checkpoint",
        official,
        "--config",
        "tiny",
        "--shards",
        str(workload_out / "shards"),
        "--tasks",
        "workload",
        "--limit",
        "16",
        "--out",
        str(tmp_path / "e"),
    )
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["windows"] == {
        "workload": {"val": {"scored": 16, "listed": 290}, "test": {"scored": 16, "listed": 290}}
    }


def test_a_shard_missing_from_the_index_or_an_extra_shard_is_refused(workload_out: Path, tmp_path: Path):
    from neurolm_train.data import ShardError, discover

    out = tmp_path / "out"
    tar = copy_task(workload_out, "workload", "val", out)
    shutil.copy(tar, tar.with_name("workload-val-000099.tar"))
    with pytest.raises(ShardError, match="workload-val-000099.tar: not listed in shards.json"):
        discover(out / "shards", ["workload"], "val")
    tar.with_name("workload-val-000099.tar").unlink()
    (out / "shards" / "workload" / "shards.json").unlink()
    with pytest.raises(ShardError, match="shards.json: missing"):
        discover(out / "shards", ["workload"], "val")
