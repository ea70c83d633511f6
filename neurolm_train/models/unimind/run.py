"""UniMind's one training stage: multi-task instruction tuning, and its per-task evaluation.

    neurolm-train unimind-train --shards OUT/shards --tasks workload,mi,adhd --out runs/um
    torchrun --nproc_per_node 2 -m neurolm_train unimind-train ...          (DDP: gloo on CPU, nccl on CUDA)
    neurolm-train unimind-evaluate --checkpoint runs/um/best.pt --shards OUT/shards --tasks workload,mi,adhd --out ev

Recipe (UniMind ``shell/train/train.sh``): every trainable part (encoder, routers, pools, static queries,
connector, projector, LoRA or the tiny LM) trained jointly with one learning rate, AdamW (weight decay 0.01),
3 % linear warm-up then cosine, 10 epochs; the loss is the causal-LM cross-entropy on the answer tokens only.
Each batch holds one task (the released sampler groups batches by dataset); the task of optimizer step s is a
seeded draw from (seed, step) with the mixing weights ``proportional`` | ``tempered`` | ``uniform``
(``data.mixing_weights``; the released code repeats small datasets a fixed number of times instead). One
epoch = the sum over tasks of their batches per epoch (one pass over every window in expectation).

The loader is the project's (``data.TokenLoader``), one per task, so the position of each task's stream is
saved in the checkpoint and a resumed run is bit-identical on CPU. Checkpoints (``checkpoint.atomic_save``):
``ckpt.pt`` (latest) and ``best.pt`` (best mean validation balanced accuracy over the tasks, ties broken by the
mean AUROC (binary) / kappa (multiclass)); the weights of a frozen pre-trained LM are not stored (they are
read again from ``lm_path``; only its LoRA adapters are). ``metrics.jsonl`` and ``ranks/rank{r}.json`` as in
``neurolm_train.train``.

Evaluation scores each task's K candidate answers by their summed token log-likelihood (softmax -> class
probabilities, so AUROC exists; ``neurolm_train.metrics``), and optionally runs the released decoding (beam
search 5, 10 new tokens, the output mapped to the closest answer by ``difflib``) with the rate at which the
generated text was not exactly an answer (``parse_failure_rate``; the released parser never fails because
it always picks the closest name).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ... import checkpoint
from ...config import DataConfig, OptimConfig, _merge
from ...data import TaskShards, TokenLoader, discover, eval_batches, mixing_weights
from ...evaluate import _finite, code_version, sha256_file, task_scores
from ...prompts import TASKS, answer_ids, gpt2_encoding, task_id
from ...runtime import autocast, setup_distributed
from ...stages import to_device
from ...train import Logger, WarmupCosine
from .config import UniMindConfig, unimind_config
from .model import UniMind
from .text import instruction_batch, prefix


@dataclass
class UniMindRunConfig:
    """One UniMind run. ``model``: ``tiny`` | ``small`` | ``official`` with ``model_overrides`` (fields of
    ``UniMindConfig``; its ``tasks`` are always ``data.tasks``); ``data`` and ``optim`` as NeuroLM's;
    ``epochs`` / ``steps`` (None = epochs x steps per epoch); ``eval_every`` N steps (None = every epoch;
    0 = at the end only); ``stop_at`` ends this invocation early, checkpointed (``resume`` continues)."""

    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(
        default_factory=lambda: DataConfig(tasks=["workload"], batch_size=16, eval_batch_size=64)
    )
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=3e-3, min_lr=3e-4, betas=(0.9, 0.999), weight_decay=0.01, warmup=0.03, grad_clip=1.0
        )
    )
    epochs: int = 10
    steps: int | None = None
    seed: int = 0
    precision: str = "auto"
    eval_every: int | None = None
    ckpt_every: int = 0
    log_every: int = 10
    tokenizer: str | None = None
    out: str = "runs/unimind"
    resume: bool = False
    stop_at: int | None = None
    stage: str = "unimind"

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**{**self.optim, "betas": tuple(self.optim["betas"])})
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision {self.precision!r}: expected auto, bf16 or fp32 (fp16 is refused)")
        if not self.data.tasks:
            raise ValueError("UniMind needs at least one task")

    def model_config(self) -> UniMindConfig:
        return unimind_config(self.model, **{**self.model_overrides, "tasks": list(self.data.tasks)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UniMindRunConfig:
        return cls(**d)


_NOT_HASHED = ("out", "resume", "log_every", "stop_at")


def config_hash(cfg: UniMindRunConfig) -> str:
    """sha256 (16 hex) of the canonical JSON of ``cfg`` minus ``out``, ``resume``, ``log_every``, ``stop_at``."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_config(model: str = "tiny", **overrides: Any) -> UniMindRunConfig:
    """The default run of ``model`` (tiny: lr 3e-3; small: 1e-4; official: 4e-5, batch 16 per GPU), then
    ``overrides`` (nested dicts for ``data``, ``optim``). Raises ValueError for an unknown field."""
    cfg = UniMindRunConfig(model=model)
    if model == "small":
        cfg.optim.lr, cfg.optim.min_lr = 1e-4, 1e-5
    elif model == "official":
        cfg.optim.lr, cfg.optim.min_lr = 4e-5, 0.0
    _merge(cfg, overrides)
    cfg.__post_init__()
    return cfg


