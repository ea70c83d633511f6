"""One training loop for all three stages (nanoGPT-like), single process or under ``torchrun`` (DDP).

    torchrun --nproc_per_node N -m neurolm_train.train ...   (or ``neurolm-train vq|pretrain|instruct``)

Per optimizer step: ``grad_accum`` micro-batches from the shard loader (plus text crops), one forward of the
stage module each (``stages.py``) under autocast (bf16 on CUDA, none on CPU; fp16 refused, reference §9.8),
backward (``no_sync`` except on the last micro-batch), gradient clipping, AdamW step, warm-up/cosine lr.

With ``init_optimizer`` (a fresh run from an official NeuroLM file) AdamW starts from the file's moments and
step counts; lr, betas, weight decay and the schedule are the run's.

Outputs in ``cfg.out``: ``config.json``; ``ckpt.pt`` (latest: model, optimizer, scheduler, loader position,
RNG states of every rank, config and its hash; written atomically every ``ckpt_every`` steps and at the end,
``--resume`` continues from it bit-identically on CPU); ``best.pt`` (best validation score, the only
checkpoint selection rule); ``metrics.jsonl`` (one JSON object per logged step or validation);
``ranks/rank{r}.json`` (per rank: steps, loader position, batches consumed in this invocation, wall time).
Distributed: ``torch.distributed`` with gloo on CPU and nccl on CUDA, initialised from torchrun's
environment; every rank yields the same number of batches (``data.TrainStream``), so no rank waits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn.parallel import DistributedDataParallel as DDP

from neurolm_data.lock import output_lock

from . import checkpoint, official
from .config import RunConfig, config_hash
from .data import TokenLoader, discover, eval_batches, mixing_weights
from .prompts import TEXT_MAX_LEN
from .runtime import autocast, setup_distributed  # noqa: F401  (also imported from here by the families)
from .stages import build_stage, to_device
from .text import TextCrops, prepare_text

log = logging.getLogger(__name__)


class WarmupCosine:
    """lr multiplier per step: linear warm-up ``(s+1)/(w+1)`` for s < w (nanoGPT), then cosine from 1 to
    ``min_ratio`` at ``total`` steps, flat after (reference §3.4, §4.3, §5.4)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if step >= self.total:
            return self.min_ratio
        p = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.min_ratio + 0.5 * (1.0 + math.cos(math.pi * p)) * (1.0 - self.min_ratio)


