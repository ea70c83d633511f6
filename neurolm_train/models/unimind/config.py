"""Typed, JSON-serialisable UniMind model configs: ``tiny`` (CPU), ``small`` (LaBraM-Base + GPT-2 small with
LoRA) and ``official`` (the shapes of the released code).

Sources of the constants (UniMind, Lu, Song et al., arXiv 2506.18962, code github.com/kaleidoyao/UniMind,
``resample_method = ctqformer_v2_2router_merge`` in ``modeling_internvl_chat.py``, ``shell/train/train.sh``):

- connector width d_c 1152, 8 attention heads, two query pools of 16 queries each (init N(0, 1)), top-1
  selection per pool (k = ceil(2/2)), one static query per dataset and branch (init N(0, 0.02));
- routers Linear(d_c -> 4 d_c) -> GELU -> Linear(4 d_c -> pool size) per token, averaged over tokens;
- LaBraM encoder head Linear(200 -> d_c) initialised x0.001, drop path 0.1, encoder fully trainable;
- projector LayerNorm -> Linear(d_c -> d_llm) -> GELU -> Linear(d_llm -> d_llm), Xavier init;
- LLM frozen with LoRA r 16, alpha 32, dropout 0.05 on the attention and feed-forward projections.

``tiny`` and ``small`` are ours (d_c 64 / 256, pools of 8 / 16, 4 / 8 heads). Options that depart from the
released code, each a fix of one of its defects, are fields here with the official behaviour available:

- ``selection``: ``"st"`` (default) picks the top-k queries and passes a straight-through gradient to the
  routers (the forward value is the picked query; the backward pass sees ``query * p / sg(p)`` with p the
  router's softmax probability); ``"gumbel"`` adds Gumbel noise to the scores while training; ``"soft"``
  mixes the pool by the softmax (k = 1 only); ``"hard"`` is the official selection, whose routers never
  receive a gradient (only the ``topk`` indices are used).
- ``query_pairing``: ``"sample"`` (default) gives each sample's selected query to that sample's rows;
  ``"official"`` tiles them as the released code does (``repeat(T, 1, 1)``), so with more than one sample per
  batch row i gets the query of sample ``i mod B`` while its features belong to sample ``i div T``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..config import TEXT_VOCAB, GPTConfig
from ..labram.config import LaBraMConfig, labram_config


@dataclass
class UniMindConfig:
    """Every shape and option of a UniMind model (encoder, selector, connector, projector, language model).

    Language model (``lm``): ``"tiny"`` is the project's nanoGPT (``gpt``; trained fully, random init);
    ``"hf"`` is a Hugging Face causal LM read from ``lm_path`` (a local directory or a model id in the local
    cache; never downloaded) or, for tests, built randomly from ``lm_random`` (keyword arguments of
    ``transformers.AutoConfig.for_model``). With ``lora`` the LM is frozen and peft LoRA adapters
    (``lora_r``, ``lora_alpha``, ``lora_dropout`` on ``lora_targets``) are trained; LoRA on a randomly
    initialised LM is refused unless ``force_random_lora`` (it can only test the mechanics).
    """

    name: str = "custom"
    encoder: LaBraMConfig = field(default_factory=lambda: labram_config("tiny"))
    encoder_init: str | None = None  # labram-base.pth (official MEM checkpoint) or None (random init)
    freeze_encoder: bool = False  # official: the encoder is trained (freeze_backbone False)
    encoder_drop_path: float = 0.0  # official 0.1
    head_init_scale: float = (
        1.0  # official 0.001 (the LaBraM head init_scale applied to the 200 -> 1152 head)
    )
    d_c: int = 64
    pool_size: int = 8
    top_k: int = 1
    n_heads: int = 4
    selection: Literal["st", "gumbel", "soft", "hard"] = "st"
    gumbel_tau: float = 1.0
    query_pairing: Literal["sample", "official"] = "sample"
    tasks: list[str] = field(default_factory=list)  # one static query per task (per dataset officially)
    lm: Literal["tiny", "hf"] = "tiny"
    gpt: GPTConfig = field(default_factory=lambda: GPTConfig(n_layer=2, n_head=4, n_embd=128, init_from=None))
    lm_path: str | None = None
    lm_random: dict[str, Any] | None = None
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str | list[str] = "all-linear"  # every linear of attention and MLP, not the LM head
    force_random_lora: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = LaBraMConfig.from_dict(self.encoder)
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig(**self.gpt)
        self.tasks = list(self.tasks)
        if self.selection not in ("st", "gumbel", "soft", "hard"):
            raise ValueError(f"selection must be st, gumbel, soft or hard, got {self.selection!r}")
        if self.query_pairing not in ("sample", "official"):
            raise ValueError(f"query_pairing must be 'sample' or 'official', got {self.query_pairing!r}")
        if not 1 <= self.top_k <= self.pool_size:
            raise ValueError(f"top_k={self.top_k} must be in 1..pool_size={self.pool_size}")
        if self.selection == "soft" and self.top_k != 1:
            raise ValueError("selection='soft' mixes the whole pool into one query: top_k must be 1")
        if self.d_c % self.n_heads:
            raise ValueError(f"d_c={self.d_c} is not divisible by n_heads={self.n_heads}")
        if self.lm not in ("tiny", "hf"):
            raise ValueError(f"lm must be 'tiny' or 'hf', got {self.lm!r}")
        if self.lm == "tiny" and self.lora:
            raise ValueError("the tiny GPT is randomly initialised and trained fully: LoRA needs lm='hf'")
        if self.lm == "tiny" and self.gpt.vocab_size != TEXT_VOCAB:
            raise ValueError(f"the tiny LM reads GPT-2 BPE text: vocab_size must be {TEXT_VOCAB}")
        if self.lm == "hf" and (self.lm_path is None) == (self.lm_random is None):
            raise ValueError(
                "lm='hf' needs exactly one of lm_path (pre-trained weights) or lm_random (a random config)"
            )

    @property
    def queries_per_branch(self) -> int:
        """Static query + ``top_k`` selected queries (2 in the released configuration)."""
        return 1 + self.top_k

    def n_eeg_tokens(self, n_chans: int, n_seconds: int) -> int:
        """LLM EEG tokens of a window of C channels and T seconds: 1 + Q T + Q C (Q = 2: 1 + 2T + 2C)."""
        q = self.queries_per_branch
        return 1 + q * n_seconds + q * n_chans

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UniMindConfig:
        return cls(**d)


def unimind_config(name: str, **overrides: Any) -> UniMindConfig:
    """``tiny`` | ``small`` | ``official`` (module docstring), then ``overrides`` (fields of UniMindConfig).

    ``small`` and ``official`` need local weights: ``small`` reads GPT-2 small from ``lm_path`` (default the
    id ``gpt2`` in the local Hugging Face cache) and ``official`` needs ``lm_path`` set to InternVL2-8B's LLM
    (or any causal LM); set ``encoder_init`` to ``labram-base.pth`` for the pre-trained encoder.
    Raises KeyError for an unknown name, TypeError for an unknown field.
    """
    if name == "tiny":
        return UniMindConfig(name="tiny", **overrides)
    if name == "small":
        kw: dict[str, Any] = dict(
            name="small",
            encoder=labram_config("base"),
            encoder_drop_path=0.1,
            head_init_scale=0.001,
            d_c=256,
            pool_size=16,
            n_heads=8,
            lm="hf",
            lm_path="gpt2",
            lora=True,
        )
        kw.update(overrides)
        return UniMindConfig(**kw)
    if name == "official":
        kw = dict(
            name="official",
            encoder=labram_config("base", n_time_rows=32),
            encoder_drop_path=0.1,
            head_init_scale=0.001,
            d_c=1152,
            pool_size=16,
            top_k=math.ceil(2 / 2),
            n_heads=8,
            lm="hf",
            lora=True,
        )
        kw.update(overrides)
        if kw.get("lm_path") is None and kw.get("lm_random") is None:
            raise ValueError(
                "the official config needs lm_path: a local copy of InternVL2-8B's language model "
                "(or any causal LM)"
            )
        return UniMindConfig(**kw)
    raise KeyError(f"unknown UniMind config {name!r}: expected tiny, small or official")