def _task_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:4], "little")


def step_task(seed: int, step: int, weights: np.ndarray) -> int:
    """Index of the task of optimizer step ``step``: a draw with ``weights`` from a generator seeded by
    (seed, step) alone, so every rank and a resumed run draw the same task."""
    return int(np.random.default_rng([seed, step, 0x0513]).choice(len(weights), p=weights))


def window_shape(b: dict) -> tuple[int, int]:
    """(C, T) of a one-shape batch."""
    c = int(b["n_chans"][0])
    return c, int(b["mask"][0].sum()) // c


def _rows(cfg: UniMindConfig, b: dict) -> torch.Tensor:
    """Static-query rows (B,) of a batch: the position of each sample's task in ``cfg.tasks``."""
    names = [TASKS[int(t)].name for t in b["task"]]
    missing = sorted(set(names) - set(cfg.tasks))
    if missing:
        raise ValueError(f"tasks {missing} have no static query in this model (trained on {cfg.tasks})")
    return torch.tensor([cfg.tasks.index(n) for n in names], dtype=torch.long, device=b["x"].device)


def eeg_args(cfg: UniMindConfig, b: dict) -> tuple:
    return b["x"], b["chans"], b["times"], b["mask"], b["n_chans"], _rows(cfg, b)


def text_tensors(cfg: UniMindConfig, b: dict, tokenizer: str | None) -> tuple[torch.Tensor, ...]:
    """``ids``, ``eeg_pos``, ``targets`` of a one-task training batch, on the batch's device."""
    tid = int(b["task"][0])
    if bool((b["task"] != tid).any()):
        raise ValueError("a UniMind batch must hold one task")
    C, T = window_shape(b)
    arrs = instruction_batch(tid, b["label"].cpu().numpy(), cfg.n_eeg_tokens(C, T), tokenizer)
    return tuple(torch.from_numpy(a).to(b["x"].device) for a in arrs)


# ------------------------------------------------------------------------------------------------- evaluation
def closest_answer(text: str, answers: tuple[str, ...]) -> tuple[int, bool]:
    """The released parser: the answer with the highest ``difflib.SequenceMatcher`` ratio to the generated
    text (first on ties), and whether the text was exactly an answer (stripped)."""
    t = text.strip()
    ratios = [difflib.SequenceMatcher(None, t, a.strip()).ratio() for a in answers]
    return int(np.argmax(ratios)), t in {a.strip() for a in answers}


