"""Typed LaBraM run configs per stage (``vq``, ``pretrain``, ``finetune``), their official defaults and hash.

Defaults are the official recipe (github.com/935963004/LaBraM README commands and ``run_*.py``):

======== ======= ======== ============ ====== ======== ====== ====== ======= ====================
stage    lr      min_lr   betas        wd     warm-up  epochs batch  clip    other
======== ======= ======== ============ ====== ======== ====== ====== ======= ====================
vq       5e-5    1e-5     (0.9, 0.99)  1e-4   10/100   100    128    none
pretrain 5e-4    1e-5     (0.9, 0.98)  0.05   5/50     50     64     3.0     drop path 0
finetune 5e-4    1e-6     (0.9, 0.999) 0.05   5/50     50     64     none    layer decay 0.65, drop path 0.1,
                                                                             label smoothing 0.1
======== ======= ======== ============ ====== ======== ====== ====== ======= ====================

The official fine-tuning lr assumes an effective batch of 512 (8 GPUs x 64; flaw 15 of the reference
analysis): ``stage_config`` scales it by ``batch / 512`` for other batches (the linear scaling rule),
which ``lr_batch_scaling=False`` turns off. ``tiny`` (CPU) uses batch 16 and lr 1e-3 (vq, pretrain) /
1e-3 (finetune, layer decay 0.65 over its 4 blocks) so a few hundred steps move it.

Windows in ``vq`` and ``pretrain`` are cropped to at most ``crop_seconds`` (the 16-row time table) and
``crop_tokens`` tokens (the official "no more than 256 and as close as possible", LaBraM issue #24), at a
random whole-second offset. ``finetune`` uses whole windows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from neurolm_train.config import DataConfig, OptimConfig

from .config import LaBraMConfig, labram_config

STAGES = ("vq", "pretrain", "finetune")
OFFICIAL_BATCH = 512  # effective fine-tuning batch of the README commands: 8 GPUs x 64


@dataclass
class LaBraMRunConfig:
    """One LaBraM training run.

    ``model``: ``tiny`` | ``base``; ``model_overrides``: ``LaBraMConfig`` fields (e.g. ``{"cls_pos":
    "first_patch"}`` for the official CLS computation in pre-training, ``{"code_dim": 64}``); ``init``:
    ``pretrain``: the tokenizer (a ``vq`` checkpoint of this trainer or the official ``vqnsp.pth``);
    ``finetune``: a ``pretrain``/``finetune`` checkpoint, the official ``labram-base.pth`` or a fine-tuned
    official file, None = random init; ``layer_decay``: lr scale ``ld^(depth+1-g)`` per layer group g (1 = off);
    ``time_embed_lr``: ``rest`` (official: full lr) or ``embed`` (with the other embeddings);
    ``lr_batch_scaling``: scale the fine-tune lr by batch/512 (recorded in ``optim.lr`` already);
    ``steps``/``epochs``, ``stop_at``, ``resume``, ``eval_every``, ``ckpt_every`` as in the NeuroLM trainer.
    """

    family: str = "labram"
    stage: str = "vq"
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    layer_decay: float = 1.0
    time_embed_lr: str = "rest"
    drop_path: float = 0.0
    label_smoothing: float = 0.1
    crop_seconds: int = 16
    crop_tokens: int = 256
    init: str | None = None
    epochs: int = 1
    steps: int | None = None
    grad_accum: int = 1
    seed: int = 1337
    precision: str = "auto"
    eval_every: int = 0
    ckpt_every: int = 0
    log_every: int = 1
    out: str = "runs/labram"
    resume: bool = False
    stop_at: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**{**self.optim, "betas": tuple(self.optim["betas"])})
        if self.family != "labram":
            raise ValueError(f"family {self.family!r}: this is a LaBraM run config")
        if self.stage not in STAGES:
            raise ValueError(f"LaBraM stage {self.stage!r}: expected one of {STAGES}")
        if self.precision == "fp16":
            raise ValueError(
                "fp16 is refused: the official fp16 runs report NaN/inf losses (LaBraM issues #23, #52, "
                "#64); use bf16 (GPU) or fp32"
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision {self.precision!r}: expected auto, bf16 or fp32")
        if self.time_embed_lr not in ("rest", "embed"):
            raise ValueError(f"time_embed_lr {self.time_embed_lr!r}: expected rest (official) or embed")
        if self.grad_accum < 1 or self.data.batch_size < 1:
            raise ValueError("grad_accum and batch_size must be >= 1")
        if self.stage == "finetune" and len(self.data.tasks) != 1:
            raise ValueError(f"finetune trains one task at a time, got tasks {self.data.tasks}")
        self.model_config()  # unknown model names or fields fail now

    def model_config(self) -> LaBraMConfig:
        """``labram_config(model, **model_overrides)``."""
        try:
            return labram_config(self.model, **self.model_overrides)
        except TypeError as e:
            raise ValueError(f"model_overrides {self.model_overrides}: {e}") from None
        except KeyError as e:
            raise ValueError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LaBraMRunConfig:
        return cls(**d)


_NOT_HASHED = ("out", "resume", "log_every", "stop_at")


def config_hash(cfg: LaBraMRunConfig) -> str:
    """sha256 (16 hex) of the canonical JSON of ``cfg`` minus fields that do not change results."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_OPTIM = {
    "vq": OptimConfig(
        lr=5e-5, min_lr=1e-5, betas=(0.9, 0.99), weight_decay=1e-4, warmup=10 / 100, grad_clip=0.0
    ),
    "pretrain": OptimConfig(
        lr=5e-4, min_lr=1e-5, betas=(0.9, 0.98), weight_decay=0.05, warmup=5 / 50, grad_clip=3.0
    ),
    "finetune": OptimConfig(
        lr=5e-4, min_lr=1e-6, betas=(0.9, 0.999), weight_decay=0.05, warmup=5 / 50, grad_clip=0.0
    ),
}
_EPOCHS = {"vq": 100, "pretrain": 50, "finetune": 50}
_BATCH = {"vq": 128, "pretrain": 64, "finetune": 64}


