"""Issue 6 "CLI": official files (``VQ.pt,NeuroLM-*.pt``) go straight into ``neurolm-train evaluate`` and
``neurolm-train instruct``. A small random project model (``tiny``: the GPT is wider than the tokenizer, so the
L/XL ``encode_transform_layer`` path, and 4 heads everywhere, which the official files do not all store) is
exported with ``save_official_*`` and loaded back through the CLI with ``--config tiny``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from fixtures_trainer import cli, random_tiny_neurolm
from typer.testing import CliRunner

from cli import train_app
from neurolm_train.config import RunConfig
from neurolm_train.data import discover
from neurolm_train.evaluate import predict
from neurolm_train.leaderboard.store import iter_records
from neurolm_train.models import NeuroLM
from neurolm_train.official import (
    OfficialCheckpointError,
    load_official,
    save_official_neurolm,
    save_official_vq,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, NeuroLM]:
    """``(vq.pt, nlm.pt, model)``: a random tiny NeuroLM (with a k-means-free random codebook) and its
    tokenizer, written in the official layout."""
    root = tmp_path_factory.mktemp("official_cli")
    model, tok = random_tiny_neurolm("instruct")
    mc = model.cfg
    save_official_vq(tok, root / "vq.pt", torch.randn(50257, mc.vq.n_embd), iter_num=3, epoch=1)
    save_official_neurolm(model, root / "nlm.pt", iter_num=11, epoch=2)
    return root / "vq.pt", root / "nlm.pt", model.eval()


def test_evaluate_official_pair_equals_in_memory_scoring(exported, workload_out: Path, tmp_path: Path):
    vq, nlm, model = exported
    shards = str(workload_out / "shards")
    cli(
        "evaluate",
        "--checkpoint",
        f"{vq},{nlm}",
        "--shards",
        shards,
        "--tasks",
        "workload",
        "--limit",
        "16",
        "--config",
        "tiny",
        "--out",
        str(tmp_path / "eval"),
    )
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    test = res["scores"]["workload"]["test"]
    assert test["n"] == 16 and res["scores"]["workload"]["val"]["n"] == 16
    assert all(k in test for k in ("bacc", "auroc", "auc_pr"))
    assert res["stage"] == "official" and res["step"] == 11 and res["selection"]["record"] is None
    files = {f["kind"]: f for f in res["official"]["files"]}
    assert files["vq"]["path"] == str(vq) and files["neurolm"]["path"] == str(nlm)
    for f, p in ((files["vq"], vq), (files["neurolm"], nlm)):
        assert f["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert res["model_config"]["gpt"]["n_head"] == 4 and res["model_config"]["vq"]["n_head"] == 4
    assert res["config"]["init"] == str(nlm) and res["config"]["vq"] == str(vq)

    cfg = RunConfig.from_dict(res["config"])
    rows = predict(model, discover(shards, ["workload"], "test"), cfg, torch.device("cpu"), limit=16)
    preds = pl.read_parquet(tmp_path / "eval" / "predictions.parquet").filter(pl.col("split") == "test")
    got = dict(zip(preds["key"].to_list(), preds["probs"].to_list(), strict=True))
    assert sorted(got) == sorted(r["key"] for r in rows)
    for r in rows:
        np.testing.assert_allclose(got[r["key"]], r["probs"], rtol=0, atol=1e-6)


def test_neurolm_file_alone_takes_its_tokenizer_heads_from_the_config(
    exported, workload_out: Path, tmp_path: Path
):
    _, nlm, _ = exported
    cli(
        "evaluate",
        "--checkpoint",
        str(nlm),
        "--shards",
        str(workload_out / "shards"),
        "--tasks",
        "workload",
        "--limit",
        "4",
        "--splits",
        "test",
        "--config",
        "tiny",
        "--out",
        str(tmp_path / "eval"),
    )
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert res["model_config"]["vq"]["n_head"] == 4 and [f["kind"] for f in res["official"]["files"]] == [
        "neurolm"
    ]


def test_head_counts_the_files_do_not_store_come_from_the_model_config(exported, tmp_path: Path):
    _, nlm, model = exported
    raw = torch.load(nlm, map_location="cpu", weights_only=True)
    del raw["model_args"]  # no GPT head count either: only the caller's model config knows them
    torch.save(raw, tmp_path / "bare.pt")
    with pytest.raises(OfficialCheckpointError, match=r"GPT width 128 .* nor the model config gives n_head"):
        load_official(tmp_path / "bare.pt")
    gpt_only = model.cfg.from_dict({**model.cfg.to_dict(), "vq": {**model.cfg.vq.__dict__, "n_head": 12}})
    with pytest.raises(OfficialCheckpointError, match=r"tokenizer.pos_embed.weight: width 64 .* 12 heads"):
        load_official(tmp_path / "bare.pt", mc=gpt_only)
    _, loaded, _ = load_official(tmp_path / "bare.pt", mc=model.cfg)
    assert (loaded.cfg.gpt.n_head, loaded.cfg.vq.n_head) == (4, 4)


def test_evaluate_refusals_are_clear(exported, workload_out: Path, tmp_path: Path):
    vq, nlm, _ = exported
    common = ["--shards", str(workload_out / "shards"), "--tasks", "workload", "--out", str(tmp_path / "x")]
    out = cli("evaluate", "--checkpoint", f"{vq},{nlm}", *common, ok=False)
    assert "not those of B, L or XL" in out and "--config" in out
    out = cli("evaluate", "--checkpoint", f"{vq},{nlm}", "--config", "B", *common, ok=False)
    assert "gpt.n_embd: file 128 vs config 768" in out
    out = cli("evaluate", "--checkpoint", str(vq), "--config", "tiny", *common, ok=False)
    assert "needs an official NeuroLM-*.pt" in out
    raw = torch.load(vq, map_location="cpu", weights_only=True)
    key = "_orig_mod.VQ.encoder.blocks.0.attn.c_attn.weight"
    raw["model"][key] = raw["model"][key][:, :-1].clone()
    torch.save(raw, tmp_path / "bad_vq.pt")
    out = cli(
        "evaluate", "--checkpoint", f"{tmp_path / 'bad_vq.pt'},{nlm}", "--config", "tiny", *common, ok=False
    )
    assert "mis-shaped key(s): VQ.encoder.blocks.0.attn.c_attn.weight" in out


def test_instruct_starts_from_the_official_pair(exported, workload_out: Path, tmp_path: Path):
    vq, nlm, _ = exported
    cli(
        "instruct",
        "--checkpoint",
        f"{vq},{nlm}",
        "--shards",
        str(workload_out / "shards"),
        "--tasks",
        "workload",
        "--steps",
        "2",
        "-b",
        "4",
        "--config",
        "tiny",
        "--out",
        str(tmp_path / "ins"),
        "--set",
        "data.val_limit=8",
    )
    ck = torch.load(tmp_path / "ins" / "ckpt.pt", map_location="cpu", weights_only=True)
    assert ck["stage"] == "instruct" and ck["step"] == 2
    assert ck["config"]["init"] == str(nlm) and ck["config"]["vq"] == str(vq)


def test_leaderboard_row_scores_the_official_pair(exported, workload_out: Path, tmp_path: Path):
    # the NeuroLM leaderboard row takes the official VQ.pt,NeuroLM-*.pt pair as its checkpoint: no training,
    # the trainer's evaluation on the test windows, both files' sha256 in the config hash and the record
    vq, nlm, _ = exported
    sha = ",".join(hashlib.sha256(p.read_bytes()).hexdigest() for p in (vq, nlm))
    args = [
        "leaderboard",
        "run",
        str(workload_out),
        "--task",
        "workload",
        "--results",
        str(tmp_path / "lb"),
        "--model",
        "neurolm-official",
        "--seeds",
        "0",
        "--set",
        f"neurolm-official.checkpoint={vq},{nlm}",
        "--set",
        "neurolm-official.checkpoint_config=tiny",
        "--set",
        "neurolm-official.paper_decoding=false",
    ]
    run = CliRunner().invoke(train_app, args)
    assert run.exit_code == 0, run.output
    (rec,) = iter_records(tmp_path / "lb")
    d = rec.meta["details"]
    assert d["stages"] == [] and d["checkpoint"]["stage"] == "official" and d["checkpoint"]["step"] == 11
    assert d["checkpoint"]["sha256"] == sha == rec.meta["inputs"]["checkpoint_sha256"]
    assert d["checkpoint"]["path"] == f"{vq},{nlm}"
    assert rec.meta["n_test_windows"] == rec.predictions().height > 0
    again = CliRunner().invoke(train_app, args)  # the same files: the record is current
    assert again.exit_code == 0 and "0 record(s) written, 1 skipped" in again.output
    missing = CliRunner().invoke(train_app, args[:9])  # the row without its files: a clear refusal
    assert (
        missing.exit_code != 0 and "neurolm-official.checkpoint=" in str(missing.exception) + missing.output
    )
