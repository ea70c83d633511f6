"""The LaBraM backbone (one class for the three stages), the VQ-NSP tokenizer and the MEM model.

Source: LaBraM (Jiang et al., ICLR 2024) and its code (github.com/935963004/LaBraM: ``modeling_finetune.py``,
``modeling_pretrain.py``, ``modeling_vqnsp.py``); parameter names follow the official ones, so the official
files map onto these modules by prefix (``official.py``). Reused from the NeuroLM code: ``TemporalConv``
(the same per-patch convolution; LaBraM has no projection after it) and ``NormEMAQuantizer`` (the same
quantizer algorithm).

Inputs everywhere are the project's token batches (docs/architecture.md "Token batches"):

- ``x``     (B, N, 200) float32, patches in units of 100 µV (the official engines' ``x / 100``), 0 at padding;
- ``chans`` (B, N) int64 ``standard_1020`` index; ``times`` (B, N) int64 second index; ``mask`` (B, N) bool.

Token order is time-major here and channel-major officially; every token gets the channel row ``chans + 1``
and the time row ``times`` of its own (channel, second), attention has no relative bias and pooling is a
mean, so outputs do not depend on the order (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurolm_data.channels import STANDARD_1020

from ..config import VQConfig
from ..tokenizer import NormEMAQuantizer, TemporalConv, l2norm, zscore_per_sample
from .config import LaBraMConfig


class LaBraMTemporalConv(TemporalConv):
    """LaBraM's TemporalConv: the NeuroLM module (conv 1x15 stride 8, GroupNorm(4, k), GELU, twice conv 1x3,
    GroupNorm, GELU; flattened time-outer/channel-inner) without its output projection, so the width is 25 k.
    (B, N, 200) -> (B, N, 25 k). ``patch_norm`` as in ``LaBraMConfig``."""

    def __init__(self, k: int, patch_norm: str) -> None:
        super().__init__(VQConfig(conv_chans=k, n_embd=25 * k, patch_norm=patch_norm))
        self.l = nn.Identity()


class CodeEmbed(nn.Module):
    """The VQ-NSP decoder's input: ``Conv2d(code_dim, d, 1x1)`` over quantized vectors (official
    ``PatchEmbed`` with patch size 1), applied per token. (B, N, code_dim) -> (B, N, d)."""

    def __init__(self, code_dim: int, d: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(code_dim, d, kernel_size=(1, 1))

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        return F.linear(z, self.proj.weight.flatten(1), self.proj.bias)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth per sample (Huang et al. 2016): zero a sample's residual branch with probability p
    and scale the kept ones by 1/(1-p). x (B, ...)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class Attention(nn.Module):
    """Fused ``qkv`` Linear without bias, optional ``q_bias``/``v_bias`` (k gets none), optional per-head
    ``q_norm``/``k_norm`` LayerNorm (eps 1e-6), scale head_dim^-0.5, output ``proj`` with bias."""

    def __init__(self, d: int, n_head: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.n_head = n_head
        hd = d // n_head
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(d))
            self.v_bias = nn.Parameter(torch.zeros(d))
        else:
            self.q_bias = self.v_bias = None
        if qk_norm:
            self.q_norm = nn.LayerNorm(hd, eps=1e-6)
            self.k_norm = nn.LayerNorm(hd, eps=1e-6)
        else:
            self.q_norm = self.k_norm = None
        self.proj = nn.Linear(d, d)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """x (B, S, d); attn_mask (B, 1, 1, S) bool, True = key may be attended. Returns (B, S, d)."""
        B, S, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).view(B, S, 3, self.n_head, d // self.n_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, S, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q).type_as(v), self.k_norm(k).type_as(v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, S, hd)
        return self.proj(y.transpose(1, 2).reshape(B, S, d))


class Mlp(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN block (BEiT style): ``x + dp(γ1 · attn(norm1 x))``, ``x + dp(γ2 · mlp(norm2 x))``; LayerNorm eps
    1e-6; γ (LayerScale) only when ``init_values > 0``."""

    def __init__(
        self,
        d: int,
        n_head: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_norm: bool,
        init_values: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, n_head, qkv_bias, qk_norm)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, int(d * mlp_ratio))
        self.drop_path = drop_path
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(d))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(d))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        a = self.attn(self.norm1(x), attn_mask)
        if self.gamma_1 is not None:
            a = self.gamma_1 * a
        x = x + drop_path(a, self.drop_path, self.training)
        m = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            m = self.gamma_2 * m
        return x + drop_path(m, self.drop_path, self.training)


