"""The UniMind rows: ``unimind-tiny`` (trained on the row's task alone) and ``unimind-tiny-multitask`` (one model
trained on the row's task together with ``also_tasks``, scored on each task from the same checkpoint).

``fit_unimind`` trains with ``neurolm_train.models.unimind.run.train`` (one task per batch, ``mixing`` weights,
``best.pt`` = the step with the best mean val balanced accuracy over the trained tasks; test windows never take
part) and scores ``best.pt`` on the row task's test windows with ``run.evaluate`` (candidate answers by
log-likelihood -> class probabilities; with ``beam`` also the released beam decoding and its parse-failure rate,
in ``details``). A multi-task row is trained once per seed in ``shared_run/seed-SEED`` (default
``RESULTS/runs/unimind-multitask/seed-SEED``) and reused by the other tasks' rows when its training config hash
matches (``done.json``); give every task's run the same ``shared_run`` when their results folders differ.

Rows are run only when named (``neurolm-train leaderboard run OUT --model unimind-tiny``); the multi-task row
needs the other tasks' shards::

    neurolm-train leaderboard run OUT_WL --task workload --model unimind-tiny-multitask \\
      --set unimind-tiny-multitask.also_tasks=mi,adhd \\
      --set unimind-tiny-multitask.also_shards=OUT_MI/shards,OUT_ADHD/shards \\
      --set unimind-tiny-multitask.shared_run=runs/unimind-mt
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from neurolm_train.leaderboard.baselines import Fit
from neurolm_train.leaderboard.config import KIND_CONFIGS, OPTIONAL_MODELS, ModelSpec, file_sha256


@dataclass(frozen=True)
class UniMindRowConfig:
    """A UniMind row. ``model``: ``tiny`` | ``small`` | ``official`` (``small``/``official`` need ``lm_path``);
    ``epochs`` (or ``steps``), ``batch_size``, ``lr`` (None = the model's default), ``eval_every`` (None = every
    epoch), ``val_limit`` (windows per task and validation, None = all), ``mixing`` (proportional | tempered |
    uniform); ``also_tasks`` / ``also_shards``: the other tasks trained together and their ``OUT/shards`` roots
    (empty = single-task); ``shared_run``: folder where a multi-task model is trained once per seed and reused
    by every task's row; ``beam``: also the released beam decoding."""

    model: str = "tiny"
    epochs: int = 3
    steps: int | None = None
    batch_size: int = 16
    lr: float | None = None
    eval_every: int | None = None
    val_limit: int | None = None
    mixing: str = "proportional"
    also_tasks: tuple[str, ...] = ()
    also_shards: tuple[str, ...] = ()
    shared_run: str | None = None
    lm_path: str | None = None
    beam: bool = False


def _run_config(ctx: Any, cfg: UniMindRowConfig, out: Path):
    from neurolm_train.models.unimind.run import run_config

    if len(cfg.also_tasks) != len(cfg.also_shards):
        raise ValueError(f"also_tasks {cfg.also_tasks} and also_shards {cfg.also_shards} must pair up")
    pairs = sorted(
        {
            (ctx.manifest.task, str(Path(ctx.out_dir).resolve() / "shards")),
            *((t, str(Path(s).resolve())) for t, s in zip(cfg.also_tasks, cfg.also_shards, strict=True)),
        }
    )
    data: dict[str, Any] = {
        "shards": os.pathsep.join(dict.fromkeys(s for _, s in pairs)),
        "tasks": [t for t, _ in pairs],
        "batch_size": cfg.batch_size,
        "mixing": cfg.mixing,
        "val_limit": cfg.val_limit,
    }
    over: dict[str, Any] = {
        "out": str(out),
        "seed": ctx.seed,
        "epochs": cfg.epochs,
        "steps": cfg.steps,
        "eval_every": cfg.eval_every,
        "data": data,
    }
    if cfg.lm_path:
        over["model_overrides"] = {"lm_path": cfg.lm_path}
    rc = run_config(cfg.model, **over)
    if cfg.lr is not None:
        rc.optim.lr, rc.optim.min_lr = cfg.lr, cfg.lr / 10
    return rc