@torch.no_grad()
def predict(
    model: UniMind,
    tasks: list[TaskShards],
    cfg: UniMindRunConfig,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
    beam: bool = False,
    limit: int | None = None,
) -> list[dict]:
    """Per-window rows ``key``, ``task``, ``label``, ``probs`` (K), ``pred``; with ``beam`` also ``gen_text``,
    ``gen_pred`` (closest answer) and ``gen_exact`` (the text was an answer). All ranks' rows when distributed."""
    mc = model.cfg
    was = model.training
    model.eval()
    rows: list[dict] = []
    enc = gpt2_encoding(cfg.tokenizer)
    for b in eval_batches(tasks, cfg.data.eval_batch_size, world, rank, 0, cfg.data.max_tokens, limit):
        b = to_device(b, device)
        tid = int(b["task"][0])
        C, T = window_shape(b)
        p, pos = prefix(tid, mc.n_eeg_tokens(C, T), cfg.tokenizer)
        n = len(b["key"])
        P = torch.tensor(p, device=device).expand(n, -1)
        pos_t = torch.tensor(pos, device=device).expand(n, -1)
        with autocast(cfg, device):
            lp = model.answer_logprobs(
                *eeg_args(mc, b), P, pos_t, [list(a) for a in answer_ids(tid, cfg.tokenizer)]
            )
            gen = model.beam_search(*eeg_args(mc, b), P, pos_t) if beam else None
        probs = torch.softmax(lp.float(), dim=1).cpu().numpy()
        for i in range(n):
            row = {
                "key": b["key"][i],
                "task": TASKS[tid].name,
                "label": int(b["label"][i]),
                "probs": probs[i].tolist(),
                "pred": int(probs[i].argmax()),
            }
            if gen is not None:
                text = enc.decode([t for t in gen[i] if t < 50256])
                row["gen_text"] = text
                row["gen_pred"], row["gen_exact"] = closest_answer(text, TASKS[tid].answers)
            rows.append(row)
    model.train(was)
    if dist.is_initialized():
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    return rows


def scores(rows: list[dict]) -> dict[str, dict]:
    """Per-task metrics from probabilities (``evaluate.task_scores``), plus ``generation`` (the released
    decoding scored as hard labels, with ``parse_failure_rate`` = share of texts that were not an answer)."""
    from ...metrics import hard_label_metrics

    out = task_scores(rows)
    for name, m in out.items():
        rs = [r for r in rows if r["task"] == name]
        if rs and "gen_pred" in rs[0]:
            task = TASKS[task_id(name)]
            g = hard_label_metrics(
                task.kind,
                np.array([r["label"] for r in rs]),
                np.array([r["gen_pred"] for r in rs]),
                task.n_classes,
            )
            g["parse_failure_rate"] = float(np.mean([not r["gen_exact"] for r in rs]))
            m["generation"] = g
    return out


def validate(model: UniMind, cfg: UniMindRunConfig, rank: int, world: int, device: torch.device) -> dict:
    """Validation record on the ``val`` split of ``data.val_tasks`` (default: the training tasks):
    ``score`` = mean balanced accuracy over tasks, ``tiebreak`` = mean AUROC (binary) / kappa (multiclass)."""
    found = discover(cfg.data.shards, cfg.data.val_tasks or cfg.data.tasks, "val")
    res = scores(predict(model, found, cfg, device, rank, world, limit=cfg.data.val_limit))
    tie = [m.get("auroc", m.get("kappa", float("nan"))) for m in res.values()]
    tie_v = float(np.nanmean(tie)) if np.isfinite(tie).any() else 0.0
    return {"score": float(np.mean([m["bacc"] for m in res.values()])), "tiebreak": tie_v, "val": res}


# -------------------------------------------------------------------------------------------------- training
def saved_state(model: UniMind) -> dict[str, torch.Tensor]:
    """The state dict without the frozen weights of a pre-trained LM (read again from ``lm_path``)."""
    sd = model.state_dict()
    if model.cfg.lm == "hf" and model.lm.pretrained:
        frozen = {f"lm.{n}" for n, p in model.lm.named_parameters() if not p.requires_grad}
        sd = {k: v for k, v in sd.items() if k not in frozen}
    return sd


def load_state(model: UniMind, sd: dict[str, torch.Tensor]) -> None:
    """Inverse of ``saved_state``: only frozen pre-trained LM weights may be missing. Raises ValueError."""
    missing, unexpected = model.load_state_dict(sd, strict=False)
    frozen = (
        {f"lm.{n}" for n, p in model.lm.named_parameters() if not p.requires_grad}
        if model.lm.pretrained
        else set()
    )
    bad = [k for k in missing if k not in frozen]
    if bad or unexpected:
        raise ValueError(
            f"checkpoint does not fit the model: missing {bad[:5]}, unexpected {list(unexpected)[:5]}"
        )


