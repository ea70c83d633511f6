"""Typed run configs per stage (``vq``, ``pretrain``, ``instruct``), their defaults and their hash.

Optimisation defaults are the official ones (reference §3.4 for ``vq``, §4.3 for ``pretrain``, §5.4 for
``instruct``): AdamW with weight decay on >= 2-D parameters only, linear warm-up then cosine decay per step,
gradient clipping (none for ``vq``). ``tiny`` keeps those optimiser shapes but uses a small batch, a short
text block and a larger peak learning rate (1e-3, min_lr 1e-4) so that CPU runs of a few hundred steps move
a 2-layer model (at 3e-3 the tiny codebook collapsed to fewer than 25 used codes within 60 vq steps).

Precision (reference §3.4, §9.8): ``auto`` = bf16 autocast on CUDA, fp32 on CPU; ``bf16`` and ``fp32`` are
accepted; ``fp16`` is refused because fp16 loss scaling diverges with NaN losses from step 2 (reference §9.8,
issue #6).

``config_hash`` is the sha256 (16 hex digits) of the canonical JSON of the config without the fields that
do not change results (``out``, ``resume``, ``log_every``, ``stop_at``). It is saved with every checkpoint and result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

STAGES = ("vq", "pretrain", "instruct")
#: Instruction losses on the answer (``RunConfig.answer_loss``).
ANSWER_LOSSES = ("full", "options")
#: The six instruction tasks (reference §5.2); shard folder names.
INSTRUCT_TASKS = ("tuab", "tuev", "seed", "hmc", "workload", "tusl")


@dataclass
class OptimConfig:
    """AdamW + warm-up/cosine. ``warmup`` is a fraction of the total steps; ``grad_clip`` 0 = none."""

    lr: float = 6e-4
    min_lr: float = 6e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup: float = 0.1
    grad_clip: float = 1.0


@dataclass
class DataConfig:
    """Shards and batching. ``shards``: the ``OUT/shards`` root; ``tasks``: training task folders;
    ``val_tasks``: tasks scored on ``val`` for checkpoint selection (instruct; default = ``tasks``);
    ``mixing``: ``proportional`` | ``tempered`` | ``uniform`` (reference §9.21); ``max_tokens``: longest window
    (1024 for stages 1-2, ``eeg_max_len`` 276 for stage 3, reference §1.2); ``batches_per_epoch``: None = one
    pass over the windows in expectation; ``val_limit``: evenly spaced windows per task scored at validation (None = all)."""

    shards: str = ""
    tasks: list[str] = field(default_factory=lambda: ["pretrain"])
    val_tasks: list[str] | None = None
    mixing: str = "proportional"
    temperature: float = 2.0
    batch_size: int = 64
    num_workers: int = 0
    shuffle_buffer: int = 1000
    max_tokens: int = 1024
    batches_per_epoch: int | None = None
    eval_batch_size: int = 96
    val_limit: int | None = None


@dataclass
class TextConfig:
    """The LM-loss corpus: a nanoGPT uint16 ``.bin`` or a ``.txt`` (tokenized once next to the run).
    ``batch_size`` crops of ``block`` tokens per step (reference §3.4: 16 x 1024; §4.2: 4 x 1024; §5.4: 16 x 1024).
    None corpus = no text loss (and, in ``vq``, no domain-alignment text side)."""

    corpus: str | None = None
    batch_size: int = 16
    block: int = 1024


@dataclass
class RunConfig:
    """One training run.

    ``model``: ``tiny`` | ``B`` | ``L`` | ``XL``; ``features``: ``bidirectional`` (official, leaks, reference §4.4)
    or ``causal``; ``eeg_head``: ``full`` | ``eeg_only`` (reference §9.24), None = the model config's default;
    ``gpt2``: GPT-2 weights (HF id in the local cache or a folder), "none" = random init,
    None = the model config's default; ``init``: checkpoint to start from (VQ checkpoint for ``pretrain``,
    pretrain checkpoint or official file for ``instruct``); ``vq``: official VQ file paired with an official
    NeuroLM ``init``; ``steps``: optimizer steps (None = ``epochs`` x batches per epoch / grad_accum);
    ``stop_at``: end this invocation after that many steps (checkpoint written; ``resume`` continues, as
    after a pre-emption), without changing the schedule; ``init_optimizer``: seed AdamW with the moments and
    step counts of an official NeuroLM ``init`` file (``pretrain``/``instruct``; default off, as the official
    instruction tuning starts a fresh optimizer), hashed only when on.

    ``probe_tasks`` (``vq``): labelled tasks (folders under ``data.shards``) whose train/val/test windows probe
    the finished tokenizer (``neurolm_train.probe``: per-channel and pooled logistic regression on frozen
    features); ``probe.json`` is written beside ``ckpt.pt``. Not hashed (it does not change training).
    ``answer_loss`` (``instruct``): ``full`` = cross-entropy of every answer token over all outputs
    (official, reference §5.1); ``options`` = the first answer token's cross-entropy over the task's answer
    options only (the tokens that tell the classes apart; the others stay full), so the random-init head
    does not spend the early steps learning a 50k-way answer format while the EEG is ignored. Hashed only
    when not ``full``.
    """

    stage: str = "vq"
    model: str = "tiny"
    features: str = "bidirectional"
    eeg_head: str | None = None
    gpt2: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init: str | None = None
    vq: str | None = None
    epochs: int = 1
    steps: int | None = None
    grad_accum: int = 1
    seed: int = 1337
    precision: str = "auto"
    eval_every: int = 0
    ckpt_every: int = 0
    log_every: int = 1
    tokenizer: str | None = None
    out: str = "runs/run"
    resume: bool = False
    stop_at: int | None = None
    init_optimizer: bool = False
    probe_tasks: list[str] | None = None
    answer_loss: str = "full"

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if isinstance(self.text, dict):
            self.text = TextConfig(**self.text)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**{**self.optim, "betas": tuple(self.optim["betas"])})
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r}: expected one of {STAGES}")
        if self.precision == "fp16":
            raise ValueError(
                "fp16 is refused: fp16 loss scaling gives NaN losses from step 2 "
                "(docs/neurolm-reference.md §9.8, NeuroLM issue #6); use bf16 (GPU) or fp32"
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision {self.precision!r}: expected auto, bf16 or fp32")
        if self.answer_loss not in ANSWER_LOSSES:
            raise ValueError(f"answer_loss {self.answer_loss!r}: expected one of {ANSWER_LOSSES}")
        if self.grad_accum < 1 or self.data.batch_size < 1:
            raise ValueError("grad_accum and batch_size must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(**d)


_NOT_HASHED = ("out", "resume", "log_every", "stop_at", "probe_tasks")
#: Fields hashed only when they differ from these defaults (configs written before they existed keep their hash).
_HASHED_IF_SET = {"init_optimizer": False, "answer_loss": "full"}


def config_hash(cfg: RunConfig) -> str:
    """sha256 (16 hex) of the canonical JSON of ``cfg`` minus the fields in ``_NOT_HASHED`` (and those of
    ``_HASHED_IF_SET`` at their default)."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    for k, default in _HASHED_IF_SET.items():
        if d[k] == default:
            del d[k]
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Official optimisation per stage. lr/min_lr/warmup/clip: reference §3.4 (vq), §4.3 (pretrain), §5.4 (instruct).
_OPTIM = {
    "vq": OptimConfig(
        lr=5e-5, min_lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-4, warmup=5 / 50, grad_clip=0.0
    ),
    "pretrain": OptimConfig(
        lr=6e-4, min_lr=6e-5, betas=(0.9, 0.95), weight_decay=0.1, warmup=2 / 20, grad_clip=1.0
    ),
    "instruct": OptimConfig(
        lr=5e-4, min_lr=5e-5, betas=(0.9, 0.95), weight_decay=0.1, warmup=0.1, grad_clip=1.0
    ),
}
#: Instruction-tuning peak lr per size (reference §5.4, paper values [2nd]); min_lr = lr / 10 (reference §5.4).
_INSTRUCT_LR = {"B": 5e-4, "L": 5e-5, "XL": 2e-5}
#: Epochs per stage (reference §3.4: 50, §4.3: 20, §5.4: 5; 3 for XL).
_EPOCHS = {"vq": 50, "pretrain": 20, "instruct": 5}
#: Batch per GPU (reference §3.4: 64; §4.3: 60; §5.4: 64) and text crops per step (16, 4, 16 x 1024).
_BATCH = {"vq": (64, 16), "pretrain": (60, 4), "instruct": (64, 16)}


