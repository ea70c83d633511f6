"""UniMind (Lu, Song et al., arXiv 2506.18962, 2025) as a model family: a LaBraM encoder, task-aware query
selection with routers that learn, the spatial + temporal neuro-language connector, a projector and a language
model reading the EEG tokens at a placeholder (the project's tiny GPT, or a frozen causal LM with peft LoRA).

Model files (``config``, ``connector``, ``lm``, ``model``) know shapes and losses; ``text`` lays out the
instruction text; ``run`` is the multi-task instruction-tuning stage and ``evaluate`` the per-task scoring,
both on the shared trainer machinery (loader, checkpoints, DDP) of ``neurolm_train``.
"""

from .config import UniMindConfig, unimind_config
from .connector import NeuroLanguageConnector, Projector, QuerySelector
from .model import LaBraMEncoder, UniMind

__all__ = [
    "LaBraMEncoder",
    "NeuroLanguageConnector",
    "Projector",
    "QuerySelector",
    "UniMind",
    "UniMindConfig",
    "unimind_config",
]
