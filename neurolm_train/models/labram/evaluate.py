"""Scoring a fine-tuned LaBraM on the ``val``/``test`` windows of a task: class probabilities (sigmoid of the
one logit for binary tasks, softmax otherwise, as the official engine) -> BAcc, AUROC, AUC-PR (binary) or
BAcc, Cohen's kappa, weighted F1 (multiclass) with scikit-learn (``neurolm_train.metrics``).

The checkpoint is ``best.pt`` of a ``finetune`` run (chosen on val balanced accuracy; the official code
selects on val accuracy) or an official fine-tuned file (``run_class_finetuning.py``'s layout; its model
config named by ``config``). Outputs ``results.json`` (scores per task and split, run config and hash, model
config, windows-manifest hashes, code version, seed, selection record) and ``predictions.parquet``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import torch

from neurolm_train.data import discover
from neurolm_train.evaluate import _finite, code_version, sha256_file

from . import official
from .config import LaBraMConfig
from .model import NeuralTransformer
from .run import LaBraMRunConfig, config_hash, stage_config
from .stages import FinetuneStage, is_project, load_file, task_kind
from .train import predict, scores


def load_classifier(path: str | Path, task: str, config: str | None = None) -> tuple[FinetuneStage, dict]:
    """A ``FinetuneStage`` (eval mode) and a checkpoint-like dict (no weights) from a LaBraM ``finetune``
    checkpoint of this trainer or an official fine-tuned file (``config``: its model config, default base).
    Raises ValueError for another kind of file or a head that does not fit ``task``."""
    kind, n_classes = task_kind(task)
    n_out = 1 if kind == "binary" else n_classes
    ck = load_file(path)
    if is_project(ck):
        if ck["stage"] != "finetune":
            raise ValueError(f"{path}: a LaBraM {ck['stage']!r} checkpoint cannot be scored (need finetune)")
        if config is not None:
            raise ValueError(
                f"{path}: --config applies to official files only; this checkpoint stores its config"
            )
        model = NeuralTransformer(LaBraMConfig.from_dict(ck["model_config"]), n_classes=n_out)
        model.load_state_dict(ck["model"])
        meta = {k: v for k, v in ck.items() if k not in ("model", "optimizer", "scheduler", "rng")}
    elif isinstance(ck, dict) and "stage" in ck:
        raise ValueError(f"{path} is a NeuroLM checkpoint: score it with `neurolm-train evaluate`")
    else:
        k, model, info = official.load_official(
            path, like=None if config is None else stage_config("finetune", config).model_config()
        )
        if k != "finetune":
            raise ValueError(f"{path} is an official {k!r} file: fine-tune it first (labram-finetune --init)")
        if model.head.out_features != n_out:
            raise ValueError(f"{path}: head has {model.head.out_features} outputs, task {task} needs {n_out}")
        cfg = stage_config("finetune", config or "base", init=str(path), data={"tasks": [task]})
        meta = {
            "family": "labram",
            "stage": "official",
            "step": None,
            "config": cfg.to_dict(),
            "config_hash": config_hash(cfg),
            "model_config": info["config"].to_dict(),
            "best": None,
            "official": {"path": str(path), "sha256": sha256_file(official.resolve(path))},
        }
    return FinetuneStage(model.eval(), kind, n_classes, 0.0).eval(), meta


def evaluate(
    ckpt_path: str | Path,
    shards: str,
    tasks: list[str],
    out: str | Path,
    splits: tuple[str, ...] = ("val", "test"),
    batch_size: int | None = None,
    limit: int | None = None,
    config: str | None = None,
) -> dict:
    """Score ``ckpt_path`` on ``splits`` of ``tasks`` (one task: a LaBraM head is per task) and write
    ``results.json`` + ``predictions.parquet`` into ``out``. Returns the results dict. Raises
    FileNotFoundError for missing shards or checkpoint, ValueError as ``load_classifier``."""
    from neurolm_train.runtime import autocast, setup_distributed

    t0 = time.perf_counter()
    if len(tasks) != 1:
        raise ValueError(f"a fine-tuned LaBraM has one head: score one task at a time, got {tasks}")
    rank, world, device = setup_distributed()
    stage, ck = load_classifier(ckpt_path, tasks[0], config)
    stage.to(device)
    cfg = LaBraMRunConfig.from_dict(ck["config"])
    bs = batch_size or cfg.data.eval_batch_size
    res_scores: dict[str, dict] = {}
    frames, manifests = [], {}
    for split in splits:
        found = discover(shards, tasks, split)
        manifests |= {t.name: t.manifest_hash for t in found}
        rows = predict(
            stage, found, bs, cfg.data.max_tokens, device, lambda: autocast(cfg, device), rank, world, limit
        )
        res_scores.setdefault(tasks[0], {})[split] = scores(rows, stage.kind)
        frames.append(pl.DataFrame(rows).with_columns(pl.lit(split).alias("split")))
    result = {
        "family": "labram",
        "scores": res_scores,
        "checkpoint": str(ckpt_path),
        "stage": ck["stage"],
        "step": ck["step"],
        "selection": {
            "rule": "best val balanced accuracy during fine-tuning, ties broken by val AUROC (binary) / "
            "kappa (multiclass)"
            if ck["stage"] != "official"
            else "none: official file evaluated as given",
            "record": ck.get("best"),
        },
        "official": ck.get("official"),
        "scoring": "sigmoid (1 logit) or softmax class probabilities",
        "config": ck["config"],
        "config_hash": ck["config_hash"],
        "model_config": ck["model_config"],
        "manifest_hashes": manifests,
        "code_version": code_version(),
        "seed": cfg.seed,
        "limit": limit,
        "wall_s": time.perf_counter() - t0,
    }
    if rank == 0:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        pl.concat(frames, how="diagonal").write_parquet(out / "predictions.parquet")
        tmp = out / "results.json.tmp"
        tmp.write_text(json.dumps(_finite(result), indent=2, default=str, allow_nan=False))
        tmp.replace(out / "results.json")
    return result


def export_official(ckpt_path: str | Path, dst: str | Path) -> str:
    """Write a LaBraM checkpoint of this trainer (vq, pretrain or finetune) in the official layout (``vqnsp.pth``,
    ``labram-base.pth`` or a fine-tuned classifier). Returns the kind written."""
    from .model import LaBraMMEM, LaBraMVQNSP

    ck = load_file(ckpt_path)
    if not is_project(ck):
        raise ValueError(f"{ckpt_path} is not a LaBraM checkpoint of this trainer")
    mc = LaBraMConfig.from_dict(ck["model_config"])
    if ck["stage"] == "vq":
        model: torch.nn.Module = LaBraMVQNSP(mc)
    elif ck["stage"] == "pretrain":
        model = LaBraMMEM(mc)
    else:
        model = NeuralTransformer(mc, n_classes=ck["model"]["head.weight"].shape[0])
    model.load_state_dict(ck["model"])
    official.save_official(model, dst)
    return ck["stage"]
