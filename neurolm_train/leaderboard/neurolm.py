"""The NeuroLM row: the trainer's three stages on the task's shards, scored by the trainer's evaluation.

``fit_neurolm`` runs, in ``RUN = RESULTS/runs/TASK/MODEL/seed-SEED``:

1. ``vq``       ``neurolm_train.train.train(stage_config("vq", model, ...))`` on the task's train windows;
2. ``pretrain`` from ``RUN/vq/ckpt.pt``, same windows (labels unused);
3. ``instruct`` from ``RUN/pretrain/ckpt.pt`` on the task's prompt; ``RUN/instruct/best.pt`` is the step
   with the best val balanced accuracy (the trainer's selection; test windows never take part);
4. ``neurolm_train.evaluate.evaluate(best.pt, ..., splits=("test",))``: each answer option is scored by its
   log-likelihood, a softmax over the options gives the class probabilities stored in the record (and,
   with ``paper_decoding``, the paper's greedy decoding with its parse-failure rate, in ``details``).

Or, with ``NeuroLMRowConfig.checkpoint``, step 4 only on that checkpoint (one of ours, or the official
``VQ.pt,NeuroLM-*.pt`` pair with ``checkpoint_config`` naming its model config). After scoring, the large
``pretrain/ckpt.pt`` and ``instruct/ckpt.pt`` (optimizer state included) are deleted; ``vq/ckpt.pt``,
``instruct/best.pt`` and every ``config.json`` / ``metrics.jsonl`` stay, with their sha256 in the record.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from neurolm_train.leaderboard.baselines import Fit
from neurolm_train.leaderboard.config import NeuroLMRowConfig, checkpoint_sha256, file_sha256


def _stage(
    name: str, cfg: NeuroLMRowConfig, run: Path, shards: Path, task: str, seed: int, init: Path | None
) -> tuple[Path, dict[str, Any]]:
    """Train one stage; returns its ``ckpt.pt`` and a JSON-able summary (config hash, wall time, steps)."""
    from neurolm_train.config import config_hash, stage_config
    from neurolm_train.train import train

    data: dict[str, Any] = {"shards": str(shards), "tasks": [task]}
    if cfg.batch_size is not None:
        data["batch_size"] = cfg.batch_size
    over: dict[str, Any] = {
        "out": str(run / name),
        "seed": seed,
        "features": cfg.features,
        "data": data,
        "epochs": getattr(cfg, f"{name}_epochs"),
        "steps": getattr(cfg, f"{name}_steps"),
    }
    if init is not None:
        over["init"] = str(init)
    if name == "vq":  # probe the finished tokenizer on the task's labels (RUN/vq/probe.json)
        over["probe_tasks"] = [task]
    if name == "instruct":
        over["eval_every"] = cfg.instruct_eval_every
        data["val_limit"] = cfg.val_limit
    run_cfg = stage_config(name, cfg.model, **over)
    t0 = time.perf_counter()
    path = train(run_cfg)
    return path, {
        "config_hash": config_hash(run_cfg),
        "wall_s": round(time.perf_counter() - t0, 3),
        "steps": run_cfg.steps,
        "epochs": run_cfg.epochs,
        "out": str(run / name),
    }


def fit_neurolm(ctx: Any, cfg: NeuroLMRowConfig) -> Fit:
    """Train (or load) and score the NeuroLM row for ``ctx`` (a ``runner.FitContext`` with ``run_dir``).

    Returns test probabilities in ``ctx.keys("test")`` order. Raises ``ValueError`` when the evaluation
    misses a selected test window, ``FileNotFoundError`` for a missing checkpoint or tokenizer files.
    """
    from neurolm_train.evaluate import evaluate

    task, shards, run = ctx.manifest.task, Path(ctx.out_dir) / "shards", Path(ctx.run_dir)
    details: dict[str, Any] = {"stages": []}
    if cfg.checkpoint is None:
        init = None
        for name in ("vq", "pretrain", "instruct"):
            init, summary = _stage(name, cfg, run, shards, task, ctx.seed, init)
            details["stages"].append({"stage": name, **summary})
        best = str(run / "instruct" / "best.pt")
    else:
        best = cfg.checkpoint
    t0 = time.perf_counter()
    probe = run / "vq" / "probe.json"
    if cfg.checkpoint is None and probe.is_file():
        details["probe"] = json.loads(probe.read_text())
    splits = ("val", "test") if ctx.manifest.n_classes == 2 else ("test",)
    result = evaluate(
        best,
        str(shards),
        [task],
        run / "eval",
        splits,
        generate=cfg.paper_decoding,
        hard_label=True,
        config=cfg.checkpoint_config if cfg.checkpoint else None,
    )
    details["eval_wall_s"] = round(time.perf_counter() - t0, 3)
    details["checkpoint"] = {
        "path": best,
        "sha256": checkpoint_sha256(best),
        "step": result["step"],
        "stage": result["stage"],
        "selection": result["selection"],
    }
    test_scores = result["scores"][task]["test"]
    details["trainer_test_scores"] = test_scores  # incl. paper decoding (parse_failure_rate) and hard labels
    all_preds = pl.read_parquet(run / "eval" / "predictions.parquet")
    if "val" in splits:  # the val-calibrated decision threshold, reported beside the argmax (binary tasks)
        details["val_threshold"] = _val_threshold(all_preds)
    preds = all_preds.filter(pl.col("split") == "test")
    by_key = dict(zip(preds["key"].to_list(), preds["probs"].to_list(), strict=True))
    keys = ctx.keys("test")
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise ValueError(f"evaluation of {best} lacks {len(missing)} test window(s), e.g. {missing[0]}")
    prob = np.asarray([by_key[k] for k in keys], dtype=np.float64)
    for name in ("pretrain", "instruct"):  # optimizer-laden copies; best.pt and vq/ckpt.pt are kept
        stale = run / name / "ckpt.pt"
        if cfg.checkpoint is None and stale.is_file() and (name != "instruct" or Path(best).is_file()):
            stale.unlink()
    kept = [
        p
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.suffix in (".pt", ".json", ".jsonl", ".parquet")
    ]
    details["files"] = {str(p.relative_to(run)): file_sha256(p) for p in kept}
    record = (result["selection"] or {}).get("record") or {}  # the trainer's best-on-val record
    val_task = (record.get("val") or {}).get(task) or {}
    val = {
        m: float(val_task[m]) for m in ("bacc", "auroc", "auc_pr", "kappa", "f1_weighted") if m in val_task
    }
    return Fit(prob, val, details)


def _val_threshold(preds: pl.DataFrame) -> dict[str, float]:
    """The log-odds threshold with the best val BAcc (``diagnostics.calibrated_threshold``) and the BAcc it
    gives on val (chosen there, optimistic) and on test (held out), beside the argmax's test BAcc."""
    from sklearn.metrics import balanced_accuracy_score

    from neurolm_train.diagnostics import calibrated_threshold, log_odds

    part = {s: preds.filter(pl.col("split") == s) for s in ("val", "test")}
    d = {s: log_odds(np.asarray(p["probs"].to_list())) for s, p in part.items()}
    y = {s: p["label"].to_numpy() for s, p in part.items()}
    t, val_bacc = calibrated_threshold(d["val"], y["val"])
    return {
        "threshold": t,
        "val_bacc": val_bacc,
        "test_bacc": float(balanced_accuracy_score(y["test"], (d["test"] > t).astype(int))),
        "test_bacc_argmax": float(balanced_accuracy_score(y["test"], (d["test"] > 0).astype(int))),
    }


def clear_run_dir(run: Path) -> None:
    """Remove a previous run folder so that a re-run never mixes old and new checkpoints."""
    shutil.rmtree(run, ignore_errors=True)
