"""Issue 6: the optimizer state of an official ``NeuroLM-*.pt`` "can seed a resumed run".

A random ``tiny`` NeuroLM takes a few AdamW steps in the official grouping (ckpt §1.4) and is exported with that
state (``save_official_neurolm(optimizer=...)``); ``neurolm-train pretrain --checkpoint VQ.pt,NeuroLM.pt
--init-optimizer`` must start from exactly those moments and step counts, and without the flag from a fresh AdamW.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from fixtures_trainer import cli, random_tiny_neurolm

from neurolm_train import checkpoint, official
from neurolm_train.config import stage_config
from neurolm_train.official import (
    OfficialCheckpointError,
    load_neurolm,
    official_param_groups,
    save_official_neurolm,
    save_official_vq,
    seed_optimizer,
)
from neurolm_train.stages import neurolm_config

torch.set_num_threads(1)
STEPS = 3  # AdamW steps taken before the export


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """``(vq.pt, nlm.pt, optimizer state dict)``: a random tiny NeuroLM after ``STEPS`` AdamW steps on
    official_param_groups (every trainable tensor has a gradient), exported with that state."""
    root = tmp_path_factory.mktemp("official_opt")
    model, tok = random_tiny_neurolm("pretrain")
    mc = model.cfg
    opt = torch.optim.AdamW(official_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95))
    params = [p for g in opt.param_groups for p in g["params"]]
    for _ in range(STEPS):
        sum((p * torch.randn_like(p)).sum() for p in params).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sd = copy.deepcopy(opt.state_dict())
    save_official_vq(tok, root / "vq.pt", torch.randn(50257, mc.vq.n_embd))
    save_official_neurolm(model, root / "nlm.pt", iter_num=STEPS, optimizer=sd)
    save_official_neurolm(model, root / "bare.pt", iter_num=STEPS)  # no optimizer entry
    return root / "vq.pt", root / "nlm.pt", sd


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Copies of the trainer's optimizer state dict right after ``seed_optimizer``."""
    seen: list[dict] = []
    real = official.seed_optimizer

    def wrapped(opt, model, path):
        out = real(opt, model, path)
        seen.append(copy.deepcopy(opt.state_dict()))
        return out

    monkeypatch.setattr(official, "seed_optimizer", wrapped)
    return seen


def _pretrain(vq: Path, nlm: Path, shards: Path, out: Path, *extra: str, ok: bool = True) -> str:
    return cli(
        "pretrain",
        "--checkpoint",
        f"{vq},{nlm}",
        "--shards",
        str(shards),
        "--steps",
        "1",
        "-b",
        "2",
        "--config",
        "tiny",
        "--out",
        str(out),
        *extra,
        ok=ok,
    )


def test_pretrain_init_optimizer_starts_from_the_files_state(
    exported, spy, pretrain_out: Path, tmp_path: Path
):
    vq, nlm, sd = exported
    _pretrain(vq, nlm, pretrain_out / "shards", tmp_path / "seeded", "--init-optimizer")
    assert len(spy) == 1
    got = spy[0]
    assert len(got["param_groups"]) == 2 and [g["params"] for g in got["param_groups"]] == [
        g["params"] for g in sd["param_groups"]
    ]
    assert got["state"].keys() == sd["state"].keys() and len(sd["state"]) == sum(
        len(g["params"]) for g in sd["param_groups"]
    )
    for i, st in sd["state"].items():
        assert float(st["step"]) == STEPS
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(got["state"][i][k], st[k]), (i, k)
    # the run's hyper-parameters, not the file's: tiny pretrain lr schedule and betas
    cfg = stage_config("pretrain", "tiny")
    assert [g["betas"] for g in got["param_groups"]] == [cfg.optim.betas] * 2
    assert [g["weight_decay"] for g in got["param_groups"]] == [cfg.optim.weight_decay, 0.0]
    ck = checkpoint.load(tmp_path / "seeded" / "ckpt.pt")
    assert ck["config"]["init_optimizer"] is True and ck["step"] == 1
    steps = {float(st["step"]) for st in ck["optimizer"]["state"].values()}
    assert steps <= {STEPS, STEPS + 1.0} and STEPS + 1.0 in steps  # params without a gradient keep theirs


def test_without_the_flag_the_optimizer_starts_fresh(exported, spy, pretrain_out: Path, tmp_path: Path):
    vq, nlm, _ = exported
    _pretrain(vq, nlm, pretrain_out / "shards", tmp_path / "fresh")
    assert spy == []
    ck = checkpoint.load(tmp_path / "fresh" / "ckpt.pt")
    assert ck["config"]["init_optimizer"] is False
    assert {float(st["step"]) for st in ck["optimizer"]["state"].values()} == {1.0}


def test_refusals_name_the_problem(exported, pretrain_out: Path, tmp_path: Path):
    vq, nlm, sd = exported
    shards = pretrain_out / "shards"
    out = _pretrain(vq, nlm.with_name("bare.pt"), shards, tmp_path / "a", "--init-optimizer", ok=False)
    assert "has no optimizer entry" in out
    out = cli(
        "pretrain",
        "--init",
        str(nlm),
        "--shards",
        str(shards),
        "--steps",
        "1",
        "--config",
        "tiny",
        "--out",
        str(tmp_path / "b"),
        ok=False,
    )
    assert "needs both: --checkpoint VQ.pt,NeuroLM-B.pt" in out
    out = cli(
        "vq",
        "--shards",
        str(shards),
        "--steps",
        "1",
        "--config",
        "tiny",
        "--init-optimizer",
        "--out",
        str(tmp_path / "c"),
        ok=False,
    )
    assert "init_optimizer takes the AdamW state of an official NeuroLM-*.pt" in out

    mc = neurolm_config(stage_config("pretrain", "tiny"))
    model = load_neurolm(nlm, vq, mc)
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]

    def seed(bad: dict) -> None:
        torch.save(bad, tmp_path / "bad.pt")
        opt = torch.optim.AdamW(official_param_groups(model, 0.1), lr=1e-3)
        seed_optimizer(opt, model, tmp_path / "bad.pt")

    raw = torch.load(nlm, map_location="cpu", weights_only=True)
    bad = copy.deepcopy(raw)
    st = bad["optimizer"]["state"][3]
    st["exp_avg"] = st["exp_avg"][..., :-1].clone()
    with pytest.raises(OfficialCheckpointError, match=rf"group 0 index 3 \({names[3]}\): exp_avg shape"):
        seed(bad)
    bad = copy.deepcopy(raw)
    bad["optimizer"]["param_groups"][1]["params"].pop()
    with pytest.raises(OfficialCheckpointError, match="optimizer group 1 has .* tensors, the model's has"):
        seed(bad)
    bad = copy.deepcopy(raw)
    bad["optimizer"]["param_groups"].pop()
    with pytest.raises(OfficialCheckpointError, match="1 optimizer parameter group"):
        seed(bad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with pytest.raises(ValueError, match="not official_param_groups"):
        seed_optimizer(opt, model, nlm)