def _merge(obj: Any, overrides: dict[str, Any]) -> Any:
    for k, v in overrides.items():
        if not hasattr(obj, k):
            raise ValueError(f"unknown config field {k!r} for {type(obj).__name__}")
        cur = getattr(obj, k)
        if is_dataclass(cur) and isinstance(v, dict):
            _merge(cur, v)
        else:
            setattr(obj, k, v)
    return obj


def stage_config(stage: str, model: str = "tiny", **overrides: Any) -> RunConfig:
    """The default config of ``stage`` for ``model``, then ``overrides`` (nested dicts for ``data``,
    ``text``, ``optim``). Raises ValueError for an unknown stage or field."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {STAGES}")
    o = OptimConfig(**asdict(_OPTIM[stage]))
    batch, text_batch = _BATCH[stage]
    block = 1024
    epochs = _EPOCHS[stage] if not (stage == "instruct" and model == "XL") else 3
    if stage == "instruct":
        o.lr = _INSTRUCT_LR.get(model, 5e-4)
        o.min_lr = o.lr / 10
    if model == "tiny":
        o.lr, o.min_lr = 1e-3, 1e-4
        batch, text_batch, block, epochs = 16, 4, 128, 1
    tasks = list(INSTRUCT_TASKS) if stage == "instruct" else ["pretrain"]
    data = DataConfig(tasks=tasks, batch_size=batch, max_tokens=276 if stage == "instruct" else 1024)
    cfg = RunConfig(
        stage=stage,
        model=model,
        data=data,
        text=TextConfig(batch_size=text_batch, block=block),
        optim=o,
        epochs=epochs,
    )
    _merge(cfg, overrides)
    cfg.__post_init__()
    return cfg


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "data.tasks=[\"tuab\"]"]`` -> nested override dict. Values are JSON when they
    parse as JSON, else strings. Raises ValueError on an item without ``=``."""
    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
