"""The three LaBraM stages as modules whose ``forward(batch, progress)`` returns the step's loss dict (one
call per micro-batch, so ``DistributedDataParallel`` wraps the whole step), and ``build_stage``.

- ``VQStage``: ``LaBraMVQNSP`` on cropped windows (commitment + amplitude + phase MSE).
- ``MEMStage``: codes of the frozen tokenizer (no grad, eval mode) are the targets of ``LaBraMMEM`` with
  symmetric masking on cropped windows.
- ``FinetuneStage``: mean-pooled backbone + head; binary tasks 1 logit with BCE (official TUAB), multiclass
  K logits with label-smoothed CE (official TUEV, smoothing 0.1). Probabilities: sigmoid -> (1-p, p), softmax.

Every checkpoint file given as ``init`` is read with ``torch.load(weights_only=True)``: this trainer's
checkpoints (their RNG states are stored as tensors) and the official files alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurolm_data.channels import PAD_INDEX
from neurolm_train.prompts import TASKS

from . import official
from .config import LaBraMConfig
from .model import LaBraMMEM, LaBraMVQNSP, NeuralTransformer, param_groups, symmetric_masks
from .run import LaBraMRunConfig

log = logging.getLogger(__name__)
EEG = ("x", "chans", "times", "mask")


def task_kind(name: str) -> tuple[str, int]:
    """(kind, n_classes) of a task of ``prompts.TASKS``. Raises ValueError for an unknown or unlabeled task."""
    for t in TASKS:
        if t.name == name and t.kind in ("binary", "multiclass"):
            return t.kind, t.n_classes
    raise ValueError(f"task {name!r} is not a labelled task of neurolm_train.prompts.TASKS")


def crop(batch: dict, max_seconds: int, max_tokens: int, random: bool = True) -> dict:
    """Crop each window of a time-major token batch to ``A = min(S, max_seconds, max(1, max_tokens // C))``
    whole seconds at a random offset (global torch RNG, so resume reproduces it; ``random=False``: the first
    A seconds, for validation); times restart at 0.
    Returns a new batch with ``x`` (B, L', 200), ``chans``, ``times``, ``mask`` (B, L') and ``n_chans``."""
    x, mask, n_chans = batch["x"], batch["mask"], batch["n_chans"].to(batch["x"].device).long().clamp(min=1)
    dev = x.device
    S = mask.sum(1) // n_chans  # (B,) seconds
    A = torch.minimum(S, torch.minimum(torch.full_like(S, max_seconds), (max_tokens // n_chans).clamp(min=1)))
    start = torch.zeros_like(S)
    if random:
        start = (torch.rand(S.shape, device=dev) * (S - A + 1)).long().clamp(max=(S - A).clamp(min=0))  # (B,)
    n_new = A * n_chans
    L = int(n_new.max())
    pos = torch.arange(L, device=dev)[None, :]  # (1, L)
    valid = pos < n_new[:, None]  # (B, L)
    idx = (start * n_chans)[:, None] + pos.clamp(max=L - 1)
    idx = torch.where(valid, idx, 0).clamp(max=x.shape[1] - 1)
    out = dict(batch)
    out["x"] = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1])) * valid[..., None]
    out["chans"] = torch.where(valid, batch["chans"].gather(1, idx), PAD_INDEX)
    out["times"] = torch.where(valid, batch["times"].gather(1, idx) - start[:, None], 0)
    out["mask"] = valid
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on the CPU. Raises FileNotFoundError for a missing file."""
    p = official.resolve(path)
    return torch.load(p, map_location="cpu", weights_only=True)


def is_project(ck: Any) -> bool:
    """True for a checkpoint of this LaBraM trainer (it records its family and stage)."""
    return isinstance(ck, dict) and ck.get("family") == "labram" and "stage" in ck


class VQStage(nn.Module):
    def __init__(self, model: LaBraMVQNSP, cfg: LaBraMRunConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, batch: dict, progress: float = 0.0) -> dict:
        b = crop(batch, self.cfg.crop_seconds, self.cfg.crop_tokens)
        return self.model(*(b[k] for k in EEG))

    @torch.no_grad()
    def val_step(self, batch: dict) -> dict:
        b = crop(batch, self.cfg.crop_seconds, self.cfg.crop_tokens, random=False)
        out = self.model(*(b[k] for k in EEG))
        return {k: out[k] for k in ("loss", "commit", "rec_amp", "rec_phase")}


class MEMStage(nn.Module):
    """Stage 2; ``tokenizer`` is frozen and stays in eval mode."""

    def __init__(self, model: LaBraMMEM, tokenizer: LaBraMVQNSP, cfg: LaBraMRunConfig):
        super().__init__()
        self.model, self.tokenizer, self.cfg = model, tokenizer.requires_grad_(False).eval(), cfg

    def train(self, mode: bool = True) -> MEMStage:
        super().train(mode)
        self.tokenizer.eval()
        return self

    def forward(self, batch: dict, progress: float = 0.0) -> dict:
        b = crop(batch, self.cfg.crop_seconds, self.cfg.crop_tokens)
        eeg = [b[k] for k in EEG]
        with torch.no_grad():
            codes = self.tokenizer.get_codes(*eeg)
        return self.model(*eeg, codes)

    @torch.no_grad()
    def val_step(self, batch: dict) -> dict:
        b = crop(batch, self.cfg.crop_seconds, self.cfg.crop_tokens, random=False)
        eeg = [b[k] for k in EEG]
        gen = torch.Generator(device=b["x"].device).manual_seed(0)  # fixed masks: comparable across steps
        masks = symmetric_masks(b["mask"], gen)
        out = self.model(*eeg, self.tokenizer.get_codes(*eeg), masks)
        return {k: out[k] for k in ("loss", "acc", "acc_sym")}


class FinetuneStage(nn.Module):
    def __init__(self, model: NeuralTransformer, kind: str, n_classes: int, label_smoothing: float):
        super().__init__()
        self.model, self.kind, self.n_classes, self.label_smoothing = model, kind, n_classes, label_smoothing

    def forward(self, batch: dict, progress: float = 0.0) -> dict:
        logits = self.model(*(batch[k] for k in EEG)).float()
        y = batch["label"]
        if self.kind == "binary":
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
            acc = ((logits[:, 0] > 0).long() == y).float().mean()
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            acc = (logits.argmax(1) == y).float().mean()
        return {"loss": loss, "acc": acc.detach()}

    @torch.no_grad()
    def probs(self, batch: dict) -> Tensor:
        """Class probabilities (B, K): (1 - sigmoid, sigmoid) for binary tasks, softmax otherwise."""
        logits = self.model(*(batch[k] for k in EEG)).float()
        if self.kind == "binary":
            p = torch.sigmoid(logits[:, 0])
            return torch.stack((1 - p, p), 1)
        return torch.softmax(logits, 1)


def _tokenizer(path: str, mc: LaBraMConfig) -> LaBraMVQNSP:
    """The frozen MEM teacher from a ``vq`` checkpoint of this trainer or the official ``vqnsp.pth``."""
    ck = load_file(path)
    if is_project(ck):
        if ck["stage"] != "vq":
            raise ValueError(
                f"{path} is a LaBraM {ck['stage']!r} checkpoint: pretrain needs the vq tokenizer"
            )
        vq = LaBraMVQNSP(LaBraMConfig.from_dict(ck["model_config"]))
        vq.load_state_dict(ck["model"])
    elif isinstance(ck, dict) and "stage" in ck:
        raise ValueError(f"{path} is a NeuroLM {ck['stage']!r} checkpoint, not a LaBraM tokenizer")
    else:
        kind, vq, _ = official.load_official(path, like=mc)
        if kind != "vqnsp":
            raise ValueError(
                f"{path} is an official {kind!r} file: pretrain needs vqnsp.pth (or a vq checkpoint)"
            )
    if vq.cfg.n_codes != mc.n_codes:
        raise ValueError(
            f"{path}: tokenizer has {vq.cfg.n_codes} codes, the MEM model config {mc.n_codes} "
            "(set model_overrides.n_codes)"
        )
    if not vq.quantize.is_initialized:
        raise ValueError(f"{path}: the codebook is not initialised (initted = 0): no MEM targets")
    return vq.eval()


def _finetune_model(cfg: LaBraMRunConfig, mc: LaBraMConfig, n_out: int) -> tuple[NeuralTransformer, dict]:
    """The fine-tune backbone: random, from a ``pretrain``/``finetune`` checkpoint of this trainer, or from an
    official file. Returns the model and what was taken / left / new (logged, stored in the checkpoint)."""
    if not cfg.init:
        return NeuralTransformer(mc, n_classes=n_out, drop_path=cfg.drop_path), {"init": "random"}
    ck = load_file(cfg.init)
    if isinstance(ck, dict) and "stage" in ck and not is_project(ck):
        raise ValueError(f"{cfg.init} is a NeuroLM {ck['stage']!r} checkpoint, not a LaBraM one")
    if not is_project(ck):
        model, info = official.backbone_from_official(cfg.init, mc, n_out, cfg.drop_path)
        return model, {"init": "official", **info}
    if ck["stage"] not in ("pretrain", "finetune"):
        raise ValueError(
            f"{cfg.init} is a LaBraM {ck['stage']!r} checkpoint: finetune starts from pretrain, "
            "finetune or an official file"
        )
    src = ck["model"]
    if ck["stage"] == "pretrain":
        src = {k[len("student.") :]: v for k, v in src.items() if k.startswith("student.")}
    model = NeuralTransformer(mc, n_classes=n_out, drop_path=cfg.drop_path)
    own = model.state_dict()
    taken, unused = [], []
    for k, v in src.items():
        if k in own and own[k].shape == v.shape:
            own[k] = v
            taken.append(k)
        elif k in own:
            if not k.startswith("head."):
                raise ValueError(
                    f"{cfg.init}: {k} has shape {tuple(v.shape)}, the model {tuple(own[k].shape)} "
                    f"(model config {mc.name})"
                )
            unused.append(k)
        else:
            unused.append(k)
    missing = [k for k in own if k not in taken and not k.startswith(("head.", "fc_norm."))]
    if missing:
        raise ValueError(f"{cfg.init}: no weights for {missing}")
    model.load_state_dict(own)
    return model, {
        "init": ck["stage"],
        "path": cfg.init,
        "unused": unused,
        "new": [k for k in own if k not in taken],
    }


def build_stage(cfg: LaBraMRunConfig) -> tuple[nn.Module, nn.Module, LaBraMConfig, dict]:
    """(stage module, the model saved in checkpoints, its ``LaBraMConfig``, init info). Raises ValueError
    when ``init`` is missing, of the wrong kind, or does not fit the model config (naming the key)."""
    mc = cfg.model_config()
    if cfg.stage == "vq":
        model = LaBraMVQNSP(mc)
        return VQStage(model, cfg), model, mc, {"init": "random"}
    if cfg.stage == "pretrain":
        if not cfg.init:
            raise ValueError("LaBraM pretrain needs --init: a LaBraM vq checkpoint or the official vqnsp.pth")
        tok = _tokenizer(cfg.init, mc)
        model = LaBraMMEM(mc, drop_path=cfg.drop_path)
        return MEMStage(model, tok, cfg), model, mc, {"init": "random", "tokenizer": cfg.init}
    kind, n_classes = task_kind(cfg.data.tasks[0])
    n_out = 1 if kind == "binary" else n_classes
    model, info = _finetune_model(cfg, mc, n_out)
    log.info("finetune init: %s", info)
    return FinetuneStage(model, kind, n_classes, cfg.label_smoothing), model, mc, info


def optimizer_groups(model: nn.Module, cfg: LaBraMRunConfig) -> list[dict]:
    """AdamW groups with ``lr_scale``: fine-tuning uses layer-wise decay (``param_groups``); vq/pretrain one
    decayed and one undecayed group (no decay for 1-D tensors, biases, cls/pos/time embeddings), scale 1."""
    if isinstance(model, NeuralTransformer):
        return param_groups(model, cfg.optim.weight_decay, cfg.layer_decay, cfg.time_embed_lr)
    decay, no = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = (
            p.ndim == 1
            or name.endswith(".bias")
            or name.rsplit(".", 1)[-1] in ("cls_token", "pos_embed", "time_embed")
        )
        (no if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": cfg.optim.weight_decay, "lr_scale": 1.0},
        {"params": no, "weight_decay": 0.0, "lr_scale": 1.0},
    ]