def make_optimizer(model: UniMind, cfg: UniMindRunConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay on >= 2-D tensors only, one learning rate."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, fused=device.type == "cuda")


def train(cfg: UniMindRunConfig) -> Path:
    """Run the stage to ``cfg.steps`` (or ``cfg.epochs``) optimizer steps; returns the path of ``ckpt.pt``.

    Raises FileNotFoundError (shards, checkpoint to resume, LM weights), ValueError (config or data layout that
    does not match the checkpoint being resumed; mixed window shapes within a task's batch).
    """
    t_start, seen = time.perf_counter(), 0
    rank, world, device = setup_distributed()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    chash = config_hash(cfg)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    mc = cfg.model_config()
    model = UniMind(mc).to(device)
    tasks = discover(cfg.data.shards, cfg.data.tasks, "train")
    discover(cfg.data.shards, cfg.data.val_tasks or cfg.data.tasks, "val")  # fail now, not after training
    weights = mixing_weights([t.n_windows for t in tasks], cfg.data.mixing, cfg.data.temperature)
    loaders = [
        TokenLoader(
            [t],
            np.ones(1),
            cfg.data.batch_size,
            _task_seed(cfg.seed, t.name),
            None,
            world,
            rank,
            cfg.data.num_workers,
            cfg.data.shuffle_buffer,
            cfg.data.max_tokens,
            device.type == "cuda",
        )
        for t in tasks
    ]
    per_epoch = sum(ld.batches_per_epoch for ld in loaders)
    total = cfg.steps or max(1, cfg.epochs * per_epoch)
    eval_every = per_epoch if cfg.eval_every is None else cfg.eval_every
    opt = make_optimizer(model, cfg, device)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(int(cfg.optim.warmup * total), total, cfg.optim.min_lr / cfg.optim.lr)
    )
    step, best = 0, None
    ckpt_path = out / "ckpt.pt"
    if cfg.resume:
        ck = checkpoint.load(ckpt_path)
        if ck["config_hash"] != chash:
            raise ValueError(
                f"config hash {chash} differs from the checkpoint's {ck['config_hash']}: cannot resume"
            )
        load_state(model, ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        for ld, st in zip(loaders, ck["loader"], strict=True):
            ld.load_state_dict(st)
        rngs = ck["rng"]
        checkpoint.set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
        step, best = ck["step"], ck.get("best")
    if rank == 0:
        (out / "config.json").write_text(
            json.dumps(
                {"config": cfg.to_dict(), "config_hash": chash, "model_config": mc.to_dict()},
                indent=2,
                default=str,
            )
        )
    unused = mc.selection == "hard"  # the released selection gives its routers no gradient
    ddp = (
        DDP(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
        if world > 1
        else model
    )
    model.train()

    def save(path: Path) -> None:
        rngs = [checkpoint.rng_state()]
        if dist.is_initialized():
            rngs = [None] * world
            dist.all_gather_object(rngs, checkpoint.rng_state())
        if rank == 0:
            checkpoint.atomic_save(
                {
                    "stage": "unimind",
                    "step": step,
                    "model": saved_state(model),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "loader": [ld.state_dict() for ld in loaders],
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
        rec = validate(model, cfg, rank, world, device)
        logger.write({"step": step, "kind": "val", **_finite(rec)})
        logger.print(f"step {step}: val mean BAcc {rec['score']:.4f}")
        if best is None or (rec["score"], rec["tiebreak"]) > (best["score"], best["tiebreak"]):
            best = {"step": step, **_finite(rec)}
            save(out / "best.pt")

    with Logger(out, rank, total, "unimind") as logger:
        logger.progress.update(logger.task, completed=step)
        logger.print(
            f"unimind: model={cfg.model} tasks={cfg.data.tasks} weights={np.round(weights, 3).tolist()} "
            f"world={world} device={device} steps={total} steps/epoch={per_epoch} "
            f"trainable={model.num_trainable()} config_hash={chash}"
        )
        end = min(total, cfg.stop_at) if cfg.stop_at else total
        while step < end:
            t0 = time.perf_counter()
            ti = step_task(cfg.seed, step, weights)
            batch = to_device(loaders[ti].next(), device)
            seen += 1
            ids, pos, tgt = text_tensors(mc, batch, cfg.tokenizer)
            with autocast(cfg, device):
                res = ddp(*eeg_args(mc, batch), ids, pos, tgt)
            res["loss"].backward()
            gnorm = None
            if cfg.optim.grad_clip > 0:
                gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip))
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            rec = {
                "step": step,
                "task": tasks[ti].name,
                "lr": lr,
                "dt": time.perf_counter() - t0,
                **{k: float(v.detach()) for k, v in res.items()},
            }
            if gnorm is not None:
                rec["grad_norm"] = gnorm
            if step % cfg.log_every == 0 or step == total:
                logger.write(rec, show=f"{tasks[ti].name} loss {rec['loss']:.4f} lr {lr:.2e}")
            logger.progress.update(logger.task, advance=1)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < end:
                save(ckpt_path)
            if eval_every and step % eval_every == 0 and step < total:
                maybe_validate()
        if step == total:
            maybe_validate()
        save(ckpt_path)
    summary = {
        "rank": rank,
        "world": world,
        "step": step,
        "loader": [ld.state_dict() for ld in loaders],
        "batches": seen,
        "wall_s": time.perf_counter() - t_start,
    }
    (out / "ranks").mkdir(exist_ok=True)
    (out / "ranks" / f"rank{rank}.json").write_text(json.dumps(summary))
    if dist.is_initialized():
        dist.barrier()
    return ckpt_path


def load_model(path: str | Path, device: torch.device) -> tuple[UniMind, dict]:
    """A UniMind and its checkpoint dict (without weights and optimizer state) from a ``unimind`` checkpoint.
    Raises ValueError for another stage's checkpoint, FileNotFoundError as ``checkpoint.load``/``build_lm``."""
    ck = checkpoint.load(path)
    if ck.get("stage") != "unimind":
        raise ValueError(f"{path}: stage {ck.get('stage')!r} is not a UniMind checkpoint")
    model = UniMind(UniMindConfig.from_dict(ck.pop("model_config")))
    load_state(model, ck.pop("model"))
    for k in ("optimizer", "scheduler", "rng"):
        ck.pop(k, None)
    return model.to(device).eval(), ck


def evaluate(
    ckpt_path: str | Path,
    shards: str,
    tasks: list[str] | None,
    out: str | Path,
    splits: tuple[str, ...] = ("val", "test"),
    beam: bool = False,
    batch_size: int | None = None,
    limit: int | None = None,
) -> dict:
    """Score a UniMind checkpoint per task on ``splits``; write ``results.json`` and ``predictions.parquet``
    into ``out``. ``tasks`` None = the tasks the model was trained on. Returns the results dict."""
    t0 = time.perf_counter()
    rank, world, device = setup_distributed()
    model, ck = load_model(ckpt_path, device)
    cfg = UniMindRunConfig.from_dict(ck["config"])
    cfg.data.shards = shards
    if batch_size:
        cfg.data.eval_batch_size = batch_size
    tasks = tasks or list(model.cfg.tasks)
    res_scores: dict[str, dict] = {}
    frames, manifests = [], {}
    for split in splits:
        found = discover(shards, tasks, split)
        manifests |= {t.name: t.manifest_hash for t in found}
        rows = predict(model, found, cfg, device, rank, world, beam, limit)
        for name, m in scores(rows).items():
            res_scores.setdefault(name, {})[split] = m
        frames.append(pl.DataFrame(rows).with_columns(pl.lit(split).alias("split")))
    result = {
        "scores": res_scores,
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": sha256_file(ckpt_path),
        "stage": "unimind",
        "step": ck["step"],
        "tasks_trained": model.cfg.tasks,
        "selection": {
            "rule": "best mean val balanced accuracy over the trained tasks, ties broken by mean val "
            "AUROC (binary) / kappa (multiclass)",
            "record": ck.get("best"),
        },
        "scoring": "candidate answers by summed token log-likelihood -> softmax probabilities"
        + (" + beam search 5 with closest-answer matching" if beam else ""),
        "config": ck["config"],
        "config_hash": ck["config_hash"],
        "model_config": model.cfg.to_dict(),
        "manifest_hashes": manifests,
        "code_version": code_version(),
        "seed": cfg.seed,
        "limit": limit,
        "wall_s": time.perf_counter() - t0,
    }
    if rank == 0:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".predictions.parquet.tmp"
        pl.concat(frames, how="diagonal").write_parquet(tmp)
        tmp.replace(out / "predictions.parquet")
        tmp = out / "results.json.tmp"
        tmp.write_text(json.dumps(_finite(result), indent=2, default=str, allow_nan=False))
        tmp.replace(out / "results.json")
    return result


__all__ = [
    "UniMindRunConfig",
    "closest_answer",
    "config_hash",
    "evaluate",
    "load_model",
    "predict",
    "run_config",
    "scores",
    "step_task",
    "train",
    "validate",
]
