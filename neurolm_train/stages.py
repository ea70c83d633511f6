"""Per-stage models and step functions, calling the models API (docs/architecture.md, last section).

Each stage is an ``nn.Module`` whose ``forward(batch, text, progress)`` returns the step's loss dict, so a
whole step (EEG loss + text LM loss) is one forward call that ``DistributedDataParallel`` can wrap:

* ``VQStage`` (reference §3): ``VQTokenizer.forward`` with the GRL ramp ``alpha = grl_alpha(progress)`` and
  the frozen GPT-2 ``wte`` rows of a text batch as the domain classifier's text side (reference §3.3). Without a
  text corpus there is no domain classifier loss at all (EEG side included; ``VQTokenizer.forward``).
* ``PretrainStage`` (reference §4.2): ``forward_pretrain`` (next-second codes) + ``forward_text``.
* ``InstructStage`` (reference §5.1, §5.4): ``forward_instruct`` on [SEP] + prompt + answer (answer-only
  targets, ``prompts.instruction_arrays``) + ``forward_text``.

``text`` is ``(x, y)`` (B', T') int64 crops of the text corpus or None (no text loss). ``build_stage``
creates the stage for a run config, loading the previous stage's checkpoint or the official files.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from . import checkpoint, official
from .config import RunConfig
from .models import (
    NeuroLM,
    NeuroLMConfig,
    VQTokenizer,
    build_neurolm,
    gpt2_text_embeddings,
    grl_alpha,
    model_config,
)
from .prompts import answer_ids, instruction_arrays

log = logging.getLogger(__name__)

EEG_KEYS = ("x", "chans", "times", "mask", "n_chans")


def eeg_args(batch: dict) -> list[Tensor]:
    """The model's EEG arguments (x, chans, times, mask, n_chans) from a loader batch."""
    return [batch[k] for k in EEG_KEYS]


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch to ``device`` (non-blocking); other values (``key``) unchanged."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


class VQStage(nn.Module):
    """Stage 1. ``text_table`` (50257, n_embd) is the frozen GPT-2 ``wte`` (a non-persistent buffer:
    rebuilt, not saved)."""

    def __init__(self, model: VQTokenizer, text_table: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("text_table", text_table, persistent=False)

    def forward(self, batch: dict, text: tuple[Tensor, Tensor] | None, progress: float) -> dict:
        emb = None if text is None else self.text_table[text[0]]
        out = self.model(
            batch["x"],
            batch["chans"],
            batch["times"],
            batch["mask"],
            text_embeds=emb,
            alpha=grl_alpha(progress),
        )
        out.pop("codes", None)
        return out

    @torch.no_grad()
    def val_step(self, batch: dict) -> dict:
        """Validation losses on an EEG batch (eval mode: no codebook update, no text side, so no domain
        terms: ``loss`` is commitment + the two reconstructions)."""
        out = self.model(
            batch["x"], batch["chans"], batch["times"], batch["mask"], text_embeds=None, alpha=0.0
        )
        return {k: out[k] for k in ("loss", "commit", "rec_freq", "rec_raw")}


class PretrainStage(nn.Module):
    """Stage 2: EEG next-second code loss + text LM loss, equal weights (reference §4.2)."""

    def __init__(self, model: NeuroLM):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, text: tuple[Tensor, Tensor] | None, progress: float) -> dict:
        eeg = self.model.forward_pretrain(*eeg_args(batch))
        out = {"loss_eeg": eeg["loss"], "acc_eeg": eeg["acc"]}
        loss = eeg["loss"]
        if text is not None:
            t = self.model.forward_text(*text)
            out["loss_text"] = t["loss"]
            loss = loss + t["loss"]
        out["loss"] = loss
        return out

    @torch.no_grad()
    def val_step(self, batch: dict) -> dict:
        eeg = self.model.forward_pretrain(*eeg_args(batch))
        return {"loss": eeg["loss"], "acc": eeg["acc"]}


def answer_options(tids: np.ndarray, tokenizer: str | None = None) -> np.ndarray:
    """(B, K) int64: per sample, the first answer token of each class of its task (``prompts.answer_ids``),
    -1 in the slots past the task's class count; K = the most classes in the batch."""
    firsts = [[a[0] for a in answer_ids(int(t), tokenizer)] for t in tids.tolist()]
    out = np.full((len(firsts), max(map(len, firsts))), -1, dtype=np.int64)
    for i, f in enumerate(firsts):
        out[i, : len(f)] = f
    return out


class InstructStage(nn.Module):
    """Stage 3: answer-only instruction loss + text LM loss, equal weights (reference §5.4). ``answer_loss``:
    ``full`` (official) or ``options`` (the first answer token scored over the task's options only,
    ``NeuroLM.forward_instruct``)."""

    def __init__(self, model: NeuroLM, tokenizer: str | None = None, answer_loss: str = "full"):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.answer_loss = answer_loss

    def forward(self, batch: dict, text: tuple[Tensor, Tensor] | None, progress: float) -> dict:
        tids = batch["task"].cpu().numpy()
        ids, tgt = instruction_arrays(tids, batch["label"].cpu().numpy(), self.tokenizer)
        dev = batch["x"].device
        opts = (
            torch.from_numpy(answer_options(tids, self.tokenizer)).to(dev)
            if self.answer_loss == "options"
            else None
        )
        ins = self.model.forward_instruct(
            *eeg_args(batch), torch.from_numpy(ids).to(dev), torch.from_numpy(tgt).to(dev), options=opts
        )
        out = {"loss_instruct": ins["loss"], "acc_answer": ins["acc"]}
        if "answer_margin" in ins:
            out["answer_margin"] = ins["answer_margin"]
        loss = ins["loss"]
        if text is not None:
            t = self.model.forward_text(*text)
            out["loss_text"] = t["loss"]
            loss = loss + t["loss"]
        out["loss"] = loss
        return out