def _merge(obj: Any, overrides: dict[str, Any]) -> Any:
    for k, v in overrides.items():
        if not hasattr(obj, k):
            raise ValueError(f"unknown config field {k!r} for {type(obj).__name__}")
        cur = getattr(obj, k)
        if is_dataclass(cur) and isinstance(v, dict):
            _merge(cur, v)
        elif isinstance(cur, dict) and isinstance(v, dict):
            setattr(obj, k, {**cur, **v})
        else:
            setattr(obj, k, v)
    return obj


def stage_config(
    stage: str, model: str = "tiny", lr_batch_scaling: bool = True, **overrides: Any
) -> LaBraMRunConfig:
    """The default config of LaBraM ``stage`` for ``model`` (``tiny`` | ``base``), then ``overrides`` (nested
    dicts for ``data``, ``optim``, ``model_overrides``). The fine-tune lr is scaled by ``batch / 512`` when
    ``lr_batch_scaling`` and ``optim.lr`` is not overridden. Raises ValueError for an unknown stage or field."""
    if stage not in STAGES:
        raise ValueError(f"LaBraM stage {stage!r}: expected one of {STAGES}")
    o = OptimConfig(**asdict(_OPTIM[stage]))
    batch, epochs = _BATCH[stage], _EPOCHS[stage]
    tasks = ["workload"] if stage == "finetune" else ["pretrain"]
    extra: dict[str, Any] = {}
    if stage == "finetune":
        extra = dict(layer_decay=0.65, drop_path=0.1)
    if model == "tiny":
        batch, epochs = 16, 1
        o.lr, o.min_lr = 1e-3, (1e-4 if stage == "vq" else 1e-5)
    cfg = LaBraMRunConfig(
        stage=stage,
        model=model,
        data=DataConfig(tasks=tasks, batch_size=batch, max_tokens=1024),
        optim=o,
        epochs=epochs,
        **extra,
    )
    lr_given = "lr" in (overrides.get("optim") or {})
    _merge(cfg, overrides)
    if stage == "finetune" and model != "tiny" and lr_batch_scaling and not lr_given:
        scale = (
            cfg.data.batch_size * cfg.grad_accum / OFFICIAL_BATCH
        )  # per rank; world is applied by the trainer
        cfg.optim.lr *= scale
        cfg.optim.min_lr *= scale
    cfg.__post_init__()
    return cfg
