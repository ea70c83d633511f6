"""NeuroLM tiny that learns (issue 11): the gradient path overfits, the tokenizer probe, no adversary without
text, the restricted answer loss, the instruct diagnostics and the val-calibrated threshold. Real EEGMAT
windows (the session's ``workload_out`` shards), real training steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_trainer import random_tiny_neurolm, step_records, tiny, write_corpus
from sklearn.metrics import balanced_accuracy_score

from neurolm_train.data import collate, decode_sample
from neurolm_train.diagnostics import answer_spread, calibrated_threshold, log_odds, logit_stats
from neurolm_train.probe import probe_tokenizer
from neurolm_train.prompts import TASK_IDS, answer_ids, prompt_ids
from neurolm_train.shardio import tar_samples
from neurolm_train.stages import InstructStage, answer_options
from neurolm_train.train import train


def _train_windows(shards: Path, n_per_class: int) -> dict:
    """The first ``n_per_class`` windows of each class among the Workload train windows, as one batch."""
    picked: dict[int, list] = {0: [], 1: []}
    for s in tar_samples(sorted(str(p) for p in (shards / "workload" / "train").glob("*.tar"))):
        rec = decode_sample(s, 1024)
        if len(picked[rec["label"]]) < n_per_class:
            picked[rec["label"]].append(rec)
        if all(len(v) == n_per_class for v in picked.values()):
            break
    return collate(picked[0] + picked[1])


def _bacc(model, batch) -> float:
    tid = TASK_IDS["workload"]
    prompt = torch.tensor(prompt_ids(tid)).expand(len(batch["key"]), -1)
    lp = model.answer_logprobs(
        batch["x"],
        batch["chans"],
        batch["times"],
        batch["mask"],
        batch["n_chans"],
        prompt,
        [list(a) for a in answer_ids(tid)],
    )
    return float(balanced_accuracy_score(batch["label"].numpy(), lp.argmax(1).numpy()))


@pytest.mark.parametrize("answer_loss", ["full", "options"])
def test_acceptance_1_instruct_overfits_32_windows(workload_out: Path, answer_loss: str) -> None:
    """The gradient path: 32 real train windows (16 per class), the official answer loss (or the restricted
    one), AdamW at the tiny lr: the answers reach BAcc 1.0 on those windows within 200 steps."""
    batch = _train_windows(workload_out / "shards", 16)
    model, _ = random_tiny_neurolm("instruct")
    stage = InstructStage(model, answer_loss=answer_loss)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    torch.manual_seed(0)
    curve = []
    model.train()
    for step in range(1, 201):
        loss = stage(batch, None, 0.0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            curve.append((step, _bacc(model, batch)))
            model.train()
            if curve[-1][1] == 1.0:
                break
    assert curve[-1][1] == 1.0, f"BAcc on the 32 train windows by step: {curve}"


def test_answer_options_and_restricted_loss(workload_out: Path) -> None:
    tid = TASK_IDS["workload"]
    opts = answer_options(np.array([tid, tid]))
    assert opts.tolist() == [[answer_ids(tid)[0][0], answer_ids(tid)[1][0]]] * 2
    batch = _train_windows(workload_out / "shards", 2)
    model, _ = random_tiny_neurolm("instruct")
    full = InstructStage(model, answer_loss="full")(batch, None, 0.0)
    restricted = InstructStage(model, answer_loss="options")(batch, None, 0.0)
    # at init the 2-way first-token loss is about ln 2, far below the 50k-way one
    assert restricted["loss_instruct"] < full["loss_instruct"]
    assert "answer_margin" in restricted and "answer_margin" not in full


def test_acceptance_2_probe_written_and_no_domain_loss_without_text(
    workload_out: Path, tmp_path: Path
) -> None:
    shards = workload_out / "shards"
    cfg = tiny("vq", tmp_path / "vq", shards, None, ["workload"], 16, steps=6, probe_tasks=["workload"])
    cfg.text.corpus = None
    train(cfg)
    for rec in step_records(tmp_path / "vq"):  # no text -> no domain classifier in the loss or the metrics
        assert "domain_eeg" not in rec and "domain_text" not in rec
        assert rec["loss"] == pytest.approx(rec["commit"] + rec["rec_freq"] + rec["rec_raw"], rel=1e-5)
    probe = json.loads((tmp_path / "vq" / "probe.json").read_text())
    r = probe["tasks"]["workload"]
    assert r["n"] == {"train": 1508, "val": 290, "test": 290}
    for kind in ("pooled", "per_channel", "bandpower"):
        for k in ("val_auroc", "test_auroc", "val_bacc", "test_bacc"):
            assert 0.0 <= r[kind][k] <= 1.0, (kind, k)
    assert r["pooled"]["n_features"] == 64 and r["per_channel"]["n_features"] == 19 * 64
    assert r["bandpower"]["test_auroc"] > 0.75  # band power on the raw windows carries the label
    assert probe["step"] == 6 and len(probe["sha256"]) == 64

    # with a text corpus both sides of the domain classifier are in the loss, as in the official code
    cfg = tiny("vq", tmp_path / "vq_text", shards, write_corpus(tmp_path / "c.txt"), ["workload"], 8, steps=2)
    train(cfg)
    for rec in step_records(tmp_path / "vq_text"):
        assert rec["domain_eeg"] > 0 and rec["domain_text"] > 0
        parts = rec["commit"] + rec["rec_freq"] + rec["rec_raw"] + rec["domain_eeg"] + rec["domain_text"]
        assert rec["loss"] == pytest.approx(parts, rel=1e-5)


def test_probe_random_tokenizer_against_band_power(workload_out: Path) -> None:
    """The probe separates what a random-init tiny tokenizer keeps from band power (issue 11's diagnosis)."""
    _, tok = random_tiny_neurolm("vq")
    r = probe_tokenizer(tok, workload_out / "shards", "workload")
    assert r["bandpower"]["val_auroc"] > r["pooled"]["val_auroc"]
    assert r["per_channel"]["val_auroc"] > 0.6


def test_diagnostics_and_threshold(workload_out: Path) -> None:
    d = np.array([-2.0, -1.0, 0.5, 1.5, 3.0])
    y = np.array([0, 0, 0, 1, 1])
    t, b = calibrated_threshold(d, y)
    assert b == 1.0 and 0.5 < t < 1.5
    assert np.allclose(log_odds(np.array([[0.5, 0.5], [0.2, 0.8]])), [0.0, np.log(4.0)])
    rows = [
        {"task": "workload", "label": int(yy), "probs": [1 / (1 + np.exp(v)), 1 / (1 + np.exp(-v))]}
        for v, yy in zip(d, y, strict=True)
    ]
    s = logit_stats(rows)["workload"]
    assert s["logodds_mean"] == pytest.approx(d.mean()) and s["threshold_bacc"] == 1.0
    model, _ = random_tiny_neurolm("instruct")
    spread = answer_spread(model, _train_windows(workload_out / "shards", 4))
    assert 0.0 < spread < 1.0


def test_pipeline_records_the_probe(eegmat_dir: Path, tmp_path: Path) -> None:
    """The main job probes the NeuroLM row's tokenizer: ``probe.json`` per seed, in the record's details and
    printed; the record also holds the val-calibrated threshold beside the argmax BAcc."""
    import shutil

    from rich.console import Console

    from neurolm_train.leaderboard.store import iter_records
    from neurolm_train.pipeline import run_pipeline

    root = tmp_path / "eegmat"
    root.mkdir()
    for s in ("Subject00", "Subject01", "Subject27", "Subject33"):
        for run in (1, 2):
            shutil.copy(eegmat_dir / f"{s}_{run}.edf", root)
    console = Console(record=True, width=200)
    res = run_pipeline(
        root,
        tmp_path / "out",
        models=("neurolm-tiny",),
        n_boot=50,
        console=console,
        neurolm_budget=("vq_steps=3", "pretrain_steps=2", "instruct_steps=2", "val_limit=16"),
    )
    assert set(res.probes) == {0}
    probe = json.loads(res.probes[0].read_text())
    assert set(probe["tasks"]["workload"]) >= {"pooled", "per_channel", "bandpower"}
    (rec,) = iter_records(res.out / "leaderboard")
    details = rec.meta["details"]
    assert details["probe"] == probe
    thr = details["val_threshold"]
    assert 0.0 <= thr["test_bacc"] <= 1.0 and 0.0 <= thr["test_bacc_argmax"] <= 1.0
    assert "workload: probe AUROC val / test: pooled" in console.export_text()
