"""Acceptance 2: each stage's loss falls over a fixed number of steps on real shards with a fixed seed
(tiny config, CPU), chained vq -> pretrain -> instruct as a user runs them; plus the config guards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_trainer import step_records, tiny, write_corpus

from neurolm_train import checkpoint
from neurolm_train.config import RunConfig, config_hash, stage_config
from neurolm_train.train import WarmupCosine, train

torch.set_num_threads(1)
STEPS = 12


@pytest.fixture(scope="module")
def chain(
    workload_out: Path, pretrain_out: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """vq (pretrain shards) -> pretrain (frozen vq) -> instruct (Workload), STEPS steps each."""
    root = tmp_path_factory.mktemp("stages")
    corpus = write_corpus(root / "corpus.txt")
    pre = pretrain_out / "shards"
    runs = {s: root / s for s in ("vq", "pretrain", "instruct")}
    # 12 steps need a larger step than tiny's 1e-3 (chosen to keep the codebook alive in long runs)
    train(
        tiny("vq", runs["vq"], pre, corpus, ["pretrain"], 2, steps=STEPS, optim={"lr": 3e-3, "min_lr": 3e-4})
    )
    train(
        tiny(
            "pretrain",
            runs["pretrain"],
            pre,
            corpus,
            ["pretrain"],
            2,
            steps=STEPS,
            eval_every=STEPS // 2,
            init=str(runs["vq"] / "ckpt.pt"),
        )
    )
    train(
        tiny(
            "instruct",
            runs["instruct"],
            workload_out / "shards",
            corpus,
            ["workload"],
            8,
            steps=STEPS,
            init=str(runs["pretrain"] / "ckpt.pt"),
            data={"val_limit": 32},
        )
    )
    return runs


def _falls(values: list[float], margin: float) -> None:
    first, last = np.mean(values[:3]), np.mean(values[-3:])
    assert last < first - margin, f"loss did not fall: first {values[:3]} last {values[-3:]}"


@pytest.mark.parametrize(
    "stage,key,margin",
    [
        ("vq", "loss", 0.1),
        ("vq", "rec_freq", 0.05),
        ("pretrain", "loss_eeg", 0.3),
        ("pretrain", "loss_text", 0.3),
        ("instruct", "loss_instruct", 1.0),
    ],
)
def test_loss_falls(chain: dict[str, Path], stage: str, key: str, margin: float):
    recs = step_records(chain[stage])
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    values = [r[key] for r in recs]
    assert all(np.isfinite(values))
    _falls(values, margin)


def test_checkpoints_hold_everything_for_resume(chain: dict[str, Path]):
    for stage, run in chain.items():
        ck = checkpoint.load(run / "ckpt.pt")
        assert ck["stage"] == stage and ck["step"] == STEPS
        assert {
            "model",
            "optimizer",
            "scheduler",
            "loader",
            "rng",
            "config",
            "config_hash",
            "model_config",
        } <= set(ck)
        assert ck["config_hash"] == config_hash(RunConfig.from_dict(ck["config"]))
        assert ck["loader"]["epoch"] * ck["loader"]["batches_per_epoch"] + ck["loader"]["batch"] == STEPS
        assert ck["scheduler"]["last_epoch"] == STEPS
    pre = checkpoint.load(chain["pretrain"] / "ckpt.pt")
    vq = checkpoint.load(chain["vq"] / "ckpt.pt")
    # the tokenizer stays frozen in stage 2: its encoder is the stage-1 encoder, bit for bit
    enc = {k[len("encoder.") :]: v for k, v in vq["model"].items() if k.startswith("encoder.")}
    assert all(torch.equal(pre["model"][f"tokenizer.encoder.{k}"], v) for k, v in enc.items())
    assert pre["best"]["step"] in (STEPS // 2, STEPS) and (chain["pretrain"] / "best.pt").is_file()
    ins = checkpoint.load(chain["instruct"] / "best.pt")
    assert ins["best"]["val"]["workload"]["n"] == 32  # selected on val windows only


def test_schedule_warms_up_then_decays_to_min():
    f = WarmupCosine(warmup=10, total=100, min_ratio=0.1)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def test_config_guards(tmp_path: Path, pretrain_out: Path):
    with pytest.raises(ValueError, match="§9.8"):
        stage_config("vq", "tiny", precision="fp16")
    with pytest.raises(ValueError, match="unknown config field"):
        stage_config("vq", "tiny", optim={"momentum": 0.9})
    b = stage_config("instruct", "B")
    assert (b.optim.lr, b.optim.betas, b.optim.weight_decay, b.optim.grad_clip) == (
        5e-4,
        (0.9, 0.95),
        0.1,
        1.0,
    )
    assert b.data.max_tokens == 276 and b.epochs == 5 and stage_config("instruct", "XL").optim.lr == 2e-5
    v = stage_config("vq", "B")
    assert (v.optim.lr, v.optim.min_lr, v.optim.betas, v.optim.weight_decay, v.optim.grad_clip) == (
        5e-5,
        1e-5,
        (0.9, 0.999),
        1e-4,
        0.0,
    )
    p = stage_config("pretrain", "B")
    assert (p.optim.lr, p.optim.min_lr, p.data.batch_size, p.text.batch_size, p.epochs) == (
        6e-4,
        6e-5,
        60,
        4,
        20,
    )
    with pytest.raises(ValueError, match="needs --init"):
        train(
            stage_config(
                "pretrain", "tiny", out=str(tmp_path / "p"), data={"shards": str(pretrain_out / "shards")}
            )
        )
