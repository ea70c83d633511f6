"""NeuroLM models: the stage-1 tokenizer and the stage-2/3 GPT (contract: docs/architecture.md)."""

from .config import GPTConfig, NeuroLMConfig, VQConfig, model_config
from .layers import build_attention_mask
from .neurolm import NeuroLM, build_neurolm, gpt2_text_embeddings, next_second_targets
from .tokenizer import VQTokenizer, grl_alpha

__all__ = [
    "GPTConfig",
    "NeuroLM",
    "NeuroLMConfig",
    "VQConfig",
    "VQTokenizer",
    "build_attention_mask",
    "build_neurolm",
    "gpt2_text_embeddings",
    "grl_alpha",
    "model_config",
    "next_second_targets",
]
