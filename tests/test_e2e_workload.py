"""Acceptance 1: ``neurolm-train vq -> pretrain -> instruct -> evaluate`` with the ``tiny`` config on CPU, on
the real Workload shards plus unlabeled ``pretrain`` shards, through the CLI; the results file holds Workload
test BAcc, AUROC and AUC-PR computed from probabilities, consistent with the per-window predictions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from fixtures_trainer import write_corpus
from typer.testing import CliRunner

from cli import train_app
from neurolm_train.config import RunConfig, config_hash
from neurolm_train.metrics import binary_metrics

torch.set_num_threads(1)


def _cli(*args: str) -> None:
    res = CliRunner().invoke(train_app, list(args))
    assert res.exit_code == 0, res.output + repr(res.exception)


@pytest.fixture(scope="module")
def results(workload_out: Path, pretrain_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    text = str(write_corpus(root / "corpus.txt"))
    pre, wl = str(pretrain_out / "shards"), str(workload_out / "shards")
    common = [
        "--config",
        "tiny",
        "--text",
        text,
        "--seed",
        "0",
        "--set",
        "text.block=32",
        "--set",
        "text.batch_size=2",
    ]
    _cli("vq", "--shards", pre, "--out", str(root / "vq"), "--steps", "6", "-b", "2", *common)
    _cli(
        "pretrain",
        "--shards",
        pre,
        "--out",
        str(root / "pre"),
        "--steps",
        "6",
        "-b",
        "2",
        "--init",
        str(root / "vq" / "ckpt.pt"),
        *common,
    )
    _cli(
        "instruct",
        "--shards",
        wl,
        "--tasks",
        "workload",
        "--out",
        str(root / "ins"),
        "--steps",
        "40",
        "-b",
        "16",
        "--init",
        str(root / "pre" / "ckpt.pt"),
        "--eval-every",
        "20",
        "--set",
        "data.val_limit=96",
        *common,
    )
    _cli(
        "evaluate",
        "--checkpoint",
        str(root / "ins" / "best.pt"),
        "--shards",
        wl,
        "--tasks",
        "workload",
        "--out",
        str(root / "eval"),
    )
    _cli(
        "evaluate",
        "--checkpoint",
        str(root / "ins" / "best.pt"),
        "--shards",
        wl,
        "--tasks",
        "workload",
        "--out",
        str(root / "eval_gen"),
        "--splits",
        "test",
        "--limit",
        "24",
        "--generate",
        "--hard-label",
    )
    return root


def test_results_hold_workload_test_scores_from_probabilities(results: Path, workload_out: Path):
    res = json.loads((results / "eval" / "results.json").read_text())
    test = res["scores"]["workload"]["test"]
    assert test["n"] == 290 and res["scores"]["workload"]["val"]["n"] == 290
    for k in ("bacc", "auroc", "auc_pr"):
        assert 0.0 <= test[k] <= 1.0
    preds = pl.read_parquet(results / "eval" / "predictions.parquet").filter(pl.col("split") == "test")
    assert preds.height == 290 and preds["key"].n_unique() == 290
    probs = np.array(preds["probs"].to_list())
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert len(np.unique(probs[:, 1].round(6))) > 10  # real scores, not hard labels
    again = binary_metrics(preds["label"].to_numpy(), probs)
    assert all(again[k] == pytest.approx(test[k]) for k in ("bacc", "auroc", "auc_pr"))
    manifest = workload_out / "shards" / "workload" / "windows.parquet"
    assert res["manifest_hashes"]["workload"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert res["config_hash"] == config_hash(RunConfig.from_dict(res["config"]))
    assert res["seed"] == 0 and res["stage"] == "instruct" and len(res["code_version"]) >= 7


def test_checkpoint_was_selected_on_validation(results: Path):
    vals = [
        r
        for r in map(json.loads, (results / "ins" / "metrics.jsonl").read_text().splitlines())
        if r.get("kind") == "val"
    ]
    assert [v["step"] for v in vals] == [20, 40]
    best = max(vals, key=lambda v: (v["score"], v["tiebreak"]))  # first of equal records wins
    res = json.loads((results / "eval" / "results.json").read_text())
    assert res["selection"]["record"]["step"] == best["step"] == res["step"]
    assert res["selection"]["record"]["val"]["workload"]["n"] == 96


def test_paper_generation_scoring_reports_parse_failures(results: Path):
    res = json.loads((results / "eval_gen" / "results.json").read_text())
    test = res["scores"]["workload"]["test"]
    assert test["n"] == 24 and set(res["scores"]["workload"]) == {"test"}
    gen, hard = test["generation"], test["hard_label"]
    assert 0.0 <= gen["parse_failure_rate"] <= 1.0 and hard["parse_failure_rate"] == 0.0
    preds = pl.read_parquet(results / "eval_gen" / "predictions.parquet")
    assert gen["parse_failure_rate"] == pytest.approx(float((preds["gen_pred"] < 0).mean()))
    assert preds["gen_text"].dtype == pl.String
