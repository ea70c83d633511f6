"""The LaBraM rows: ``labram-tiny`` (the three stages trained here on the task's train windows) and
``labram-base-official`` (the published ``labram-base.pth`` fine-tuned on the task; run only when named).

``fit_labram`` runs, in ``RUN = RESULTS/runs/TASK/MODEL/seed-SEED``:

1. ``vq``       ``neurolm_train.models.labram.train.train`` on the task's **train** windows (labels unused),
   plus the unlabeled ``pretrain`` task of ``pretrain_shards`` when given (one shuffled stream over both);
2. ``pretrain`` masked EEG modelling from ``RUN/vq/ckpt.pt``, same windows;
3. ``finetune`` from ``RUN/pretrain/ckpt.pt`` (or from ``checkpoint``, the official file, skipping 1-2);
   validated every ``finetune_eval_every`` steps (0 = once per epoch) on val; ``best.pt`` is the step with the
   best val balanced accuracy (test windows never take part);
4. ``neurolm_train.models.labram.evaluate.evaluate(best.pt, ..., ("test",))``: class probabilities stored in
   the record.

Only the task's train subjects reach pre-training, so no val or test subject leaks into stages 1-2; an added
``pretrain_shards`` corpus must itself exclude them (``neurolm-data split --exclude-eval-of``). After scoring,
the optimizer-laden ``pretrain/ckpt.pt`` and ``finetune/ckpt.pt`` are deleted; ``vq/ckpt.pt``,
``finetune/best.pt`` and every ``config.json`` / ``metrics.jsonl`` stay, with their sha256 in the record.

Registration (one import line in ``leaderboard/__init__.py``): this module adds the ``labram`` kind to
``config.KIND_CONFIGS`` and ``runner.FITTERS``, ``labram-tiny`` and ``labram-base-official``
to ``config.OPTIONAL_MODELS`` (run when named: ``--model labram-tiny``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from neurolm_train.leaderboard import config as lb_config
from neurolm_train.leaderboard import runner as lb_runner
from neurolm_train.leaderboard.baselines import Fit
from neurolm_train.leaderboard.config import ModelSpec, checkpoint_sha256, file_sha256


@dataclass(frozen=True)
class LaBraMRowConfig:
    """A LaBraM row: ``model`` (``tiny`` | ``base``) trained through vq -> pretrain -> finetune, or
    ``checkpoint`` (the official ``labram-base.pth``, or a LaBraM pretrain checkpoint) fine-tuned.

    ``*_epochs`` are used unless ``*_steps`` is set (defaults 2 / 2 / 5: on Workload with seed 0, vq and
    pretrain 3 epochs each then fine-tuning peaked at val BAcc 0.64 in epoch 2 of 10; the budget fits a
    2-core CPU, about 850 steps per seed); ``batch_size`` None = the stage default (16 for tiny,
    64 for base). ``lr``/``layer_decay``/``drop_path`` None = the fine-tune defaults. ``pretrain_shards``: an
    ``OUT/shards`` root holding an unlabeled ``pretrain`` task mixed into stages 1-2. ``requires_checkpoint``:
    refuse to run without ``checkpoint`` (the published-weights row).
    """

    model: str = "tiny"
    vq_epochs: int = 2
    pretrain_epochs: int = 2
    finetune_epochs: int = 5
    vq_steps: int | None = None
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    layer_decay: float | None = None
    drop_path: float | None = None
    finetune_eval_every: int = 0
    val_limit: int | None = None
    pretrain_shards: str | None = None
    checkpoint: str | None = None
    requires_checkpoint: bool = False


def _stage(
    name: str,
    cfg: LaBraMRowConfig,
    run: Path,
    shards: str,
    tasks: list[str],
    seed: int,
    init: str | None,
    bpe: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    from neurolm_train.models.labram.run import config_hash, stage_config
    from neurolm_train.models.labram.train import train

    data: dict[str, Any] = {"shards": shards, "tasks": tasks}
    if cfg.batch_size is not None:
        data["batch_size"] = cfg.batch_size
    over: dict[str, Any] = {
        "out": str(run / name),
        "seed": seed,
        "data": data,
        "epochs": getattr(cfg, f"{name}_epochs"),
        "steps": getattr(cfg, f"{name}_steps"),
    }
    if init is not None:
        over["init"] = init
    if name == "finetune":
        data["val_limit"] = cfg.val_limit
        over["eval_every"] = cfg.finetune_eval_every or bpe
        for f in ("layer_decay", "drop_path"):
            if getattr(cfg, f) is not None:
                over[f] = getattr(cfg, f)
        if cfg.lr is not None:
            over["optim"] = {"lr": cfg.lr}
    run_cfg = stage_config(name, cfg.model, **over)
    t0 = time.perf_counter()
    path = train(run_cfg)
    return path, {
        "stage": name,
        "config_hash": config_hash(run_cfg),
        "wall_s": round(time.perf_counter() - t0, 3),
        "steps": run_cfg.steps,
        "epochs": run_cfg.epochs,
        "out": str(run / name),
    }


def fit_labram(ctx: Any, cfg: LaBraMRowConfig) -> Fit:
    """Train (or fine-tune ``cfg.checkpoint``) and score a LaBraM row for ``ctx`` (a ``runner.FitContext``).
    Returns test probabilities in ``ctx.keys("test")`` order. Raises ValueError when the evaluation misses a
    selected test window, FileNotFoundError for a missing checkpoint."""
    from neurolm_train.data import default_batches_per_epoch, discover
    from neurolm_train.models.labram.evaluate import evaluate
    from neurolm_train.models.labram.run import stage_config

    if cfg.requires_checkpoint and not cfg.checkpoint:
        raise ValueError(
            "this row fine-tunes the published weights: add --set "
            "labram-base-official.checkpoint=PATH/labram-base.pth"
        )
    task, run = ctx.manifest.task, Path(ctx.run_dir)
    shards = str(Path(ctx.out_dir) / "shards")
    details: dict[str, Any] = {"stages": []}
    pre_tasks, pre_root = [task], shards
    if cfg.pretrain_shards:
        pre_tasks, pre_root = [task, "pretrain"], shards + os.pathsep + cfg.pretrain_shards
    init = cfg.checkpoint
    if init is None:
        for name in ("vq", "pretrain"):
            path, summary = _stage(name, cfg, run, pre_root, pre_tasks, ctx.seed, init)
            init = str(path)
            details["stages"].append(summary)
    batch = cfg.batch_size or stage_config("finetune", cfg.model).data.batch_size
    bpe = default_batches_per_epoch(discover(shards, [task], "train"), batch, 1)
    _, summary = _stage("finetune", cfg, run, shards, [task], ctx.seed, init, bpe)
    details["stages"].append(summary)
    best = run / "finetune" / "best.pt"
    t0 = time.perf_counter()
    result = evaluate(best, shards, [task], run / "eval", ("test",))
    details["eval_wall_s"] = round(time.perf_counter() - t0, 3)
    details["checkpoint"] = {
        "path": str(best),
        "sha256": file_sha256(best),
        "step": result["step"],
        "selection": result["selection"],
    }
    if cfg.checkpoint:
        details["init_sha256"] = checkpoint_sha256(cfg.checkpoint)
    preds = pl.read_parquet(run / "eval" / "predictions.parquet").filter(pl.col("split") == "test")
    by_key = dict(zip(preds["key"].to_list(), preds["probs"].to_list(), strict=True))
    keys = ctx.keys("test")
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise ValueError(f"evaluation of {best} lacks {len(missing)} test window(s), e.g. {missing[0]}")
    prob = np.asarray([by_key[k] for k in keys], dtype=np.float64)
    for name in ("pretrain", "finetune"):
        stale = run / name / "ckpt.pt"
        if stale.is_file() and best.is_file():
            stale.unlink()
    kept = [
        p
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.suffix in (".pt", ".json", ".jsonl", ".parquet")
    ]
    details["files"] = {str(p.relative_to(run)): file_sha256(p) for p in kept}
    record = (result["selection"] or {}).get("record") or {}
    val_task = (record.get("val") or {}).get(task) or {}
    val = {
        m: float(val_task[m]) for m in ("bacc", "auroc", "auc_pr", "kappa", "f1_weighted") if m in val_task
    }
    return Fit(prob, val, details)


# ------------------------------------------------------------------------------------------- registration
lb_config.KIND_CONFIGS["labram"] = LaBraMRowConfig
lb_runner.FITTERS["labram"] = fit_labram
lb_config.OPTIONAL_MODELS["labram-tiny"] = ModelSpec("labram-tiny", "labram", LaBraMRowConfig())
#: Run only when named, with the published weights: ``--set labram-base-official.checkpoint=labram-base.pth``.
lb_config.OPTIONAL_MODELS["labram-base-official"] = ModelSpec(
    "labram-base-official",
    "labram",
    LaBraMRowConfig(model="base", finetune_epochs=5, requires_checkpoint=True),
)
