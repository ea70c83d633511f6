"""The LaBraM training loop (the three stages), single process or under ``torchrun`` (gloo on CPU, nccl on GPU).

    torchrun --nproc_per_node N -m neurolm_train labram-finetune ...   (or ``neurolm-train labram-vq ...``)

It reuses the NeuroLM trainer's machinery: the streaming loader (``neurolm_train.data``: one seeded, shuffled
stream over all training tasks; rank-balanced; exact mid-epoch resume), ``WarmupCosine``, autocast,
``setup_distributed``, the rich/JSON-lines ``Logger`` and the atomic checkpoint writer. What differs from
the NeuroLM loop: AdamW groups carry an ``lr_scale`` (layer-wise decay) and the schedule multiplies it in;
validation of ``finetune`` scores class probabilities (BAcc, ties broken by AUROC / kappa); checkpoints are
readable with ``torch.load(weights_only=True)`` (RNG states stored as tensors and plain numbers).

Outputs in ``cfg.out``: ``config.json``, ``ckpt.pt`` (latest; model, optimizer, scheduler, loader position,
RNG states of every rank, run config + hash, model config, init info, ``family``/``stage``), ``best.pt``
(best validation score; vq/pretrain: lowest val loss), ``metrics.jsonl``, ``ranks/rank{r}.json``.
Resume (``cfg.resume``) restores the step, loader position and RNG states, so the schedule continues where it
stopped (the official ``auto_resume`` restarts at epoch 1) and a resumed CPU run is bit-identical.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from neurolm_train import checkpoint
from neurolm_train.data import TokenLoader, discover, eval_batches, mixing_weights
from neurolm_train.metrics import metrics
from neurolm_train.runtime import autocast, setup_distributed
from neurolm_train.train import Logger, WarmupCosine

from .run import LaBraMRunConfig, config_hash
from .stages import FinetuneStage, build_stage, optimizer_groups


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def rng_state() -> dict:
    """python, numpy and torch RNG states in a form ``torch.load(weights_only=True)`` reads back."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(s: dict) -> None:
    """Inverse of :func:`rng_state`."""
    v, st, g = s["python"]
    random.setstate((v, tuple(st), g))
    n = s["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _mean_over_ranks(sums: dict[str, float], n: int, device: torch.device) -> dict[str, float]:
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return {k: float(t[i] / max(t[-1].item(), 1.0)) for i, k in enumerate(keys)}


@torch.no_grad()
def predict(
    stage: FinetuneStage,
    tasks: list,
    batch_size: int,
    max_tokens: int,
    device: torch.device,
    autocast_ctx,
    rank: int = 0,
    world: int = 1,
    limit: int | None = None,
) -> list[dict]:
    """Rows ``key``, ``task``, ``label``, ``probs`` (K floats), ``pred`` over ``tasks``' windows (every rank's
    rows when distributed)."""
    was = stage.training
    stage.eval()
    rows: list[dict] = []
    for b in eval_batches(tasks, batch_size, world, rank, 0, max_tokens, limit):
        keys, labels = b["key"], b["label"].tolist()
        tname = next(t.name for t in tasks if t.tid == int(b["task"][0]))
        with autocast_ctx():
            p = stage.probs(to_device(b, device)).float().cpu().numpy()
        rows += [
            {"key": k, "task": tname, "label": int(y), "probs": p[i].tolist(), "pred": int(p[i].argmax())}
            for i, (k, y) in enumerate(zip(keys, labels, strict=True))
        ]
    if dist.is_initialized():
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    stage.train(was)
    return rows


def scores(rows: list[dict], kind: str) -> dict:
    """Metrics of prediction rows from their probabilities (``neurolm_train.metrics``), plus ``n``."""
    y = np.array([r["label"] for r in rows])
    probs = np.array([r["probs"] for r in rows])
    return {"n": len(rows), **metrics(kind, y, probs)}


def validate(
    stage: torch.nn.Module, cfg: LaBraMRunConfig, rank: int, world: int, device: torch.device
) -> dict:
    """``finetune``: score = val balanced accuracy, tiebreak = AUROC (binary) or kappa; vq/pretrain:
    score = -mean val loss over at most ``data.val_limit`` windows."""
    tasks = discover(cfg.data.shards, cfg.data.val_tasks or cfg.data.tasks, "val")
    if isinstance(stage, FinetuneStage):
        rows = predict(
            stage,
            tasks,
            cfg.data.eval_batch_size,
            cfg.data.max_tokens,
            device,
            lambda: autocast(cfg, device),
            rank,
            world,
            cfg.data.val_limit,
        )
        m = scores(rows, stage.kind)
        tie = m.get("auroc", m.get("kappa", 0.0))
        return {"score": m["bacc"], "tiebreak": 0.0 if tie != tie else float(tie), "val": {tasks[0].name: m}}
    was = stage.training
    stage.eval()
    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad(), autocast(cfg, device):
        for b in eval_batches(
            tasks, cfg.data.eval_batch_size, world, rank, 0, cfg.data.max_tokens, cfg.data.val_limit
        ):
            out = stage.val_step(to_device(b, device))
            k = len(b["key"])
            for name, v in out.items():
                sums[name] = sums.get(name, 0.0) + float(v) * k
            n += k
    stage.train(was)
    means = _mean_over_ranks(sums, n, device)
    return {"score": -means["loss"], "val": means}


def train(cfg: LaBraMRunConfig) -> Path:
    """Run one LaBraM stage to ``cfg.steps`` (or ``cfg.epochs``) optimizer steps; returns ``OUT/ckpt.pt``.

    Raises FileNotFoundError (no shards, no checkpoint to resume), ValueError (config, init or data that do
    not fit; a resumed config whose hash differs)."""
    t_start, seen = time.perf_counter(), 0
    rank, world, device = setup_distributed()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    chash = config_hash(cfg)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    stage, model, mc, init_info = build_stage(cfg)
    stage.to(device)
    tasks = discover(cfg.data.shards, cfg.data.tasks, "train")
    if cfg.eval_every or cfg.stage == "finetune":
        discover(cfg.data.shards, cfg.data.val_tasks or cfg.data.tasks, "val")
    weights = mixing_weights([t.n_windows for t in tasks], cfg.data.mixing, cfg.data.temperature)
    loader = TokenLoader(
        tasks,
        weights,
        cfg.data.batch_size,
        cfg.seed,
        cfg.data.batches_per_epoch,
        world,
        rank,
        cfg.data.num_workers,
        cfg.data.shuffle_buffer,
        cfg.data.max_tokens,
        device.type == "cuda",
    )
    total = cfg.steps or max(1, cfg.epochs * loader.batches_per_epoch // cfg.grad_accum)
    groups = optimizer_groups(model, cfg)
    for g in groups:
        g["lr"] = cfg.optim.lr * g["lr_scale"]
    opt = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups],
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        eps=1e-8,
        fused=device.type == "cuda",
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(int(cfg.optim.warmup * total), total, cfg.optim.min_lr / cfg.optim.lr)
    )
    step, best = 0, None
    ckpt_path = out / "ckpt.pt"
    if cfg.resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint {ckpt_path} not found: nothing to resume")
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck["config_hash"] != chash:
            raise ValueError(
                f"config hash {chash} differs from the checkpoint's {ck['config_hash']}: cannot resume"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        loader.load_state_dict(ck["loader"])
        rngs = ck["rng"]
        set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
        step, best = ck["step"], ck.get("best")
    if rank == 0:
        (out / "config.json").write_text(
            json.dumps(
                {
                    "config": cfg.to_dict(),
                    "config_hash": chash,
                    "model_config": mc.to_dict(),
                    "init": init_info,
                },
                indent=2,
                default=str,
            )
        )
    ddp = DDP(stage, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else stage
    stage.train()

    def save(path: Path) -> None:
        rngs = [rng_state()]
        if dist.is_initialized():
            rngs = [None] * world
            dist.all_gather_object(rngs, rng_state())
        if rank == 0:
            checkpoint.atomic_save(
                {
                    "family": "labram",
                    "stage": cfg.stage,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "loader": loader.state_dict(),
                    "rng": rngs,
                    "config": cfg.to_dict(),
                    "config_hash": chash,
                    "model_config": mc.to_dict(),
                    "init": json.loads(json.dumps(init_info, default=str)),
                    "best": best,
                    "world": world,
                },
                path,
            )

    def maybe_validate() -> None:
        nonlocal best
        rec = validate(stage, cfg, rank, world, device)
        logger.write({"step": step, "kind": "val", **rec})
        logger.print(f"step {step}: val score {rec['score']:.4f}")
        if best is None or (rec["score"], rec.get("tiebreak", 0.0)) > (
            best["score"],
            best.get("tiebreak", 0.0),
        ):
            best = {"step": step, **rec}
            save(out / "best.pt")

    with Logger(out, rank, total, f"labram-{cfg.stage}") as logger:
        logger.progress.update(logger.task, completed=step)
        logger.print(
            f"labram {cfg.stage}: model={cfg.model} world={world} device={device} steps={total} "
            f"batches/epoch={loader.batches_per_epoch} config_hash={chash}"
        )
        end = min(total, cfg.stop_at) if cfg.stop_at else total
        while step < end:
            t0 = time.perf_counter()
            parts: dict[str, float] = {}
            tokens = 0
            for micro in range(cfg.grad_accum):
                batch = to_device(loader.next(), device)
                seen += 1
                tokens += int(batch["mask"].sum())
                sync = micro == cfg.grad_accum - 1 or world == 1
                with contextlib.nullcontext() if sync else ddp.no_sync(), autocast(cfg, device):
                    res = ddp(batch, step / total)
                (res["loss"] / cfg.grad_accum).backward()
                for k, v in res.items():
                    parts[k] = parts.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
            gnorm = None
            if cfg.optim.grad_clip > 0:
                gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip))
            lr = cfg.optim.lr * sched.lr_lambdas[0](sched.last_epoch)  # peak lr x schedule (before lr_scale)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            if world > 1:
                t = torch.tensor([tokens], dtype=torch.int64, device=device)
                dist.all_reduce(t)
                tokens = int(t)
            rec = {
                "step": step,
                "epoch": loader.epoch,
                "lr": lr,
                "tokens": tokens,
                "tok_per_s": tokens / dt,
                "dt": dt,
                **parts,
            }
            if gnorm is not None:
                rec["grad_norm"] = gnorm
            if step % cfg.log_every == 0 or step == total:
                logger.write(rec, show=f"loss {parts['loss']:.4f} lr {lr:.2e}")
            logger.progress.update(logger.task, advance=1)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < end:
                save(ckpt_path)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                maybe_validate()
        if step == total and (cfg.eval_every or cfg.stage == "finetune"):
            maybe_validate()
        save(ckpt_path)
    summary = {
        "rank": rank,
        "world": world,
        "step": step,
        "loader": loader.state_dict(),
        "batches": seen,
        "wall_s": time.perf_counter() - t_start,
    }
    (out / "ranks").mkdir(exist_ok=True)
    (out / "ranks" / f"rank{rank}.json").write_text(json.dumps(summary))
    if dist.is_initialized():
        dist.barrier()
    return ckpt_path
