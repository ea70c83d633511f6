"""The LaBraM leaderboard rows: ``labram-tiny`` (three stages computed here) and ``labram-base-official``
(published-layout Base weights fine-tuned, run only when named), reduced runs on the real Workload shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import train_app
from neurolm_train.leaderboard.config import (
    DEFAULT_MODELS,
    OPTIONAL_MODELS,
    DataConfig,
    file_sha256,
    resolve_models,
)
from neurolm_train.leaderboard.runner import FitContext, run_one
from neurolm_train.leaderboard.store import iter_records
from neurolm_train.leaderboard.table import build_leaderboard
from neurolm_train.leaderboard.windows import load_manifest
from neurolm_train.models.labram import LaBraMMEM, labram_config
from neurolm_train.models.labram import official as lo

torch.set_num_threads(1)


def _run(*args: str) -> str:
    res = CliRunner().invoke(train_app, list(args))
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_rows_are_registered():
    assert "labram-tiny" in OPTIONAL_MODELS and "labram-base-official" not in DEFAULT_MODELS
    assert OPTIONAL_MODELS["labram-base-official"].config.model == "base"
    (spec,) = resolve_models(["labram-tiny"], {"labram-tiny": {"finetune_epochs": "3", "lr": "0.002"}})
    assert spec.config.finetune_epochs == 3 and spec.config.lr == 0.002


def test_labram_tiny_row_reduced_run_then_show(workload_out: Path, tmp_path: Path):
    results = tmp_path / "lb"
    sets = [
        x
        for k in ("vq_steps=2", "pretrain_steps=2", "finetune_steps=3", "val_limit=30")
        for x in ("--set", f"labram-tiny.{k}")
    ]
    out = _run(
        "leaderboard",
        "run",
        str(workload_out),
        "--task",
        "workload",
        "--results",
        str(results),
        "--model",
        "labram-tiny",
        "--model",
        "chance-majority",
        "--seeds",
        "0,1",
        "--max-windows",
        "120",
        *sets,
    )
    assert "4 record(s) written, 0 skipped" in out
    recs = [r for r in iter_records(results) if r.meta["model"] == "labram-tiny"]
    assert len(recs) == 2
    for rec in recs:
        d = rec.meta["details"]
        assert [s["stage"] for s in d["stages"]] == ["vq", "pretrain", "finetune"]
        assert Path(d["checkpoint"]["path"]).is_file() and len(d["checkpoint"]["sha256"]) == 64
        assert "finetune/best.pt" in d["files"] and "pretrain/ckpt.pt" not in d["files"]
        assert {"bacc", "auroc", "auc_pr"} <= set(rec.meta["scores"]) and "bacc" in rec.meta["val_scores"]
        preds = rec.predictions()
        assert np.allclose(preds.select("prob_0", "prob_1").to_numpy().sum(1), 1.0)
    again = _run(
        "leaderboard",
        "run",
        str(workload_out),
        "--task",
        "workload",
        "--results",
        str(results),
        "--model",
        "labram-tiny",
        "--seeds",
        "0,1",
        "--max-windows",
        "120",
        *sets,
    )
    assert "0 record(s) written, 2 skipped" in again
    board = build_leaderboard(workload_out, results, n_resamples=50)
    row = next(r for r in board.task_rows("workload") if r.model == "labram-tiny")
    assert row.computed and row.n_seeds == 2


def test_labram_base_official_row_fine_tunes_the_given_file(workload_out: Path, tmp_path: Path):
    torch.manual_seed(0)
    weights = tmp_path / "labram-base.pth"
    lo.save_official(LaBraMMEM(labram_config("base")), weights)  # a stand-in with the published layout
    results = tmp_path / "lb"
    sets = [
        x
        for k in (f"checkpoint={weights}", "finetune_steps=1", "batch_size=2", "val_limit=8")
        for x in ("--set", f"labram-base-official.{k}")
    ]
    out = _run(
        "leaderboard",
        "run",
        str(workload_out),
        "--task",
        "workload",
        "--results",
        str(results),
        "--model",
        "labram-base-official",
        "--seeds",
        "0",
        "--max-windows",
        "40",
        *sets,
    )
    assert "1 record(s) written" in out
    (rec,) = iter_records(results)
    assert rec.meta["inputs"]["checkpoint_sha256"] == file_sha256(
        weights
    )  # the file is part of the config hash
    d = rec.meta["details"]
    assert [s["stage"] for s in d["stages"]] == ["finetune"]
    best = torch.load(d["checkpoint"]["path"], weights_only=True)
    assert best["init"]["init"] == "official" and best["model_config"]["depth"] == 12
    ctx = FitContext(workload_out, load_manifest(workload_out, "workload"), DataConfig(40))
    with pytest.raises(ValueError, match="labram-base-official.checkpoint="):
        run_one(ctx, OPTIONAL_MODELS["labram-base-official"], tmp_path / "lb2")
