"""UniMind's multi-task instruction-tuning stage and per-task evaluation (issue 13, acceptance 4) on the three
real tasks: Workload (EEGMAT), ``mi`` (EEGMMIDB left/right fist imagery, S001-S012) and ``adhd`` (121 children).

Runs are short (a few optimizer steps of the ``tiny`` model); what is checked is the mechanics: one checkpoint
scored per task, one task per batch drawn with the mixing weights, bit-identical resume, two gloo ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_trainer import REPO, cli, same_tensors

from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_train import checkpoint
from neurolm_train.data import mixing_weights
from neurolm_train.models.unimind.run import closest_answer, evaluate, run_config, step_task, train

torch.set_num_threads(1)
TASKS3 = ["workload", "mi", "adhd"]


@pytest.fixture(scope="module")
def shards3(workload_out: Path, samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The three tasks' ``OUT/shards`` roots joined by ``os.pathsep`` (mi and adhd ingested here, real files)."""
    roots = [workload_out / "shards"]
    for source, folder, task in (("eegmmidb", "eegmmidb-mi", "mi"), ("adhd", "adhd", "adhd")):
        out = tmp_path_factory.mktemp(task) / "out"
        summary = run_ingest(source, samples_dir / folder, out, workers=2)
        assert summary.n_failed == 0, summary.failures
        run_shard(out, task, protocol=task)
        roots.append(out / "shards")
    return os.pathsep.join(str(r) for r in roots)


def _cfg(shards: str, out: Path, **kw):
    data = {
        "shards": shards,
        "tasks": TASKS3,
        "batch_size": 4,
        "eval_batch_size": 16,
        "val_limit": 8,
        "mixing": "uniform",
        **kw.pop("data", {}),
    }
    kw.setdefault("steps", 6)
    kw.setdefault("eval_every", 0)
    return run_config("tiny", out=str(out), data=data, log_every=1, **kw)


def _steps(run: Path) -> list[dict]:
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("kind") != "val"
    ]


def test_step_task_draws_follow_the_mixing_weights():
    counts = [1508, 180, 3000]
    for mode in ("proportional", "tempered", "uniform"):
        w = mixing_weights(counts, mode)
        draws = np.bincount([step_task(0, s, w) for s in range(6000)], minlength=3) / 6000
        assert np.abs(draws - w).max() < 0.03, (mode, draws, w)
    assert [step_task(1, s, w) for s in range(50)] == [step_task(1, s, w) for s in range(50)]


def test_closest_answer_is_the_released_parser():
    assert closest_answer(" Yes", (" No", " Yes")) == (1, True)
    assert closest_answer("Yess", (" No", " Yes")) == (1, False)
    assert closest_answer(" Left hand", (" Left", " Right")) == (0, False)


def test_multitask_run_writes_per_task_results_from_one_checkpoint(shards3, tmp_path):
    cfg = _cfg(shards3, tmp_path / "run", steps=9)
    ckpt = train(cfg)
    recs = _steps(tmp_path / "run")
    assert [r["step"] for r in recs] == list(range(1, 10))
    assert {r["task"] for r in recs} == set(TASKS3)  # uniform draws over 9 steps reach every task (seed 0)
    assert all(np.isfinite(r["loss"]) for r in recs)
    best = tmp_path / "run" / "best.pt"
    assert best.is_file() and ckpt.is_file()
    res = evaluate(best, shards3, None, tmp_path / "ev", splits=("test",), limit=12)
    assert set(res["scores"]) == set(TASKS3)
    for task in TASKS3:
        m = res["scores"][task]["test"]
        assert m["n"] == 12 and 0.0 <= m["bacc"] <= 1.0 and "auroc" in m
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert saved["checkpoint_sha256"] == res["checkpoint_sha256"] and saved["tasks_trained"] == TASKS3
    import polars as pl

    pred = pl.read_parquet(tmp_path / "ev" / "predictions.parquet")
    assert pred.height == 36 and set(pred["task"]) == set(TASKS3)
    probs = np.array(pred["probs"].to_list())
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)


