"""LaBraM acceptance 3 (two gloo ranks under torchrun run each stage) and 4 (``neurolm-train`` runs the three
LaBraM stages on the Workload shards on CPU and writes results with BAcc, AUROC and AUC-PR from
probabilities); the official-layout export from the CLI; the family registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from fixtures_labram import subset_shards
from fixtures_trainer import REPO, cli

from neurolm_train import families
from neurolm_train.models.labram import official as lo

torch.set_num_threads(1)


def test_registry_finds_both_families():
    assert families.names()[:2] == ["neurolm", "labram"]
    lab = families.get("labram")
    assert lab.stages == ("vq", "pretrain", "finetune") and lab.configs == ("tiny", "base")
    assert families.get("neurolm").stages == ("vq", "pretrain", "instruct")
    cfg = lab.stage_config("finetune", "base", data={"batch_size": 64})
    assert cfg.layer_decay == 0.65 and cfg.drop_path == 0.1
    assert cfg.optim.lr == pytest.approx(5e-4 * 64 / 512)  # the README recipe assumes batch 512 (8 x 64)
    with pytest.raises(KeyError, match="known"):
        families.get("cbramod")


def test_three_stages_evaluate_and_export_through_the_cli(workload_out: Path, tmp_path: Path):
    sh = str(workload_out / "shards")
    run = tmp_path / "runs"
    # pre-training on the task's train windows (labels unused), as the leaderboard row does
    cli(
        "labram-vq",
        "--shards",
        sh,
        "--tasks",
        "workload",
        "--out",
        str(run / "vq"),
        "--steps",
        "4",
        "-b",
        "4",
        "--seed",
        "0",
    )
    cli(
        "labram-pretrain",
        "--shards",
        sh,
        "--tasks",
        "workload",
        "--out",
        str(run / "pre"),
        "--steps",
        "4",
        "-b",
        "4",
        "--init",
        str(run / "vq" / "ckpt.pt"),
        "--set",
        "model_overrides.cls_pos=first_patch",
    )
    out = cli(
        "labram-finetune",
        "--shards",
        sh,
        "--out",
        str(run / "ft"),
        "--steps",
        "4",
        "-b",
        "8",
        "--init",
        str(run / "pre" / "ckpt.pt"),
        "--eval-every",
        "2",
        "--set",
        "data.val_limit=40",
    )
    assert "checkpoint" in out
    cfg = json.loads((run / "pre" / "config.json").read_text())
    assert cfg["model_config"]["cls_pos"] == "first_patch"  # the official CLS computation, as an option
    res_out = cli(
        "labram-evaluate",
        "--checkpoint",
        str(run / "ft" / "best.pt"),
        "--shards",
        sh,
        "--out",
        str(tmp_path / "eval"),
    )
    assert "test n=290" in res_out
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    test = res["scores"]["workload"]["test"]
    assert {"bacc", "auroc", "auc_pr"} <= set(test) and test["n"] == 290
    assert res["family"] == "labram" and res["selection"]["record"]["step"] in (2, 4)
    preds = pl.read_parquet(tmp_path / "eval" / "predictions.parquet")
    assert preds.height == 290 + 290 and all(abs(sum(p) - 1) < 1e-5 for p in preds["probs"].to_list())
    # export to the official layout and read it back with the official-file loader
    cli("labram-export", "--checkpoint", str(run / "ft" / "best.pt"), "--out", str(tmp_path / "ft.pth"))
    kind, model, _ = lo.load_official(tmp_path / "ft.pth", like=None)
    assert kind == "finetune" and model.head.out_features == 1
    cli("labram-export", "--checkpoint", str(run / "pre" / "ckpt.pt"), "--out", str(tmp_path / "mem.pth"))
    assert lo.load_official(tmp_path / "mem.pth")[0] == "mem"
    # an official fine-tuned file is scored as given (tiny shapes: --config names the model config)
    cli(
        "labram-evaluate",
        "--checkpoint",
        str(tmp_path / "ft.pth"),
        "--config",
        "tiny",
        "--shards",
        sh,
        "--out",
        str(tmp_path / "eval2"),
        "--splits",
        "test",
    )
    res2 = json.loads((tmp_path / "eval2" / "results.json").read_text())
    assert res2["scores"]["workload"]["test"] == pytest.approx(test)
    assert len(res2["official"]["sha256"]) == 64
    # a NeuroLM command refuses nothing it should not: wrong-family inits fail with a message
    bad = cli(
        "labram-finetune",
        "--shards",
        sh,
        "--out",
        str(run / "bad"),
        "--steps",
        "1",
        "--init",
        str(run / "vq" / "ckpt.pt"),
        ok=False,
    )
    assert "finetune starts from" in bad


def _torchrun(args: list[str], timeout: int = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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


def test_each_stage_runs_on_two_gloo_ranks(pretrain_out: Path, workload_out: Path, tmp_path: Path):
    small = subset_shards(workload_out / "shards", "workload", tmp_path / "small", 6)
    pre = str(pretrain_out / "shards")
    run = tmp_path / "runs"
    _torchrun(["labram-vq", "--shards", pre, "--out", str(run / "vq"), "--steps", "3", "-b", "2", "-w", "1"])
    _torchrun(
        [
            "labram-pretrain",
            "--shards",
            pre,
            "--out",
            str(run / "pre"),
            "--steps",
            "3",
            "-b",
            "2",
            "--init",
            str(run / "vq" / "ckpt.pt"),
        ]
    )
    _torchrun(
        [
            "labram-finetune",
            "--shards",
            str(small),
            "--out",
            str(run / "ft"),
            "--steps",
            "3",
            "-b",
            "2",
            "--init",
            str(run / "pre" / "ckpt.pt"),
        ]
    )
    for stage in ("vq", "pre", "ft"):
        ranks = [json.loads((run / stage / "ranks" / f"rank{r}.json").read_text()) for r in range(2)]
        assert [r["world"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
        assert ranks[0]["loader"] == ranks[1]["loader"]
        ck = torch.load(run / stage / "ckpt.pt", weights_only=True)
        assert ck["world"] == 2 and len(ck["rng"]) == 2
    best = torch.load(run / "ft" / "best.pt", weights_only=True)["best"]
    assert best["val"]["workload"]["n"] == 12  # both ranks' validation windows, gathered
