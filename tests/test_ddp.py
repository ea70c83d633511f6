"""Acceptance 4: two CPU processes under ``torchrun --nproc_per_node 2`` (gloo) run a stage with equal steps
per rank, with fewer shards than ranks x workers (one shard, 2 ranks x 2 workers), through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures_trainer import REPO, step_records, tiny, write_corpus

from neurolm_train import checkpoint
from neurolm_train.data import discover, eval_batches
from neurolm_train.train import train

torch.set_num_threads(1)


def _torchrun(args: list[str], tokenizer: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NEUROLM_GPT2_TOKENIZER": str(tokenizer)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "neurolm_train",
        *args,
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _ranks(run: Path) -> list[dict]:
    return [json.loads((run / "ranks" / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def test_vq_two_ranks_one_shard_two_workers(
    pretrain_out: Path, corpus: Path, tmp_path: Path, gpt2_tokenizer_dir: Path
):
    shards = pretrain_out / "shards"
    assert len(list((shards / "pretrain" / "train").glob("*.tar"))) < 2 * 2
    run = tmp_path / "vq"
    _torchrun(
        [
            "vq",
            "--config",
            "tiny",
            "--shards",
            str(shards),
            "--out",
            str(run),
            "--steps",
            "3",
            "-b",
            "2",
            "-w",
            "2",
            "--text",
            str(corpus),
            "--set",
            "text.block=32",
            "--set",
            "text.batch_size=2",
            "--set",
            "data.batches_per_epoch=2",
        ],
        gpt2_tokenizer_dir,
    )
    ranks = _ranks(run)
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert [r["step"] for r in ranks] == [3, 3] and [r["batches"] for r in ranks] == [3, 3]
    assert (
        ranks[0]["loader"]
        == ranks[1]["loader"]
        == {"epoch": 1, "batch": 1, "seed": 1337, "world": 2, "n_streams": 2, "batches_per_epoch": 2}
    )
    ck = checkpoint.load(run / "ckpt.pt")
    assert ck["world"] == 2 and len(ck["rng"]) == 2 and ck["step"] == 3
    recs = step_records(run)
    assert [r["step"] for r in recs] == [1, 2, 3]
    per_window = int(next(eval_batches(discover(shards, ["pretrain"], "train"), 1))["mask"].sum())
    assert all(r["tokens"] == 2 * (2 * per_window + 2 * 32) for r in recs)  # both ranks' EEG + text tokens


def test_instruct_two_ranks_with_gathered_validation(
    workload_out: Path, pretrain_out: Path, corpus: Path, tmp_path: Path, gpt2_tokenizer_dir: Path
):
    pre = pretrain_out / "shards"
    train(tiny("vq", tmp_path / "vq", pre, corpus, ["pretrain"], 2, steps=1))
    train(
        tiny(
            "pretrain",
            tmp_path / "pre",
            pre,
            corpus,
            ["pretrain"],
            2,
            steps=1,
            init=str(tmp_path / "vq" / "ckpt.pt"),
        )
    )
    run = tmp_path / "ins"
    _torchrun(
        [
            "instruct",
            "--shards",
            str(workload_out / "shards"),
            "--tasks",
            "workload",
            "--out",
            str(run),
            "--init",
            str(tmp_path / "pre" / "ckpt.pt"),
            "--steps",
            "2",
            "-b",
            "4",
            "--text",
            str(corpus),
            "--set",
            "text.block=32",
            "--set",
            "data.val_limit=30",
        ],
        gpt2_tokenizer_dir,
    )
    ranks = _ranks(run)
    assert [r["step"] for r in ranks] == [2, 2] and ranks[0]["loader"] == ranks[1]["loader"]
    best = checkpoint.load(run / "best.pt")["best"]
    assert best["step"] == 2 and best["val"]["workload"]["n"] == 30  # both ranks' shares, gathered
