"""Acceptance 3: a run stopped after k steps and resumed reaches bit-identical parameters (and optimizer,
codebook and loader state) to an uninterrupted run of n > k steps, on CPU with a fixed seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_trainer import same_tensors, step_records, tiny, write_corpus

from neurolm_train import checkpoint
from neurolm_train.train import train

torch.set_num_threads(1)
N, K = 4, 2


def _opt_tensors(ck: dict) -> dict:
    return {f"{i}.{k}": v for i, st in ck["optimizer"]["state"].items() for k, v in st.items()}


def _compare(a: Path, b: Path) -> None:
    ca, cb = checkpoint.load(a / "ckpt.pt"), checkpoint.load(b / "ckpt.pt")
    assert ca["step"] == cb["step"] == N
    assert same_tensors(ca["model"], cb["model"])  # parameters and buffers (EMA codebook)
    assert same_tensors(_opt_tensors(ca), _opt_tensors(cb))
    assert ca["loader"] == cb["loader"] and ca["scheduler"] == cb["scheduler"]
    assert [r["loss"] for r in step_records(a)] == [r["loss"] for r in step_records(b)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def test_vq_resume_mid_epoch_with_workers_is_bit_identical(pretrain_out: Path, corpus: Path, tmp_path: Path):
    # 3 batches per epoch, 2 loader workers: the stop at step 2 is mid-epoch and mid-worker-cycle
    def cfg(out: Path, **kw):
        return tiny(
            "vq",
            out,
            pretrain_out / "shards",
            corpus,
            ["pretrain"],
            2,
            steps=N,
            data={"num_workers": 2, "batches_per_epoch": 3},
            **kw,
        )

    train(cfg(tmp_path / "full"))
    train(cfg(tmp_path / "split", stop_at=K))
    assert checkpoint.load(tmp_path / "split" / "ckpt.pt")["loader"]["batch"] == K
    train(cfg(tmp_path / "split", resume=True))
    _compare(tmp_path / "full", tmp_path / "split")


def test_instruct_resume_is_bit_identical_and_refuses_a_changed_config(
    workload_out: Path, pretrain_out: Path, corpus: Path, tmp_path: Path
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

    def cfg(out: Path, **kw):
        return tiny(
            "instruct",
            out,
            workload_out / "shards",
            corpus,
            ["workload"],
            4,
            steps=N,
            init=str(tmp_path / "pre" / "ckpt.pt"),
            data={"val_limit": 8},
            **kw,
        )

    train(cfg(tmp_path / "full"))
    train(cfg(tmp_path / "split", stop_at=K))
    with pytest.raises(ValueError, match="config hash"):
        train(cfg(tmp_path / "split", resume=True, seed=1))
    train(cfg(tmp_path / "split", resume=True))
    _compare(tmp_path / "full", tmp_path / "split")
    with pytest.raises(FileNotFoundError):
        train(cfg(tmp_path / "nothing", resume=True))