def fit_unimind(ctx: Any, cfg: UniMindRowConfig) -> Fit:
    """Train (or reuse the shared multi-task run) and score the UniMind row for ``ctx`` (a ``runner.FitContext``).

    Returns test probabilities in ``ctx.keys("test")`` order. Raises ValueError when the evaluation misses a
    selected test window, FileNotFoundError for missing shards or LM weights.
    """
    from neurolm_train.models.unimind.run import config_hash, evaluate, train

    task = ctx.manifest.task
    if getattr(ctx.manifest, "fold", None) is not None:
        raise ValueError(
            f"unimind rows train on the fixed split of each task; {task} fold {ctx.manifest.fold} is a "
            "cross-validation fold (use the task's fixed-split protocol)"
        )
    if cfg.shared_run:
        run = Path(cfg.shared_run) / f"seed-{ctx.seed}"
    elif cfg.also_tasks:
        run = Path(ctx.run_dir).parents[2] / "unimind-multitask" / f"seed-{ctx.seed}"
    else:
        run = Path(ctx.run_dir)
    rc = _run_config(ctx, cfg, run)
    chash = config_hash(rc)
    done = run / "done.json"
    reused = done.is_file() and json.loads(done.read_text()).get("config_hash") == chash
    details: dict[str, Any] = {
        "run": str(run),
        "tasks_trained": rc.data.tasks,
        "train_config_hash": chash,
        "reused_training": reused,
    }
    if not reused:
        shutil.rmtree(run, ignore_errors=True)  # never mix a stale run's checkpoints or metrics with this one
        t0 = time.perf_counter()
        train(rc)
        details["train_wall_s"] = round(time.perf_counter() - t0, 3)
        done.write_text(json.dumps({"config_hash": chash, "train_wall_s": details["train_wall_s"]}))
    else:
        details["train_wall_s"] = json.loads(done.read_text()).get("train_wall_s")
    best = run / "best.pt"
    t0 = time.perf_counter()
    ev = Path(ctx.run_dir) / "eval"
    result = evaluate(best, rc.data.shards, [task], ev, ("test",), beam=cfg.beam)
    details["eval_wall_s"] = round(time.perf_counter() - t0, 3)
    details["checkpoint"] = {
        "path": str(best),
        "sha256": file_sha256(best),
        "step": result["step"],
        "selection": result["selection"],
    }
    details["trainer_test_scores"] = result["scores"][task]["test"]
    preds = pl.read_parquet(ev / "predictions.parquet").filter(pl.col("split") == "test")
    by_key = dict(zip(preds["key"].to_list(), preds["probs"].to_list(), strict=True))
    keys = ctx.keys("test")
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise ValueError(f"evaluation of {best} lacks {len(missing)} test window(s), e.g. {missing[0]}")
    record = (result["selection"] or {}).get("record") or {}
    val_task = (record.get("val") or {}).get(task) or {}
    val = {
        m: float(val_task[m])
        for m in ("bacc", "auroc", "auc_pr", "kappa", "f1_weighted")
        if val_task.get(m) is not None
    }
    return Fit(np.asarray([by_key[k] for k in keys], dtype=np.float64), val, details)


def register() -> None:
    """Add the ``unimind`` kind and its two optional rows to the leaderboard's tables (idempotent)."""
    from neurolm_train.leaderboard.runner import register_kind

    if "unimind" not in KIND_CONFIGS:
        register_kind("unimind", UniMindRowConfig, fit_unimind)
    OPTIONAL_MODELS.setdefault("unimind-tiny", ModelSpec("unimind-tiny", "unimind", UniMindRowConfig()))
    OPTIONAL_MODELS.setdefault(
        "unimind-tiny-multitask",
        ModelSpec("unimind-tiny-multitask", "unimind", UniMindRowConfig(also_tasks=("mi", "adhd"))),
    )


register()