def make_optimizer(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over trainable parameters: weight decay on >= 2-D tensors, none on biases/norms (reference §3.4).
    The groups are the official ones (``official.official_param_groups``, ckpt §1.4), so ``init_optimizer``
    can load an official file's state into it (``official.seed_optimizer`` checks the order)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, fused=device.type == "cuda")


def text_corpus(cfg: RunConfig, out: Path, rank: int) -> TextCrops | None:
    """The text crops of the run: a ``.bin`` as is, a ``.txt`` tokenized once to ``out/text.bin``."""
    if not cfg.text.corpus:
        return None
    src = Path(cfg.text.corpus)
    if src.suffix == ".bin":
        return TextCrops(src, cfg.text.block)
    dst = out / "text.bin"
    if rank == 0 and not dst.is_file():
        prepare_text(src, dst, cfg.tokenizer)
    if dist.is_initialized():
        dist.barrier()
    return TextCrops(dst, cfg.text.block)


class Logger:
    """Rank-0 console (rich) and ``metrics.jsonl`` writer."""

    def __init__(self, out: Path, rank: int, total: int, stage: str):
        self.rank, self.file = rank, None
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn(f"[bold]{stage}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            disable=rank != 0,
        )
        if rank == 0:
            self.file = open(out / "metrics.jsonl", "a", encoding="utf-8")
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> Logger:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if self.file:
            self.file.close()

    def write(self, record: dict, show: str | None = None) -> None:
        if self.rank != 0:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if show:
            self.progress.update(self.task, description=show)

    def print(self, msg: str) -> None:
        if self.rank == 0:
            self.console.print(msg)


def _mean_over_ranks(sums: dict[str, float], n: int, device: torch.device) -> dict[str, float]:
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return {k: float(t[i] / max(t[-1].item(), 1.0)) for i, k in enumerate(keys)}


def instruct_diagnostics(
    model: torch.nn.Module, tasks: list, rows: list[dict], cfg: RunConfig, device: torch.device
) -> dict:
    """Per val task: answer log-odds mean / spread / best-threshold BAcc (binary tasks) and the
    answer-position cross-window spread on the first ``eval_batch_size`` windows (``diagnostics``)."""
    from .diagnostics import answer_spread, logit_stats

    out = {k: dict(v) for k, v in logit_stats(rows).items()}
    with torch.no_grad(), autocast(cfg, device):
        for t in tasks:
            b = next(
                iter(
                    eval_batches(
                        [t], cfg.data.eval_batch_size, 1, 0, 0, cfg.data.max_tokens, cfg.data.eval_batch_size
                    )
                )
            )
            out.setdefault(t.name, {})["answer_spread"] = answer_spread(
                model, to_device(b, device), cfg.tokenizer
            )
    return out


def validate(stage: torch.nn.Module, cfg: RunConfig, rank: int, world: int, device: torch.device) -> dict:
    """Validation record of the stage on the ``val`` split. ``vq``/``pretrain``: mean losses over at most
    ``val_limit`` evenly spaced windows (score = -loss); ``instruct``: ``evaluate.score_split`` on
    ``val_tasks`` (score = mean balanced accuracy; ties broken by ``tiebreak`` = mean AUROC (binary) or
    kappa (multiclass)). Returns ``{"score": float, ...}``; higher is better."""
    tasks = cfg.data.val_tasks or cfg.data.tasks
    was_training = stage.training
    stage.eval()
    try:
        if cfg.stage == "instruct":
            from .evaluate import score_split

            val_tasks = discover(cfg.data.shards, tasks, "val")
            res = score_split(stage.model, val_tasks, cfg, device, rank, world)
            baccs = [m["bacc"] for m in res["scores"].values()]
            ranks = [m.get("auroc", m.get("kappa", float("nan"))) for m in res["scores"].values()]
            tie = float(np.nanmean(ranks)) if np.isfinite(ranks).any() else 0.0
            return {
                "score": float(np.mean(baccs)),
                "tiebreak": tie,
                "val": res["scores"],
                "diagnostics": instruct_diagnostics(stage.model, val_tasks, res["rows"], cfg, device),
            }
        sums: dict[str, float] = {}
        n = 0
        with torch.no_grad(), autocast(cfg, device):
            for b in eval_batches(
                discover(cfg.data.shards, tasks, "val"),
                cfg.data.eval_batch_size,
                world,
                rank,
                0,
                cfg.data.max_tokens,
                cfg.data.val_limit,
            ):
                out = stage.val_step(to_device(b, device))
                k = len(b["key"])
                for name, v in out.items():
                    sums[name] = sums.get(name, 0.0) + float(v) * k
                n += k
        means = _mean_over_ranks(sums, n, device)
        return {"score": -means["loss"], "val": means}
    finally:
        stage.train(was_training)


class RunExistsError(ValueError):
    """The run folder already holds a run and neither ``resume`` nor ``force`` was given."""


#: Files of a run folder that ``force`` removes before a fresh run (``text.bin`` is rebuilt from the corpus).
RUN_FILES = ("ckpt.pt", "best.pt", "metrics.jsonl", "config.json", "text.bin")


def prepare_run_dir(out: Path, resume: bool, force: bool, delete: bool = True) -> None:
    """Refuse to overwrite an existing run (a ``ckpt.pt``, ``best.pt`` or ``metrics.jsonl`` in ``out``) unless
    ``resume`` (continue it) or ``force`` (delete its files, then start afresh: no stale checkpoint, no
    duplicate metric lines; only when ``delete``: rank 0). Raises RunExistsError naming the folder and both
    options."""
    found = [n for n in ("ckpt.pt", "best.pt", "metrics.jsonl") if (out / n).exists()]
    if not found or resume:
        return
    if not force:
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(found)}): pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    if not delete:
        return
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "ranks", ignore_errors=True)


def train(cfg: RunConfig, force: bool = False, verify: bool = False) -> Path:
    """Run one stage to ``cfg.steps`` (or ``cfg.epochs``) optimizer steps. Returns the path of ``ckpt.pt``.

    The run folder is locked while the run writes it (rank 0 holds ``neurolm_data.lock.output_lock``). A folder
    that already holds a run is refused unless ``cfg.resume`` or ``force`` (``prepare_run_dir``). ``verify``:
    compare every shard's sha256 with ``shards.json`` before training (the cheap checks always run).

    Raises FileNotFoundError when ``cfg.resume`` is set and no checkpoint exists, ValueError on a config or
    data layout that does not match the checkpoint being resumed, RunExistsError (a ValueError) for an
    existing run, OutputLockedError when another process writes the folder, ShardError (a ValueError) for
    shards that do not match their index.
    """
    rank, world, device = setup_distributed()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if rank == 0:
            stack.enter_context(output_lock(out, f"neurolm-train {cfg.stage} --out {out}"))
        prepare_run_dir(out, cfg.resume, force, delete=rank == 0)
        if dist.is_initialized():
            dist.barrier()
        return _train(cfg, rank, world, device, verify)


