"""Typed, JSON-serialisable model configs for the NeuroLM tokenizer (stage 1) and GPT (stages 2-3).

Every default is the official value; the source of each is given as a section of docs/neurolm-reference.md
(``docs/neurolm-reference.md``, "reference §x") or a checkpoint-document section
(``docs/neurolm-reference.md``, "Official checkpoint files", cited as "ckpt §x"). ``asdict(cfg)`` gives plain JSON; ``NeuroLMConfig.from_dict``
reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

PATCH = 200  # samples per token: 1 s at 200 Hz (reference §1.1, §1.2)
PAD_CHANNEL = 136  # `standard_1020` index of 'pad' (reference §1.3)
TEXT_VOCAB = 50257  # GPT-2 BPE vocabulary; 50256 = <|endoftext|> (reference §4.1)
SEP_TOKEN = 50257  # first added row of the enlarged wte, used as [SEP] (reference §4.1, §5.1)
EOT_TOKEN = 50256  # <|endoftext|>, also the text padding id (reference §5.1)


@dataclass
class VQConfig:
    """Stage-1 tokenizer shape (reference §3.2; ckpt §1.1 ``encoder_args``/``decoder_args``)."""

    n_embd: int = 768  # encoder/decoder width (reference §3.2)
    n_layer: int = 12  # encoder blocks (reference §3.2)
    n_head: int = 12  # heads (reference §3.2; not recoverable from shapes, ckpt §1.3)
    decoder_layers: int = 4  # blocks of each of the two decoders (reference §3.2)
    code_dim: int = 128  # quantizer vector size (reference §3.2)
    n_codes: int = 8192  # codebook size (reference §3.2)
    ema_decay: float = 0.99  # codebook EMA decay (reference §3.2)
    beta: float = 1.0  # commitment weight (reference §3.2)
    kmeans_iters: int = 10  # cosine k-means iterations at init (reference §3.2)
    patch: int = PATCH  # samples per token (reference §1.2)
    conv_chans: int = 16  # TemporalConv channels, `out_chans` (reference §3.2, ckpt §1.1)
    n_freq: int = 100  # |FFT| bins reconstructed, 0..99 (reference §3.1)
    domain_hidden: int = 256  # domain classifier hidden width (reference §3.2)
    n_chan_emb: int = 256  # channel-embedding rows (reference §1.2)
    n_time_emb: int = 64  # time-embedding rows: at most 64 s per window (reference §1.2, §9.7)
    bias: bool = False  # no bias in the encoder/decoder blocks (reference §3.2, ckpt §2.1)
    dropout: float = 0.0  # (reference §3.2)
    # TemporalConv GroupNorm statistics: "sample" = official, over all N tokens incl. padding (ckpt §4.2);
    # "valid" = over the valid tokens only (padding-invariant, see tokenizer.TemporalConv)
    patch_norm: Literal["sample", "valid"] = "valid"
    # init std of the encoder/decoder channel and time embeddings; None = PyTorch's N(0, 1), as officially
    # (reference §3.2 "Both keep PyTorch's default N(0,1) init"; reference §9.9 recommends 0.02 for such rows)
    embed_std: float | None = None
    # dead-code restart: a code no token picked for this many consecutive training steps is re-seeded from
    # a random valid vector of the batch; 0 = off, as officially (reference §3.2: unused codes keep their weights)
    dead_code_steps: int = 0

    def __post_init__(self) -> None:
        if self.patch_norm not in ("sample", "valid"):
            raise ValueError(f"patch_norm must be 'sample' or 'valid', got {self.patch_norm!r}")
        if self.embed_std is not None and self.embed_std <= 0:
            raise ValueError(f"embed_std must be > 0 or None, got {self.embed_std}")
        if self.dead_code_steps < 0:
            raise ValueError(f"dead_code_steps must be >= 0, got {self.dead_code_steps}")


@dataclass
class GPTConfig:
    """GPT-2 backbone shape (reference §4.1; ckpt §1.1 ``model_args``).

    ``init_from`` names the GPT-2 weights: a Hugging Face model id looked up in the local cache only
    (``gpt2``, ``gpt2-medium``, ``gpt2-xl``), or a local directory; ``None`` means random init.
    """

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    vocab_size: int = TEXT_VOCAB  # GPT-2 text vocabulary (before the [SEP]/padding rows, reference §4.1)
    block_size: int = 1024  # wpe rows: max position (reference §4.1)
    bias: bool = True  # GPT-2 blocks have biases (ckpt §2.2)
    dropout: float = 0.0  # (reference §4.1)
    init_from: str | None = "gpt2"


@dataclass
class NeuroLMConfig:
    """The whole model: tokenizer, backbone and the NeuroLM-specific choices.

    - ``text_vocab_padded``: wte rows (ckpt §1.1: 50304); the lm_head has ``text_vocab_padded + n_eeg_codes``
      rows, EEG code k at row ``text_vocab_padded + k`` (ckpt §2.2).
    - ``features``: ``"bidirectional"`` feeds the official bidirectional tokenizer features to the GPT
      (they leak the next-second target, reference §4.4); ``"causal"`` runs the tokenizer encoder with the
      stair-step mask so token (t, c) sees no second after t (reference §4.4 option b).
    - ``eeg_head``: ``"full"`` takes the EEG-target cross-entropy over all lm_head rows (official);
      ``"eeg_only"`` over the ``n_eeg_codes`` EEG rows only (reference §9.24).
    - ``text_positions``: text after EEG starts at wpe position ``max(time) + 1`` of the ``"sample"``
      (batch-independent, default) or of the whole ``"batch"`` (official, ckpt §4.4).
    - ``new_row_std``: init std of the added wte/lm_head rows and of the channel embedding (reference §9.9;
      official: N(0, 1)).
    """

    gpt: GPTConfig = field(default_factory=GPTConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    n_eeg_codes: int = 8192  # = vq.n_codes (reference §4.1)
    text_vocab_padded: int = 50304  # (reference §4.1, ckpt §1.1)
    features: Literal["bidirectional", "causal"] = "bidirectional"
    eeg_head: Literal["full", "eeg_only"] = "full"
    text_positions: Literal["sample", "batch"] = "sample"
    new_row_std: float = 0.02
    name: str = "custom"

    def __post_init__(self) -> None:
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig(**self.gpt)
        if isinstance(self.vq, dict):
            self.vq = VQConfig(**self.vq)
        if self.n_eeg_codes != self.vq.n_codes:
            raise ValueError(f"n_eeg_codes={self.n_eeg_codes} must equal vq.n_codes={self.vq.n_codes}")
        if self.features not in ("bidirectional", "causal"):
            raise ValueError(f"features must be 'bidirectional' or 'causal', got {self.features!r}")
        if self.eeg_head not in ("full", "eeg_only"):
            raise ValueError(f"eeg_head must be 'full' or 'eeg_only', got {self.eeg_head!r}")
        if self.text_positions not in ("sample", "batch"):
            raise ValueError(f"text_positions must be 'sample' or 'batch', got {self.text_positions!r}")
        if self.text_vocab_padded <= SEP_TOKEN:
            raise ValueError("text_vocab_padded must leave room for the [SEP] row 50257")

    @property
    def output_size(self) -> int:
        """lm_head rows: text rows then EEG codes (58496 for the official models, ckpt §2.2)."""
        return self.text_vocab_padded + self.n_eeg_codes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (nested dataclasses become dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuroLMConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


# GPT-2 shapes per variant (reference §4.1): (hf name, layers, heads, width)
_GPT2 = {"B": ("gpt2", 12, 12, 768), "L": ("gpt2-medium", 24, 16, 1024), "XL": ("gpt2-xl", 48, 25, 1600)}


def model_config(name: str, **overrides: Any) -> NeuroLMConfig:
    """Named configs: ``tiny`` (CPU, minutes), ``B``, ``L``, ``XL`` (reference §4.1; VQ per reference §3.2).

    ``tiny`` keeps the token layout (200-sample patches, 256/64 embedding rows, 16 conv channels) but is
    narrow: tokenizer 64 wide, 2 blocks, 512 codes of 32 dims; GPT 128 wide, 2 blocks, random init (its
    width differs from the tokenizer's, so it exercises the L/XL ``encode_transform_layer`` path), and its
    EEG loss uses the 512 EEG rows only (``eeg_head="eeg_only"``: a 58k-way softmax over every EEG token is
    ~10x the rest of a CPU step). Two tokenizer deviations from the official code make the short CPU runs
    usable (``B``/``L``/``XL`` keep every official choice):

    - ``embed_std=0.02`` for the tokenizer's channel/time embeddings instead of PyTorch's N(0, 1) (reference §3.2,
      §9.9). With N(0, 1) rows (norm ~8 at width 64) next to a TemporalConv content path of norm ~0.5, the
      tiny encoder's features vary across windows by ~1% of their size, and after 120 vq steps every
      Workload window got the same code sequence (codes a function of channel and second only), so
      pre-training learned positions and instruction tuning answered every window alike (BAcc 0.500).
      At 0.02 the content is ~half of the feature size at init.
    - ``dead_code_steps=20``: codes unused for 20 consecutive vq steps are re-seeded from random batch vectors
      (``NormEMAQuantizer``; officially unused codes keep their weights, reference §3.2). At lr 3e-3 the tiny
      codebook collapsed to < 25 used codes within 60 steps without it.

    ``overrides`` set top-level ``NeuroLMConfig`` fields (e.g. ``features="causal"``).
    Raises ``KeyError`` for an unknown name.
    """
    if name == "tiny":
        vq = VQConfig(
            n_embd=64,
            n_layer=2,
            n_head=4,
            decoder_layers=2,
            code_dim=32,
            n_codes=512,
            domain_hidden=64,
            embed_std=0.02,
            dead_code_steps=20,
        )
        gpt = GPTConfig(n_layer=2, n_head=4, n_embd=128, init_from=None)
        return NeuroLMConfig(
            gpt=gpt, vq=vq, n_eeg_codes=512, name="tiny", **{"eeg_head": "eeg_only", **overrides}
        )
    if name not in _GPT2:
        raise KeyError(f"unknown model config {name!r}: expected one of tiny, B, L, XL")
    hf, n_layer, n_head, n_embd = _GPT2[name]
    gpt = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, init_from=hf)
    return NeuroLMConfig(gpt=gpt, vq=VQConfig(), name=name, **overrides)
