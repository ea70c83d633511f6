"""Multi-task instruction tuning on the three real tasks (issue 11, acceptance 3): Workload (EEGMAT), ``mi``
(EEGMMIDB fist imagery) and ``adhd`` (IEEE DataPort children), each from its own real release in
``../shared/eeg-samples``, in one model; task sampling counted over an epoch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_train.config import stage_config
from neurolm_train.data import TokenLoader, discover, mixing_weights
from neurolm_train.evaluate import evaluate
from neurolm_train.prompts import TASKS
from neurolm_train.train import train

TASK_NAMES = ["workload", "mi", "adhd"]


def tiny(stage: str, out: Path, roots: str, tasks: list[str], batch_size: int, **kw):
    """A ``tiny`` run config without text (seed 0)."""
    data = {"shards": roots, "tasks": tasks, "batch_size": batch_size, **kw.pop("data", {})}
    return stage_config(stage, "tiny", out=str(out), seed=0, data=data, **kw)


@pytest.fixture(scope="module")
def roots(samples_dir: Path, workload_out: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``OUT/shards`` of Workload, mi and adhd joined by ``os.pathsep`` (the loader's several-roots form)."""
    base = tmp_path_factory.mktemp("multitask")
    out = [str(workload_out / "shards")]
    for source, folder, task in (("eegmmidb", "eegmmidb-mi", "mi"), ("adhd", "adhd", "adhd")):
        summary = run_ingest(source, samples_dir / folder, base / task, workers=2)
        assert summary.n_failed == 0, summary.failures
        run_shard(base / task, task, protocol=task)
        out.append(str(base / task / "shards"))
    return os.pathsep.join(out)


@pytest.mark.parametrize("mixing", ["proportional", "tempered", "uniform"])
def test_task_sampling_weights_counted_over_an_epoch(roots: str, mixing: str) -> None:
    tasks = discover(roots, TASK_NAMES, "train")
    counts = [t.n_windows for t in tasks]
    w = mixing_weights(counts, mixing, 2.0)
    loader = TokenLoader(tasks, w, 64, 0, None, 1, 0, 0, 1000, 276, False)
    seen = np.zeros(len(TASKS), dtype=np.int64)
    for _ in range(loader.batches_per_epoch):
        seen += np.bincount(loader.next()["task"].numpy(), minlength=len(TASKS))
    assert loader.epoch == 1
    n = seen.sum()
    assert n == 64 * loader.batches_per_epoch == 64 * (sum(counts) // 64)
    got = seen[[t.tid for t in tasks]] / n
    sd = np.sqrt(w * (1 - w) / n)
    assert np.all(np.abs(got - w) < 4 * sd + 1e-9), (mixing, got, w)
    if mixing == "proportional":
        np.testing.assert_allclose(w, np.array(counts) / sum(counts))
    if mixing == "uniform":
        np.testing.assert_allclose(w, [1 / 3] * 3)


def test_acceptance_3_one_checkpoint_scores_each_task(roots: str, tmp_path: Path) -> None:
    """vq -> pretrain (Workload train windows) -> instruct on the three tasks, tempered mixing; ``best.pt``
    (chosen on the mean val BAcc over the three tasks) is scored on each task's test windows."""
    runs = tmp_path / "runs"
    train(tiny("vq", runs / "vq", roots, ["workload"], 8, steps=2))
    train(tiny("pretrain", runs / "pre", roots, ["workload"], 8, steps=2, init=str(runs / "vq" / "ckpt.pt")))
    cfg = tiny(
        "instruct",
        runs / "ins",
        roots,
        TASK_NAMES,
        8,
        steps=4,
        init=str(runs / "pre" / "ckpt.pt"),
        data={"mixing": "tempered", "val_limit": 16},
        answer_loss="options",
    )
    train(cfg)
    val = [json.loads(line) for line in (runs / "ins" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r.get("kind") == "val"][-1]
    assert set(val["val"]) == set(TASK_NAMES) and set(val["diagnostics"]) == set(TASK_NAMES)
    for d in val["diagnostics"].values():
        assert 0.0 <= d["answer_spread"] and 0.0 <= d["threshold_bacc"] <= 1.0
    res = evaluate(runs / "ins" / "best.pt", roots, TASK_NAMES, tmp_path / "eval", ("test",), limit=24)
    assert set(res["scores"]) == set(TASK_NAMES)
    for task in TASK_NAMES:
        m = res["scores"][task]["test"]
        assert m["n"] == 24 and 0.0 <= m["bacc"] <= 1.0 and 0.0 <= m["auroc"] <= 1.0