def _trunc_(t: Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(t, std=std)


class NeuralTransformer(nn.Module):
    """The LaBraM backbone (official ``NeuralTransformer``/``NeuralTransformerForMaskedEEGModeling``).

    Args:
        cfg: the shapes (``LaBraMConfig``); ``depth``, ``qkv_bias``, ``qk_norm``, ``init_values`` override it
            (the VQ-NSP encoder/decoder use other values than the fine-tune/MEM backbone).
        in_dim: None = TemporalConv input (EEG patches); an int = ``CodeEmbed`` input (VQ-NSP decoder).
        mask_token: hold a learned ``mask_token`` (1, 1, d) (MEM student).
        final: ``"fc_norm"`` (mean pooling / per-token ``fc_norm``, official default) or ``"norm"`` (a LayerNorm
            over every token after the blocks; MEM student).
        n_classes: head outputs (0 = no head).
        drop_path: stochastic depth, rising linearly from 0 to this over the blocks.

    Parameters (official names): ``cls_token`` (1,1,d), ``pos_embed`` (1, n_chan_rows, d) (row 0 = CLS, row
    i+1 = ``standard_1020`` index i), ``time_embed`` (1, n_time_rows, d), ``patch_embed.*``, ``blocks.*``,
    ``fc_norm``/``norm``, ``head``. Init: trunc-normal(0.02) for Linear weights and the three embeddings, 0
    biases, LayerNorm (1, 0); ``attn.proj`` and ``mlp.fc2`` weights of block l (1-based) divided by sqrt(2 l);
    the head multiplied by ``cfg.init_scale``.
    """

    def __init__(
        self,
        cfg: LaBraMConfig,
        depth: int | None = None,
        *,
        in_dim: int | None = None,
        mask_token: bool = False,
        final: str = "fc_norm",
        n_classes: int = 0,
        drop_path: float = 0.0,
        qkv_bias: bool | None = None,
        qk_norm: bool | None = None,
        init_values: float | None = None,
    ) -> None:
        super().__init__()
        d = cfg.embed_dim
        depth = cfg.depth if depth is None else depth
        self.cfg, self.depth, self.final = cfg, depth, final
        self.patch_embed = (
            LaBraMTemporalConv(cfg.conv_chans, cfg.patch_norm) if in_dim is None else CodeEmbed(in_dim, d)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d)) if mask_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.n_chan_rows, d))
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.n_time_rows, d))
        dpr = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.blocks = nn.ModuleList(
            Block(
                d,
                cfg.n_head,
                cfg.mlp_ratio,
                cfg.qkv_bias if qkv_bias is None else qkv_bias,
                cfg.qk_norm if qk_norm is None else qk_norm,
                cfg.init_values if init_values is None else init_values,
                dpr[i],
            )
            for i in range(depth)
        )
        if final == "fc_norm":
            self.fc_norm = nn.LayerNorm(d, eps=1e-6)
        elif final == "norm":
            self.norm = nn.LayerNorm(d, eps=1e-6)
        else:
            raise ValueError(f"final must be 'fc_norm' or 'norm', got {final!r}")
        self.head = nn.Linear(d, n_classes) if n_classes > 0 else None
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            for p in (self.cls_token, self.pos_embed, self.time_embed, self.mask_token):
                if p is not None:
                    _trunc_(p)
            for i, blk in enumerate(self.blocks):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))
            if self.head is not None:
                self.head.weight.mul_(cfg.init_scale)
                self.head.bias.mul_(cfg.init_scale)

    @property
    def embed_dim(self) -> int:
        return self.cls_token.shape[-1]

    def check_indices(self, chans: Tensor, times: Tensor, mask: Tensor) -> None:
        """Raise ValueError naming the first channel past the channel table, or a window past the time table
        (official: 129 channel rows hold ``standard_1020`` indices 0..127 and 16 time rows hold 16 s)."""
        rows, n_rows = chans[mask] + 1, self.pos_embed.shape[1]
        bad = rows >= n_rows
        if bool(bad.any()):
            idx = sorted({int(i) - 1 for i in rows[bad].unique()})
            names = [STANDARD_1020[i] if 0 <= i < len(STANDARD_1020) else str(i) for i in idx]
            raise ValueError(
                f"channel(s) {names} (standard_1020 index {idx}) do not fit this model's {n_rows}-row channel "
                f"table (row = index + 1; the official LaBraM table holds indices 0..{n_rows - 2}): use a "
                "config with more n_chan_rows (tiny has 140) or drop those channels"
            )
        if bool((times[mask] >= self.time_embed.shape[1]).any()):
            raise ValueError(
                f"window of {int(times[mask].max()) + 1} s exceeds the {self.time_embed.shape[1]}-s "
                "time table (official: 16 s); crop the window"
            )

    def forward_features(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, masked: Tensor | None = None
    ) -> Tensor:
        """All tokens after the blocks (and ``norm`` when ``final="norm"``): (B, 1 + N, d), CLS first.

        ``masked`` (B, N) bool: tokens whose patch embedding is replaced by ``mask_token`` before the channel
        and time embeddings are added (MEM). Padding (``~mask``) is never attended to.
        """
        self.check_indices(chans, times, mask)
        h = self.patch_embed(x, mask)  # (B, N, d)
        if masked is not None:
            if self.mask_token is None:
                raise ValueError("this backbone has no mask_token (build it with mask_token=True)")
            h = torch.where(masked.unsqueeze(-1), self.mask_token.to(h.dtype), h)
        rows = torch.where(mask, chans + 1, 0)
        pos = self.pos_embed[0, rows]  # (B, N, d)
        h = h + pos + self.time_embed[0, torch.where(mask, times, 0)]
        B = h.shape[0]
        cls = self.cls_token.expand(B, 1, -1)
        if (
            self.cfg.cls_pos == "first_patch"
        ):  # official MEM: the first patch's channel row (a bug, kept as option)
            cls = cls + pos[:, :1]
        else:
            cls = cls + self.pos_embed[:, :1]
        h = torch.cat((cls, h), dim=1)  # (B, 1+N, d)
        keys = torch.cat((torch.ones_like(mask[:, :1]), mask), dim=1)[:, None, None, :]  # (B, 1, 1, 1+N)
        for blk in self.blocks:
            h = blk(h, keys)
        return self.norm(h) if self.final == "norm" else h

    def patch_tokens(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> Tensor:
        """Per-token features ``fc_norm(patch tokens)`` (B, N, d), CLS dropped (the VQ-NSP encoder/decoder
        output and what users ask for as embeddings, LaBraM issue #5)."""
        h = self.forward_features(x, chans, times, mask)[:, 1:]
        return self.fc_norm(h) if self.final == "fc_norm" else h

    def pooled(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> Tensor:
        """``fc_norm(mean of the valid patch tokens)`` (B, d) (official ``use_mean_pooling``)."""
        h = self.forward_features(x, chans, times, mask)[:, 1:]
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.fc_norm((h * m).sum(1) / m.sum(1).clamp(min=1))

    def forward(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> Tensor:
        """Logits (B, n_classes) of the fine-tune head on the pooled features."""
        if self.head is None:
            raise ValueError("this backbone has no head (n_classes=0)")
        return self.head(self.pooled(x, chans, times, mask))


def symmetric_masks(mask: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """LaBraM's symmetric masking: per sample a uniformly random set M of exactly ⌊L/2⌋ of its L valid tokens
    (argsort of uniform noise, as the official engine) and its complement ¬M over the valid tokens.

    mask (B, N) bool -> (m, m_sym) (B, N) bool, disjoint, ``m | m_sym == mask``; padding is in neither.
    """
    noise = torch.rand(mask.shape, device=mask.device, generator=generator)
    noise = noise.masked_fill(~mask, 2.0)  # padding sorts last
    rank = noise.argsort(dim=1).argsort(dim=1)  # (B, N) rank of each token
    n_mask = mask.sum(1, keepdim=True) // 2
    m = rank < n_mask
    return m, mask & ~m


class LaBraMVQNSP(nn.Module):
    """Stage 1, the VQ-NSP neural tokenizer (official ``VQNSP``).

    Encoder: ``NeuralTransformer`` (``vq_depth`` blocks, q/v bias, no QK-norm, no LayerScale) -> per-token
    ``fc_norm`` features -> ``encode_task_layer`` (Linear d->d, Tanh, Linear d->code_dim, fp32) -> L2-normalised
    -> ``NormEMAQuantizer`` (``n_codes``, EMA 0.99, cosine k-means init, straight-through). Decoder:
    ``NeuralTransformer`` with ``CodeEmbed`` input (``vq_decoder_depth`` blocks), then two heads
    ``decode_task_layer`` (amplitude) and ``decode_task_layer_angle`` (phase), each Linear d->d, Tanh,
    Linear d->n_freq. Targets: |FFT| and angle(FFT) of each 200-sample patch, all 200 bins, each z-scored per
    sample over (tokens x bins). Loss = commitment + MSE(amplitude) + MSE(phase), padding masked out.
    """

    def __init__(self, cfg: LaBraMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        opts = dict(qkv_bias=True, qk_norm=False, init_values=0.0)
        self.encoder = NeuralTransformer(cfg, cfg.vq_depth, **opts)
        self.decoder = NeuralTransformer(cfg, cfg.vq_decoder_depth, in_dim=cfg.code_dim, **opts)
        self.quantize = NormEMAQuantizer(
            cfg.n_codes, cfg.code_dim, cfg.ema_decay, cfg.beta, cfg.kmeans_iters, cfg.dead_code_steps
        )
        self.encode_task_layer = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.code_dim))
        self.decode_task_layer = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.n_freq))
        self.decode_task_layer_angle = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.n_freq))
        for seq in (self.encode_task_layer, self.decode_task_layer, self.decode_task_layer_angle):
            for m in seq:
                if isinstance(m, nn.Linear):
                    _trunc_(m.weight)
                    nn.init.zeros_(m.bias)

    def quantizer_input(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> Tensor:
        """Unit vectors (B, N, code_dim) in float32: ``l2norm(encode_task_layer(encoder features))``."""
        h = self.encoder.patch_tokens(x, chans, times, mask)
        with torch.autocast(device_type=h.device.type, enabled=False):
            return l2norm(self.encode_task_layer(h.float()))

    @torch.no_grad()
    def get_codes(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> Tensor:
        """Codes (B, N) int64 in [0, n_codes), -1 at padding (the MEM targets). Never updates the codebook.
        Raises RuntimeError when the codebook was never initialised."""
        if not self.quantize.is_initialized:
            raise RuntimeError(
                "the VQ-NSP codebook is not initialised: train the tokenizer or load vqnsp.pth"
            )
        z = self.quantizer_input(x, chans, times, mask)
        return self.quantize.codes(z).masked_fill(~mask, -1)

    def forward(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Stage-1 losses: dict of scalars ``loss`` (sum), ``commit``, ``rec_amp``, ``rec_phase`` and the
        detached ``used_codes`` (distinct codes over the valid tokens). Training mode updates the codebook."""
        xf = torch.fft.fft(x.float(), dim=-1)  # (B, N, 200) complex
        amp = zscore_per_sample(xf.abs(), mask)
        phase = zscore_per_sample(torch.angle(xf), mask)
        z = self.quantizer_input(x, chans, times, mask)
        z_q, codes, commit = self.quantize(z, mask)
        h = self.decoder.patch_tokens(z_q, chans, times, mask)
        m = mask.unsqueeze(-1).to(torch.float32)
        denom = (m.sum() * amp.shape[-1]).clamp(min=1)
        rec_amp = ((self.decode_task_layer(h).float() - amp) ** 2 * m).sum() / denom
        rec_phase = ((self.decode_task_layer_angle(h).float() - phase) ** 2 * m).sum() / denom
        used = (torch.bincount(codes[mask], minlength=self.cfg.n_codes) > 0).sum().float()
        return {
            "loss": commit + rec_amp + rec_phase,
            "commit": commit,
            "rec_amp": rec_amp,
            "rec_phase": rec_phase,
            "used_codes": used,
        }


class LaBraMMEM(nn.Module):
    """Stage 2, masked EEG modelling with symmetric masking (official ``NeuralTransformerForMEM``).

    ``student``: the backbone with ``mask_token`` and a final ``norm``; ``lm_head`` Linear(d -> n_codes). Per
    step the student runs twice, with a random half M masked and with its complement; each pass predicts the
    VQ-NSP codes at its own masked tokens; loss = CE(M) + CE(¬M), so every token is a target once per step.
    The official student's own ``lm_head`` and the wrapper's ``projection_head`` are never used and are not
    built here (``official.py`` writes them on export).
    """

    def __init__(self, cfg: LaBraMConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = NeuralTransformer(cfg, mask_token=True, final="norm", drop_path=drop_path)
        for m in self.student.patch_embed.modules():  # official MEM: Conv2d weights trunc-normal(0.02) too
            if isinstance(m, nn.Conv2d):
                _trunc_(m.weight)
                nn.init.zeros_(m.bias)
        self.lm_head = nn.Linear(cfg.embed_dim, cfg.n_codes)
        _trunc_(self.lm_head.weight)
        nn.init.zeros_(self.lm_head.bias)

    def forward(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        codes: Tensor,
        masks: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """codes (B, N) int64 targets (-1 at padding); masks: (M, ¬M) or None (drawn by ``symmetric_masks``).
        Returns ``loss`` = CE(M) + CE(¬M), ``loss_m``, ``loss_sym``, ``acc``, ``acc_sym`` (token accuracy)."""
        m1, m2 = masks if masks is not None else symmetric_masks(mask)
        out: dict[str, Tensor] = {}
        for name, m in (("", m1), ("_sym", m2)):
            h = self.student.forward_features(x, chans, times, mask, masked=m)[:, 1:]
            logits = self.lm_head(h[m]).float()  # (n_masked, K)
            tgt = codes[m]
            out["loss_m" if not name else "loss_sym"] = F.cross_entropy(logits, tgt)
            out["acc" + name] = (logits.argmax(-1) == tgt).float().mean().detach()
        out["loss"] = out["loss_m"] + out["loss_sym"]
        return out


# ------------------------------------------------------------------------------- layer-wise lr decay (stage 3)
NO_WEIGHT_DECAY = ("cls_token", "pos_embed", "time_embed")  # official no_weight_decay() of the backbone


def layer_id(name: str, depth: int, time_embed: str = "rest") -> int:
    """The official layer id of a backbone parameter (``optim_factory.get_layer_id_for_vit``): ``cls_token``,
    ``mask_token``, ``pos_embed`` and ``patch_embed.*`` -> 0; ``blocks.i.*`` -> i+1; everything else (``time_embed``,
    ``fc_norm``, ``head``) -> depth+1. ``time_embed="embed"`` puts ``time_embed`` in group 0 with the other
    embeddings (the official placement gives it the full lr while ``pos_embed`` gets ld^(depth+1))."""
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name == "time_embed" and time_embed == "embed":
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_scales(depth: int, layer_decay: float) -> list[float]:
    """lr scale per layer id g = 0..depth+1: ``layer_decay ** (depth + 1 - g)`` (official LayerDecayValueAssigner)."""
    return [layer_decay ** (depth + 1 - g) for g in range(depth + 2)]


def param_groups(
    model: NeuralTransformer, weight_decay: float, layer_decay: float = 1.0, time_embed: str = "rest"
) -> list[dict]:
    """AdamW groups of a backbone with layer-wise lr decay (official ``optim_factory.get_parameter_groups``):
    one group per (layer id, decay or not); no weight decay for 1-D tensors, biases and ``NO_WEIGHT_DECAY``.
    Each group has ``params``, ``names``, ``weight_decay`` and ``lr_scale``; multiply the lr by ``lr_scale``."""
    scales = layer_scales(model.depth, layer_decay)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim == 1 or name.endswith(".bias") or name in NO_WEIGHT_DECAY
        g = layer_id(name, model.depth, time_embed)
        grp = groups.setdefault(
            (g, no_decay),
            {
                "params": [],
                "names": [],
                "lr_scale": scales[g],
                "weight_decay": 0.0 if no_decay else weight_decay,
            },
        )
        grp["params"].append(p)
        grp["names"].append(name)
    return [groups[k] for k in sorted(groups)]