def neurolm_config(cfg: RunConfig) -> NeuroLMConfig:
    """The model config of a run: ``model_config(cfg.model, features=..., eeg_head=...)`` with the GPT-2
    source overridden by ``cfg.gpt2`` ("none" = random init)."""
    mc = model_config(
        cfg.model, features=cfg.features, **({"eeg_head": cfg.eeg_head} if cfg.eeg_head else {})
    )
    if cfg.gpt2 is not None:
        mc.gpt.init_from = None if cfg.gpt2.lower() == "none" else cfg.gpt2
    return mc


def _tokenizer_from(path: str, mc: NeuroLMConfig) -> VQTokenizer:
    """A trained stage-1 tokenizer from one of our ``vq`` checkpoints. Raises ValueError when the file is not
    a ``vq`` checkpoint or its tokenizer config differs from ``mc.vq``."""
    ck = checkpoint.load(path)
    if ck.get("stage") != "vq":
        raise ValueError(f"{path} is not a vq checkpoint (stage={ck.get('stage')!r})")
    vq = VQTokenizer(mc.vq)
    vq.load_state_dict(ck["model"])
    return vq


def _official_neurolm(cfg: RunConfig, mc: NeuroLMConfig) -> NeuroLM:
    """The NeuroLM of an official ``cfg.init`` (``NeuroLM-*.pt``, with ``cfg.vq`` = ``VQ.pt``). ``pretrain``
    needs the ``VQ.pt`` codebook (its targets are codes). Raises ValueError (OfficialCheckpointError) when the
    files do not fit."""
    if cfg.stage == "pretrain" and not cfg.vq:
        raise ValueError(
            f"pretrain from official files ({cfg.init}) needs both: --checkpoint VQ.pt,NeuroLM-B.pt (or --init "
            "NeuroLM-B.pt --vq VQ.pt); the VQ.pt codebook makes the targets"
        )
    model = official.load_neurolm(cfg.init, cfg.vq, mc)
    if cfg.stage == "pretrain" and not model.tokenizer.quantize.is_initialized:
        raise ValueError(f"{cfg.vq}: the codebook is not initialised (initted = 0): no pretrain targets")
    return model


def build_stage(cfg: RunConfig) -> tuple[nn.Module, nn.Module, NeuroLMConfig]:
    """The stage module (for DDP), the model inside it (saved in checkpoints) and its config.

    ``vq``: a fresh ``VQTokenizer``. ``pretrain``: ``cfg.init`` is a ``vq`` checkpoint (the NeuroLM gets
    GPT-2 weights when available locally, else random init, logged), or an official ``NeuroLM-*.pt`` with
    ``cfg.vq`` = the official ``VQ.pt`` (continues the official stage 2). ``instruct``: ``cfg.init`` is a
    ``pretrain``/``instruct`` checkpoint, or an official ``NeuroLM-*.pt`` file (with ``cfg.vq`` = the official
    ``VQ.pt``). ``cfg.init_optimizer`` (the trainer then seeds AdamW from the file) needs an official
    ``init``. Raises ValueError when a required checkpoint is missing or of the wrong stage, or when
    ``init_optimizer`` is set without an official NeuroLM ``init``.
    """
    mc = neurolm_config(cfg)
    no_seed = "init_optimizer takes the AdamW state of an official NeuroLM-*.pt --init"
    if cfg.stage == "vq":
        if cfg.init_optimizer:
            raise ValueError(f"{no_seed} (stages pretrain and instruct)")
        model = VQTokenizer(mc.vq)
        table = gpt2_text_embeddings(mc.vq.n_embd, mc.gpt.init_from if cfg.model != "tiny" else None)
        return VQStage(model, table), model, mc
    if not cfg.init:
        need = (
            "a vq checkpoint or an official NeuroLM file"
            if cfg.stage == "pretrain"
            else "a pretrain checkpoint or an official NeuroLM file"
        )
        raise ValueError(f"stage {cfg.stage!r} needs --init: {need}")
    ck = checkpoint.load(cfg.init)
    project = (
        isinstance(ck, dict) and "stage" in ck
    )  # our checkpoints carry their stage; official files do not
    if project and cfg.init_optimizer:
        raise ValueError(
            f"{no_seed}; {cfg.init} is a project {ck['stage']!r} checkpoint (continue a run with --resume)"
        )
    if cfg.stage == "pretrain":
        if project:
            model = build_neurolm(mc, tokenizer=_tokenizer_from(cfg.init, mc))
            log.info("pretrain: GPT backbone from %s", model.backbone_init)
        else:
            model = _official_neurolm(cfg, mc)
            log.info("pretrain: continues the official NeuroLM %s (codebook from %s)", cfg.init, cfg.vq)
        return PretrainStage(model), model, mc
    if project and ck["stage"] not in ("pretrain", "instruct"):
        raise ValueError(
            f"{cfg.init} is a {ck['stage']!r} checkpoint: instruct starts from a pretrain checkpoint"
        )
    if project:
        model = NeuroLM(mc)
        model.load_state_dict(ck["model"])
    else:
        model = _official_neurolm(cfg, mc)  # official NeuroLM-*.pt (+ VQ.pt)
    return InstructStage(model, cfg.tokenizer, cfg.answer_loss), model, mc
