"""LaBraM (Jiang et al., ICLR 2024) as a model family: backbone, VQ-NSP tokenizer, masked EEG modelling and
fine-tuning, with the official checkpoints (``labram-base.pth``, ``vqnsp.pth``) loaded and exported.

Model files (``config``, ``model``, ``official``) know shapes, losses and checkpoint layouts only; the family's
trainer part (``run``: run configs, stage modules, the training loop; ``evaluate``) builds on the shared
trainer machinery (loader, checkpoints, DDP) of ``neurolm_train``.
"""

from .config import LaBraMConfig, labram_config
from .model import LaBraMMEM, LaBraMVQNSP, NeuralTransformer, layer_scales, param_groups, symmetric_masks

__all__ = [
    "LaBraMConfig",
    "LaBraMMEM",
    "LaBraMVQNSP",
    "NeuralTransformer",
    "labram_config",
    "layer_scales",
    "param_groups",
    "symmetric_masks",
]