def test_beam_decoding_reports_its_parse_failure_rate(shards3, tmp_path):
    train(_cfg(shards3, tmp_path / "run", steps=2, data={"tasks": ["workload"]}))
    res = evaluate(
        tmp_path / "run" / "ckpt.pt",
        shards3,
        ["workload"],
        tmp_path / "ev",
        splits=("test",),
        beam=True,
        limit=3,
    )
    g = res["scores"]["workload"]["test"]["generation"]
    assert 0.0 <= g["parse_failure_rate"] <= 1.0 and 0.0 <= g["bacc"] <= 1.0


def test_resume_is_bit_identical(shards3, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(_cfg(shards3, a))
    train(_cfg(shards3, b, stop_at=3))
    assert checkpoint.load(b / "ckpt.pt")["step"] == 3
    train(_cfg(shards3, b, resume=True))
    ka, kb = checkpoint.load(a / "ckpt.pt"), checkpoint.load(b / "ckpt.pt")
    assert same_tensors(ka["model"], kb["model"])
    assert ka["loader"] == kb["loader"]
    la, lb = _steps(a), _steps(b)
    assert [(r["task"], r["loss"]) for r in la] == [(r["task"], r["loss"]) for r in lb]


def test_two_gloo_ranks_run_the_multitask_stage(shards3, tmp_path, gpt2_tokenizer_dir):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NEUROLM_GPT2_TOKENIZER": str(gpt2_tokenizer_dir)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "neurolm_train",
        "unimind-train",
        "--shards",
        shards3,
        "--tasks",
        ",".join(TASKS3),
        "--out",
        str(run),
        "--steps",
        "4",
        "-b",
        "2",
        "--eval-every",
        "0",
        "--mixing",
        "uniform",
        "--set",
        "data.val_limit=4",
        "--set",
        "data.eval_batch_size=4",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ranks = [json.loads((run / "ranks" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [4, 4]
    assert ranks[0]["batches"] == ranks[1]["batches"] == 4
    ck = checkpoint.load(run / "ckpt.pt")
    assert ck["world"] == 2 and len(ck["rng"]) == 2
    out = cli(
        "unimind-evaluate",
        "--checkpoint",
        str(run / "best.pt"),
        "--shards",
        shards3,
        "--out",
        str(tmp_path / "ev"),
        "--splits",
        "test",
        "--limit",
        "4",
    )
    for task in TASKS3:
        assert f"{task} test n=4" in out


def test_cli_says_when_lm_weights_are_missing(shards3, tmp_path):
    out = cli(
        "unimind-train",
        "--shards",
        shards3,
        "--out",
        str(tmp_path / "r"),
        "--config",
        "small",
        "--lm",
        str(tmp_path / "no-such-lm"),
        "--steps",
        "1",
        ok=False,
    )
    assert "no weights for the language model" in out


def test_leaderboard_multitask_row_trains_once_and_scores_each_task(shards3, tmp_path):
    from neurolm_train.leaderboard import store
    from neurolm_train.leaderboard.config import resolve_models
    from neurolm_train.leaderboard.runner import run_leaderboard

    roots = dict(zip(TASKS3, shards3.split(os.pathsep), strict=True))
    metas = {}
    for task in ("workload", "mi"):
        others = [t for t in TASKS3 if t != task]
        sets = {
            "also_tasks": ",".join(others),
            "also_shards": ",".join(roots[t] for t in others),
            "shared_run": str(tmp_path / "mt"),
            "steps": "3",
            "val_limit": "4",
            "batch_size": "4",
        }
        specs = resolve_models(["unimind-tiny-multitask"], {"unimind-tiny-multitask": sets})
        (o,) = run_leaderboard(Path(roots[task]).parent, specs, (0,), [task], tmp_path / f"res-{task}")
        assert o.status == "ran" and 0.0 <= o.scores["bacc"] <= 1.0
        rec = store.load_record(store.record_dir(tmp_path / f"res-{task}", task, "unimind-tiny-multitask", 0))
        metas[task] = rec.meta["details"]
    assert metas["workload"]["reused_training"] is False and metas["mi"]["reused_training"] is True
    assert metas["workload"]["tasks_trained"] == sorted(TASKS3)
    assert metas["workload"]["checkpoint"]["sha256"] == metas["mi"]["checkpoint"]["sha256"]
