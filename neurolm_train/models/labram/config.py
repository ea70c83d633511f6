"""Typed, JSON-serialisable LaBraM model configs: ``tiny`` (CPU, minutes) and ``base`` (the official shapes).

Sources of the constants: the LaBraM paper (Jiang et al., ICLR 2024, arXiv 2405.18765) and the official code
(github.com/935963004/LaBraM, ``modeling_finetune.py``, ``modeling_pretrain.py``, ``modeling_vqnsp.py``):

- embedding width d = 25 x ``conv_chans`` (TemporalConv maps a 200-sample patch to 25 steps of k channels and
  flattens them; there is no projection after it); Base: k = 8, d = 200, 12 blocks, 10 heads, MLP 4d;
- fine-tune / MEM backbone: QK-LayerNorm on, q/v bias off, LayerScale 0.1 (``--layer_scale_init_value``);
- VQ-NSP encoder: q/v bias on, no QK-norm, no LayerScale, same width; decoder 3 blocks; 8192 codes of 32
  (the script default; the README command uses 64), EMA decay 0.99, commitment weight 1;
- ``pos_embed`` 129 rows (slot 0 = CLS, row i+1 = ``standard_1020`` index i), ``time_embed`` 16 rows (at most
  16 s per window).

``base`` keeps every official shape so that ``labram-base.pth`` / ``vqnsp.pth`` load. ``tiny`` (k 4, d 100,
4 blocks of 4 heads, VQ encoder 2 / decoder 1 blocks, 512 x 32 codes) is ours; it uses a 140-row channel table
(CLS + all 139 names of the project's vocabulary, so the 8 bipolar names the official 129-row table cannot hold
fit) and the dead-code restart of the project's quantizer (official: unused codes keep their weights; issue #37
reports 8191 of 8192 codes unused on small data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

PATCH = 200  # samples per patch: 1 s at 200 Hz (paper §2.1; code: every engine reshapes to (B, C, A, 200))
OFFICIAL_CHAN_ROWS = 129  # official pos_embed rows: CLS + standard_1020 indices 0..127
OFFICIAL_TIME_ROWS = 16  # official time_embed rows: at most 16 patches (16 s)


@dataclass
class LaBraMConfig:
    """Shapes and options of the backbone (all three stages) and of the VQ-NSP tokenizer.

    Options that change results (each documented in the README section "LaBraM"):

    - ``patch_norm``: TemporalConv GroupNorm statistics over the ``"valid"`` tokens of a sample (ours: padding
      does not change the features) or over all tokens, padding included (``"sample"``, the official
      computation; identical when a batch has no padding, as in the official loaders).
    - ``cls_pos``: ``"slot0"`` gives CLS its own channel row 0 in every stage (fix); ``"first_patch"`` is the
      official MEM pre-training computation (CLS gets the first patch's channel embedding, so row 0 is never
      trained there; fine-tuning then uses the untrained row 0).
    """

    name: str = "custom"
    conv_chans: int = 8  # TemporalConv out_chans k; d = 25 k (code: labram_base k=8 -> 200)
    depth: int = 12
    n_head: int = 10
    mlp_ratio: float = 4.0
    qk_norm: bool = True  # QK LayerNorm eps 1e-6 per head (labram_* registry functions)
    qkv_bias: bool = False  # `--disable_qkv_bias` in the README commands
    init_values: float = 0.1  # LayerScale init (README: --layer_scale_init_value 0.1); 0 = no LayerScale
    n_chan_rows: int = OFFICIAL_CHAN_ROWS
    n_time_rows: int = OFFICIAL_TIME_ROWS
    init_scale: float = 0.001  # fine-tune head weights and bias multiplied by this (modeling_finetune)
    patch_norm: Literal["valid", "sample"] = "valid"
    cls_pos: Literal["slot0", "first_patch"] = "slot0"
    # VQ-NSP tokenizer (modeling_vqnsp.vqnsp_encoder_base_decoder_3x200x12)
    vq_depth: int = 12
    vq_decoder_depth: int = 3
    n_codes: int = 8192
    code_dim: int = 32
    ema_decay: float = 0.99
    beta: float = 1.0
    kmeans_iters: int = 10
    dead_code_steps: int = 0  # 0 = official (unused codes keep their weights)
    n_freq: int = PATCH  # decoder outputs: all 200 FFT bins (amplitude and phase each)

    def __post_init__(self) -> None:
        if self.conv_chans % 4:
            raise ValueError(f"conv_chans={self.conv_chans} must be a multiple of 4 (GroupNorm(4, k))")
        if self.embed_dim % self.n_head:
            raise ValueError(f"width {self.embed_dim} is not divisible by n_head={self.n_head}")
        if self.patch_norm not in ("valid", "sample"):
            raise ValueError(f"patch_norm must be 'valid' or 'sample', got {self.patch_norm!r}")
        if self.cls_pos not in ("slot0", "first_patch"):
            raise ValueError(f"cls_pos must be 'slot0' or 'first_patch', got {self.cls_pos!r}")

    @property
    def embed_dim(self) -> int:
        """d = 25 x conv_chans: the flattened TemporalConv output of one 200-sample patch."""
        return 25 * self.conv_chans

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LaBraMConfig:
        return cls(**d)


def labram_config(name: str, **overrides: Any) -> LaBraMConfig:
    """``tiny`` or ``base`` (see the module docstring), then ``overrides`` (fields of ``LaBraMConfig``).
    Raises KeyError for an unknown name, TypeError for an unknown field."""
    if name == "base":
        return LaBraMConfig(name="base", **overrides)
    if name == "tiny":
        kw: dict[str, Any] = dict(
            name="tiny",
            conv_chans=4,
            depth=4,
            n_head=4,
            n_chan_rows=140,
            vq_depth=2,
            vq_decoder_depth=1,
            n_codes=512,
            code_dim=32,
            dead_code_steps=20,
        )
        kw.update(overrides)
        return LaBraMConfig(**kw)
    raise KeyError(f"unknown LaBraM config {name!r}: expected tiny or base")
