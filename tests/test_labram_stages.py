"""LaBraM acceptance 3: each stage's loss falls on real windows over a fixed number of steps (chained vq ->
pretrain -> finetune as a user runs them); a stopped and resumed run is bit-identical to an uninterrupted one
(CPU); checkpoints load weights-only; the official resume and ``--finetune`` flaws are fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_labram import records, subset_shards, tiny

from neurolm_train.models.labram.run import LaBraMRunConfig, config_hash
from neurolm_train.models.labram.stages import crop
from neurolm_train.models.labram.train import train

torch.set_num_threads(1)
STEPS = 12


@pytest.fixture(scope="module")
def small_workload(workload_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 real Workload windows per label and split (16 train windows: the fine-tune loss can fall in 12 steps)."""
    return subset_shards(workload_out / "shards", "workload", tmp_path_factory.mktemp("wl16") / "shards", 8)


@pytest.fixture(scope="module")
def chain(
    pretrain_out: Path, small_workload: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("labram")
    pre = pretrain_out / "shards"
    runs = {s: root / s for s in ("vq", "pretrain", "finetune")}
    fast = {"lr": 3e-3, "min_lr": 3e-4}
    train(tiny("vq", runs["vq"], pre, ["pretrain"], 2, steps=STEPS, optim=fast))
    train(
        tiny(
            "pretrain",
            runs["pretrain"],
            pre,
            ["pretrain"],
            2,
            steps=STEPS,
            eval_every=STEPS // 2,
            optim=fast,
            init=str(runs["vq"] / "ckpt.pt"),
        )
    )
    train(
        tiny(
            "finetune",
            runs["finetune"],
            small_workload,
            ["workload"],
            8,
            steps=STEPS,
            drop_path=0.0,
            layer_decay=1.0,
            optim=fast,
            init=str(runs["pretrain"] / "ckpt.pt"),
        )
    )
    return runs


@pytest.mark.parametrize(
    "stage,key,margin",
    [
        ("vq", "loss", 0.1),
        ("vq", "rec_amp", 0.05),
        ("pretrain", "loss", 0.5),
        ("finetune", "loss", 0.05),
    ],
)
def test_loss_falls(chain: dict[str, Path], stage: str, key: str, margin: float):
    recs = records(chain[stage])
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    values = [r[key] for r in recs]
    assert all(np.isfinite(values))
    first, last = np.mean(values[:3]), np.mean(values[-3:])
    assert last < first - margin, f"{stage} {key} did not fall: first {values[:3]} last {values[-3:]}"


def test_checkpoints_are_weights_only_and_hold_everything(chain: dict[str, Path]):
    for stage, run in chain.items():
        ck = torch.load(run / "ckpt.pt", weights_only=True)  # nothing to unpickle, RNG states included
        assert ck["family"] == "labram" and ck["stage"] == stage and ck["step"] == STEPS
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
        assert ck["config_hash"] == config_hash(LaBraMRunConfig.from_dict(ck["config"]))
        assert ck["loader"]["epoch"] * ck["loader"]["batches_per_epoch"] + ck["loader"]["batch"] == STEPS
        assert ck["scheduler"]["last_epoch"] == STEPS
    ft = torch.load(chain["finetune"] / "best.pt", weights_only=True)
    # the fine-tune start took the MEM student and said what it left and what is new (official: silent)
    assert "mask_token" in ft["init"]["unused"] and "norm.weight" in ft["init"]["unused"]
    assert ft["init"]["new"] == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    assert ft["best"]["val"]["workload"]["n"] == 16 and "auroc" in ft["best"]["val"]["workload"]
    # layer decay: fine-tune groups carry lr scales; the embeddings' is 0.65^(depth+1) by default
    groups = torch.load(chain["finetune"] / "ckpt.pt", weights_only=True)["optimizer"]["param_groups"]
    assert sorted({round(g["lr_scale"], 6) for g in groups}) == [1.0]  # layer_decay=1.0 in this run
    pre = torch.load(chain["pretrain"] / "best.pt", weights_only=True)
    assert pre["best"]["step"] in (STEPS // 2, STEPS) and "acc" in pre["best"]["val"]


def test_crop_keeps_whole_seconds_under_the_token_budget(pretrain_out: Path):
    from neurolm_train.data import discover, eval_batches

    b = next(eval_batches(discover(pretrain_out / "shards", ["pretrain"], "train"), 2))
    torch.manual_seed(0)
    c = crop(b, 16, 256)
    C = b["n_chans"]
    for i in range(2):
        n = int(c["mask"][i].sum())
        assert n % int(C[i]) == 0 and n <= 256 and n // int(C[i]) <= 16
        assert int(c["times"][i][c["mask"][i]].max()) == n // int(C[i]) - 1
        s0 = int(((c["x"][i, 0:1] - b["x"][i]).abs().sum(-1) == 0).nonzero()[0]) // int(C[i])  # source second
        torch.testing.assert_close(c["x"][i, :n], b["x"][i, s0 * int(C[i]) : s0 * int(C[i]) + n])
        assert torch.equal(c["chans"][i, :n], b["chans"][i, :n])


def _same(a: Path, b: Path, n: int) -> None:
    ca, cb = (torch.load(p / "ckpt.pt", weights_only=True) for p in (a, b))
    assert ca["step"] == cb["step"] == n
    assert ca["model"].keys() == cb["model"].keys() and all(
        torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"]
    )
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    assert ca["loader"] == cb["loader"] and ca["scheduler"] == cb["scheduler"]
    assert [r["loss"] for r in records(a)] == [r["loss"] for r in records(b)]


@pytest.mark.parametrize("stage", ["vq", "pretrain", "finetune"])
def test_resume_is_bit_identical(
    stage: str, chain: dict[str, Path], pretrain_out: Path, small_workload: Path, tmp_path: Path
):
    n, k = 4, 2
    if stage == "finetune":
        shards, tasks, kw = small_workload, ["workload"], {"init": str(chain["pretrain"] / "ckpt.pt")}
    else:
        shards, tasks = pretrain_out / "shards", ["pretrain"]
        kw = {"init": str(chain["vq"] / "ckpt.pt")} if stage == "pretrain" else {}

    # 3 batches per epoch and 2 loader workers: the stop is mid-epoch and mid-worker-cycle
    def cfg(out: Path, **extra):
        return tiny(
            stage,
            out,
            shards,
            tasks,
            2,
            steps=n,
            data={"num_workers": 2, "batches_per_epoch": 3},
            eval_every=2 if stage == "finetune" else 0,
            **kw,
            **extra,
        )

    train(cfg(tmp_path / "full"))
    train(cfg(tmp_path / "split", stop_at=k))
    ck = torch.load(tmp_path / "split" / "ckpt.pt", weights_only=True)
    assert ck["step"] == k and ck["loader"]["batch"] == k  # official auto_resume restarts at epoch 1
    if stage == "finetune":
        with pytest.raises(ValueError, match="config hash"):
            train(cfg(tmp_path / "split", resume=True, seed=1))
    train(cfg(tmp_path / "split", resume=True))
    _same(tmp_path / "full", tmp_path / "split", n)


def test_wrong_inits_fail_by_name(chain: dict[str, Path], small_workload: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="'vq' checkpoint: finetune starts from"):
        train(
            tiny(
                "finetune",
                tmp_path / "a",
                small_workload,
                ["workload"],
                2,
                steps=1,
                init=str(chain["vq"] / "ckpt.pt"),
            )
        )
    with pytest.raises(ValueError, match="pretrain needs the vq tokenizer"):
        train(
            tiny(
                "pretrain",
                tmp_path / "b",
                small_workload,
                ["workload"],
                2,
                steps=1,
                init=str(chain["finetune"] / "ckpt.pt"),
            )
        )
    with pytest.raises(ValueError, match="needs --init"):
        train(tiny("pretrain", tmp_path / "c", small_workload, ["workload"], 2, steps=1))
    with pytest.raises(ValueError, match="fp16 is refused"):
        tiny("vq", tmp_path / "d", small_workload, ["workload"], 2, precision="fp16")
    with pytest.raises(ValueError, match="one task"):
        tiny("finetune", tmp_path / "e", small_workload, ["workload", "tuab"], 2)
