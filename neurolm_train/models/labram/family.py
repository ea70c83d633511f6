"""The LaBraM entry of ``neurolm_train.families`` (CLI commands ``labram-vq``, ``labram-pretrain``,
``labram-finetune``, ``labram-evaluate``, ``labram-export``)."""

from __future__ import annotations

from neurolm_train.families import Family

from .evaluate import evaluate, export_official
from .run import STAGES, stage_config
from .train import train

FAMILY = Family(
    name="labram",
    stages=STAGES,
    configs=("tiny", "base"),
    stage_config=stage_config,
    train=train,
    evaluate=evaluate,
    help={
        "vq": "LaBraM stage 1: the VQ-NSP neural tokenizer (Fourier amplitude and phase of each patch).",
        "pretrain": "LaBraM stage 2: masked EEG modelling with symmetric masking (--init: a labram vq checkpoint "
        "or the official vqnsp.pth).",
        "finetune": "LaBraM stage 3: fine-tuning with layer-wise lr decay, selected on val BAcc (--init: a labram "
        "pretrain checkpoint or the official labram-base.pth).",
        "evaluate": "Score a fine-tuned LaBraM (best.pt or an official fine-tuned file): BAcc/AUROC/AUC-PR from "
        "probabilities.",
        "export": "Write a LaBraM checkpoint of this trainer in the official layout (vqnsp.pth, labram-base.pth, "
        "or a fine-tuned classifier).",
    },
    cli_prefix="labram-",
    extras={"export": export_official},
)