def _train(cfg: RunConfig, rank: int, world: int, device: torch.device, verify: bool) -> Path:
    """The body of ``train`` once the run folder is locked and prepared."""
    t_start, seen = time.perf_counter(), 0
    out = Path(cfg.out)
    chash = config_hash(cfg)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    stage, model, mc = build_stage(cfg)
    if cfg.text.corpus and cfg.text.block > mc.gpt.block_size:
        raise ValueError(f"text.block={cfg.text.block} exceeds the GPT block_size={mc.gpt.block_size}")
    stage.to(device)
    tasks = discover(cfg.data.shards, cfg.data.tasks, "train", verify=verify)
    if cfg.eval_every or cfg.stage == "instruct":  # fail now, not after training, when val shards are missing
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
    crops = text_corpus(cfg, out, rank)
    opt = make_optimizer(model, cfg, device)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(int(cfg.optim.warmup * total), total, cfg.optim.min_lr / cfg.optim.lr)
    )
    if cfg.init_optimizer and not cfg.resume:  # make_optimizer's groups are official_param_groups (ckpt §1.4)
        seeded = official.seed_optimizer(opt, model, cfg.init)
        log.info(
            "optimizer: AdamW state of %s (%d tensors, step %g, iter_num %s)",
            seeded["path"],
            seeded["tensors"],
            seeded["step"],
            seeded["iter_num"],
        )
    step, best = 0, None
    ckpt_path = out / "ckpt.pt"
    if cfg.resume:
        ck = checkpoint.load(ckpt_path)
        if ck["config_hash"] != chash:
            raise ValueError(
                f"config hash {chash} differs from the checkpoint's {ck['config_hash']}: cannot resume"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        loader.load_state_dict(ck["loader"])
        rngs = ck["rng"]
        checkpoint.set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
        step, best = ck["step"], ck.get("best")
    if rank == 0:
        (out / "config.json").write_text(
            json.dumps(
                {"config": cfg.to_dict(), "config_hash": chash, "model_config": mc.to_dict()}, indent=2
            )
        )
    # without text, stage 2 never touches wte and stage 1 never the domain classifier: DDP must then look
    # for unused parameters
    unused = cfg.stage in ("pretrain", "vq") and crops is None
    ddp = (
        DDP(
            stage, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
        if world > 1
        else stage
    )
    stage.train()

    def save(path: Path) -> None:
        rngs = [checkpoint.rng_state()]
        if dist.is_initialized():
            rngs = [None] * world
            dist.all_gather_object(rngs, checkpoint.rng_state())
        if rank == 0:
            checkpoint.atomic_save(
                {
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
                    "best": best,
                    "world": world,
                },
                path,
            )

    def maybe_validate() -> None:
        nonlocal best
        rec = validate(stage, cfg, rank, world, device)
        logger.write({"step": step, "kind": "val", **rec})
        diag = " ".join(
            f"{t}: log-odds {d['logodds_mean']:+.3f} +- {d['logodds_std']:.3f}, spread "
            f"{d['answer_spread']:.3f}"
            for t, d in rec.get("diagnostics", {}).items()
            if "logodds_mean" in d
        )
        logger.print(f"step {step}: val score {rec['score']:.4f}" + (f" ({diag})" if diag else ""))
        if best is None or (rec["score"], rec.get("tiebreak", 0.0)) > (
            best["score"],
            best.get("tiebreak", 0.0),
        ):
            best = {"step": step, **rec}
            save(out / "best.pt")

    with Logger(out, rank, total, cfg.stage) as logger:
        logger.progress.update(logger.task, completed=step)
        logger.print(
            f"stage {cfg.stage}: model={cfg.model} world={world} device={device} steps={total} "
            f"batches/epoch={loader.batches_per_epoch} config_hash={chash}"
        )
        end = min(total, cfg.stop_at) if cfg.stop_at else total
        while step < end:
            t0 = time.perf_counter()
            parts: dict[str, float] = {}
            tok_eeg = tok_text = 0
            for micro in range(cfg.grad_accum):
                batch = to_device(loader.next(), device)
                seen += 1
                text = None
                if crops is not None:
                    tx, ty = crops.batch(cfg.text.batch_size, cfg.seed, step, rank, micro)
                    text = (tx.to(device), ty.to(device))
                    tok_text += tx.numel()
                tok_eeg += int(batch["mask"].sum())
                if cfg.stage == "instruct":  # EEG + [SEP] + prompt + answer sequence (reference §5.1)
                    tok_text += len(batch["key"]) * TEXT_MAX_LEN
                sync = micro == cfg.grad_accum - 1 or world == 1
                with contextlib.nullcontext() if sync else ddp.no_sync(), autocast(cfg, device):
                    res = ddp(batch, text, step / total)
                (res["loss"] / cfg.grad_accum).backward()
                for k, v in res.items():
                    parts[k] = parts.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
            gnorm = None
            if cfg.optim.grad_clip > 0:
                gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip))
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            if world > 1:  # token counts of all ranks (windows differ in length)
                counts = torch.tensor([tok_eeg, tok_text], dtype=torch.int64, device=device)
                dist.all_reduce(counts)
                tok_eeg, tok_text = (int(c) for c in counts)
            tokens = tok_eeg + tok_text
            rec = {
                "step": step,
                "epoch": loader.epoch,
                "lr": lr,
                "tokens": tokens,
                "tokens_eeg": tok_eeg,
                "tokens_text": tok_text,
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
        if step == total and (cfg.eval_every or cfg.stage == "instruct"):
            maybe_validate()
        save(ckpt_path)
    if cfg.stage == "vq" and cfg.probe_tasks and rank == 0 and step == total:  # the finished tokenizer
        from .probe import probe_line, write_probe

        probe = write_probe(ckpt_path, cfg.data.shards, list(cfg.probe_tasks), seed=cfg.seed)
        logger.print(probe_line(json.loads(probe.read_text())))
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
