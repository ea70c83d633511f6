"""The language models UniMind can read EEG tokens with, behind one small interface.

``embed(ids (B, S) int64) -> (B, S, d_model)``, ``forward(emb (B, S, d_model), keep=None) -> logits (B, S', vocab)``
for the last S' = ``keep`` positions (all when None; the output layer is the costliest part of a small LM, and
the loss and the candidate scores need only the answer positions at the end), causal (right padding never
changes earlier positions); ``d_model``, ``vocab_size``, ``pretrained``.

- ``TinyGPTLM``: the project's nanoGPT (``models.neurolm.GPT``) over GPT-2 BPE, randomly initialised and
  trained fully (it tests the plumbing on CPU; it is not a language model anyone pre-trained).
- ``HFCausalLM``: any Hugging Face causal LM from a local directory or the local cache (``local_files_only``:
  never downloaded), optionally frozen with peft LoRA adapters, as UniMind freezes InternVL2-8B's LLM and
  trains LoRA r 16 / alpha 32 / dropout 0.05 on its attention and feed-forward projections.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ..config import TEXT_VOCAB, GPTConfig
from ..neurolm import GPT
from .config import UniMindConfig

log = logging.getLogger(__name__)


class LMWeightsMissing(FileNotFoundError):
    """The pre-trained language model asked for is not on this machine."""


class TinyGPTLM(nn.Module):
    """The project's GPT (``transformer.{wte, wpe, h, ln_f}``) over the 50257 GPT-2 ids, with ``lm_head`` tied to
    ``wte`` as in GPT-2 (half the parameters of NeuroLM's untied head; the AdamW update of the two 50257-row
    tables was a third of a CPU step)."""

    pretrained = False

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.gpt = GPT(cfg, TEXT_VOCAB, TEXT_VOCAB)
        self.gpt.lm_head.weight = self.gpt.transformer.wte.weight
        self.d_model, self.vocab_size = cfg.n_embd, TEXT_VOCAB

    def embed(self, ids: Tensor) -> Tensor:
        return self.gpt.transformer.wte(ids)  # (B, S, d)

    def forward(self, emb: Tensor, keep: int | None = None) -> Tensor:
        S = emb.shape[1]
        if S > self.gpt.cfg.block_size:
            raise ValueError(f"sequence of {S} tokens exceeds the LM's block_size={self.gpt.cfg.block_size}")
        pos = torch.arange(S, device=emb.device).unsqueeze(0)  # (1, S)
        h, _ = self.gpt(emb, pos, None)  # (B, S, d), causal
        return self.gpt.lm_head(h if keep is None else h[:, S - keep :])  # (B, S', V)


class HFCausalLM(nn.Module):
    """A Hugging Face causal LM (``model``), frozen with LoRA adapters when ``lora`` is given.

    ``pretrained``: whether the weights were read from a checkpoint (False for a random config).
    """

    def __init__(self, model: nn.Module, pretrained: bool, lora: dict | None = None) -> None:
        super().__init__()
        self.pretrained = pretrained
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            for p in model.parameters():
                p.requires_grad_(False)
            model = get_peft_model(model, LoraConfig(**lora))
        self.model = model
        self.d_model = int(model.get_input_embeddings().weight.shape[1])
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])

    def embed(self, ids: Tensor) -> Tensor:
        return self.model.get_input_embeddings()(ids)

    def forward(self, emb: Tensor, keep: int | None = None) -> Tensor:
        return self.model(inputs_embeds=emb, use_cache=False, logits_to_keep=keep or 0).logits  # (B, S', V)

    def base_state(self) -> dict[str, Tensor]:
        """The frozen LM weights (LoRA adapters excluded), detached copies, for checks."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if "lora_" not in k}


def build_lm(cfg: UniMindConfig) -> nn.Module:
    """The language model of ``cfg`` (see ``UniMindConfig``).

    Raises:
        LMWeightsMissing: ``lm_path`` is neither a local checkpoint nor in the local Hugging Face cache.
        ValueError: LoRA on a randomly initialised LM without ``force_random_lora``.
    """
    if cfg.lm == "tiny":
        return TinyGPTLM(cfg.gpt)
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.lm_path is not None:
        try:
            model = AutoModelForCausalLM.from_pretrained(cfg.lm_path, local_files_only=True)
        except OSError as err:
            raise LMWeightsMissing(
                f"no weights for the language model {cfg.lm_path!r} on this machine (looked for a local "
                f"directory and the Hugging Face cache; nothing is downloaded): {err}. Copy the model to a "
                "folder and pass its path, or use the tiny config"
            ) from None
        pretrained = True
    else:
        hf_cfg = AutoConfig.for_model(**cfg.lm_random)
        model = AutoModelForCausalLM.from_config(hf_cfg)
        pretrained = False
    lora = None
    if cfg.lora:
        if not pretrained and not cfg.force_random_lora:
            raise ValueError(
                "LoRA on a randomly initialised language model adapts weights that encode nothing: "
                "refused. Give lm_path with pre-trained weights, or set force_random_lora=True "
                "to test the mechanics only"
            )
        targets = cfg.lora_targets if isinstance(cfg.lora_targets, str) else list(cfg.lora_targets)
        lora = dict(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            fan_in_fan_out=model.config.model_type == "gpt2",
        )  # GPT-2's Conv1D stores (in, out)
    elif pretrained:
        log.warning("language model %s without LoRA: all of its weights are trained", cfg.lm_path)
    return HFCausalLM(model, pretrained, lora)
