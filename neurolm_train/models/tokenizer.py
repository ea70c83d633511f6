"""Stage 1: the text-aligned neural tokenizer (reference §3; official layout in ckpt §2.1).

Inputs everywhere are one batch of time-major tokens (docs/architecture.md "Token batches"):

- ``x``      (B, N, 200) float32, patches in units of 100 µV, zero at padding;
- ``chans``  (B, N) int64, ``standard_1020`` index (< 256), 136 at padding;
- ``times``  (B, N) int64, second index (< 64), 0 at padding;
- ``mask``   (B, N) bool, True = valid token; padding comes after the valid tokens.

Module names follow the official ``VQ`` (``encoder``, ``decoder_freq``, ``decoder_raw``, ``quantize``,
``encode_task_layer``, ``decode_task_layer_freq``, ``decode_task_layer_raw``) and ``domain_classifier``, so
``neurolm_train.official`` maps them to ``VQ.pt`` by prefix.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VQConfig
from .layers import Block, build_attention_mask, key_padding_mask


class TemporalConv(nn.Module):
    """Per-patch convolutional embedding (reference §3.2): (B, N, 200) -> (B, N, d).

    ``Conv2d(1,16,(1,15),stride (1,8),pad (0,7))`` (200 -> 25 steps), GroupNorm(4,16), GELU, then twice
    ``Conv2d(16,16,(1,3),pad (0,1))``, GroupNorm, GELU; flatten time-outer/channel-inner to 25·16 = 400
    (ckpt §4.2), ``Linear(400, d)`` and GELU.

    The convolutions act on each patch alone, but the official GroupNorm runs on the (B, 16, N, 25) map, so
    its statistics mix **all N tokens of a sample, padding included** (ckpt §4.2): features then depend on
    the padded length and on future seconds. ``cfg.patch_norm`` chooses the statistics:
    ``"sample"`` = official (all N tokens); ``"valid"`` = the valid tokens only (padding-invariant; equal to
    the official values for an unpadded window). With ``causal_n_chans`` (the causal variant, reference §4.4),
    token (t, c) is normalised with the statistics of the valid tokens of seconds <= t, so nothing after
    second t reaches it. The affine parameters are the GroupNorm's either way.
    """

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        c = cfg.conv_chans
        self.patch_norm = cfg.patch_norm
        self.conv1 = nn.Conv2d(1, c, kernel_size=(1, 15), stride=(1, 8), padding=(0, 7))
        self.norm1 = nn.GroupNorm(4, c)
        self.conv2 = nn.Conv2d(c, c, kernel_size=(1, 3), padding=(0, 1))
        self.norm2 = nn.GroupNorm(4, c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=(1, 3), padding=(0, 1))
        self.norm3 = nn.GroupNorm(4, c)
        self.gelu = nn.GELU()
        steps = (cfg.patch + 2 * 7 - 15) // 8 + 1
        self.l = nn.Sequential(nn.Linear(steps * c, cfg.n_embd), nn.GELU())

    def _norm(self, norm: nn.GroupNorm, h: Tensor, mask: Tensor, causal_n_chans: Tensor | None) -> Tensor:
        if causal_n_chans is None and self.patch_norm == "sample":
            return norm(h)
        B, c, N, T = h.shape
        G = norm.num_groups
        hg = h.float().view(B, G, c // G, N, T)  # float32 statistics, as GroupNorm under autocast
        m = mask.to(hg.dtype).view(B, 1, 1, N, 1)
        s1 = (hg * m).sum(dim=(2, 4), dtype=torch.float64)  # (B, G, N) per-token sums
        s2 = (hg * hg * m).sum(dim=(2, 4), dtype=torch.float64)
        cnt = (mask.to(torch.float64) * (c // G) * T).unsqueeze(1).expand(B, G, N)
        if causal_n_chans is None:  # valid tokens of the sample
            s1, s2, cnt = (t.sum(-1, keepdim=True) for t in (s1, s2, cnt))
        else:  # valid tokens of seconds <= t: the first (t+1)·C tokens (time-major)
            second = (
                torch.arange(N, device=h.device)[None, :]
                // causal_n_chans.to(h.device).long().clamp(min=1)[:, None]
            )
            last = ((second + 1) * causal_n_chans.to(h.device).long()[:, None] - 1).clamp(max=N - 1)
            last = (
                torch.minimum(last, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).unsqueeze(1).expand(B, G, N)
            )
            s1, s2, cnt = (t.cumsum(-1).gather(-1, last) for t in (s1, s2, cnt))
        mean = s1 / cnt.clamp(min=1)
        var = (s2 / cnt.clamp(min=1) - mean**2).clamp(min=0)
        mean, std = mean.float(), (var + norm.eps).sqrt().float()
        out = ((hg - mean[:, :, None, :, None]) / std[:, :, None, :, None]).view(B, c, N, T)
        return out * norm.weight.view(1, c, 1, 1) + norm.bias.view(1, c, 1, 1)

    def forward(self, x: Tensor, mask: Tensor, causal_n_chans: Tensor | None = None) -> Tensor:
        """x (B, N, 200), mask (B, N) bool, causal_n_chans (B,) or None -> (B, N, d)."""
        h = self.gelu(self._norm(self.norm1, self.conv1(x.unsqueeze(1)), mask, causal_n_chans))  # (B,c,N,25)
        h = self.gelu(self._norm(self.norm2, self.conv2(h), mask, causal_n_chans))
        h = self.gelu(self._norm(self.norm3, self.conv3(h), mask, causal_n_chans))
        B, C, N, T = h.shape
        return self.l(h.permute(0, 2, 3, 1).reshape(B, N, T * C))


class NeuralTransformer(nn.Module):
    """Encoder (``in_dim=None``: TemporalConv input) or decoder (``Linear(in_dim, d)`` input), reference §3.2.

    Channel and time embeddings (``Embedding(256, d)``, ``Embedding(64, d)``, PyTorch's N(0,1) init as in the
    official code), ``n_layer`` bias-free pre-LN blocks, ``fc_norm`` (LayerNorm eps 1e-6) on every token.
    Linear weights trunc-normal(0.02); each block's ``c_proj`` weights divided by sqrt(2·layer) (reference §3.2).
    ``cfg.embed_std`` set: the two embeddings are N(0, embed_std) instead (a ``tiny`` deviation, see
    ``model_config``).
    """

    def __init__(self, cfg: VQConfig, n_layer: int, in_dim: int | None = None) -> None:
        super().__init__()
        self.patch_embed = TemporalConv(cfg) if in_dim is None else nn.Linear(in_dim, cfg.n_embd)
        self.pos_embed = nn.Embedding(cfg.n_chan_emb, cfg.n_embd)
        self.time_embed = nn.Embedding(cfg.n_time_emb, cfg.n_embd)
        self.blocks = nn.ModuleList(
            Block(cfg.n_embd, cfg.n_head, cfg.bias, cfg.dropout) for _ in range(n_layer)
        )
        self.fc_norm = nn.LayerNorm(cfg.n_embd, eps=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            if cfg.embed_std is not None:
                self.pos_embed.weight.normal_(std=cfg.embed_std)
                self.time_embed.weight.normal_(std=cfg.embed_std)
            for i, blk in enumerate(self.blocks):
                blk.attn.c_proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                blk.mlp.c_proj.weight.div_(math.sqrt(2.0 * (i + 1)))

    def forward(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, causal_n_chans: Tensor | None = None
    ) -> Tensor:
        """x (B, N, 200) patches (encoder) or (B, N, in_dim) vectors (decoder); chans, times (B, N) int;
        mask (B, N) bool. Attention is bidirectional over the valid keys, or the stair-step mask when
        ``causal_n_chans`` (B,) is given. Returns (B, N, d) fc_norm features for every token.
        Raises IndexError when a channel index is >= 256 or a time index >= 64 (reference §1.2, §9.7)."""
        if isinstance(self.patch_embed, TemporalConv):
            h = self.patch_embed(x, mask, causal_n_chans)
        else:
            h = self.patch_embed(x)
        h = h + self.pos_embed(chans) + self.time_embed(times)
        attn = (
            key_padding_mask(mask) if causal_n_chans is None else build_attention_mask(mask, causal_n_chans)
        )
        for blk in self.blocks:
            h, _ = blk(h, attn)
        return self.fc_norm(h)


def l2norm(t: Tensor) -> Tensor:
    return F.normalize(t, p=2.0, dim=-1)


def _masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the valid tokens only (reference §9.23). pred, target (B, N, F); mask (B, N)."""
    m = mask.unsqueeze(-1).to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1)


def zscore_per_sample(v: Tensor, mask: Tensor) -> Tensor:
    """Z-score ``v`` (B, N, F) with one mean and (unbiased) std per sample over its valid tokens × F
    (reference §3.1). Padded tokens are set to 0. The std is clamped at 1e-6 (an all-flat window stays finite)."""
    m = mask.unsqueeze(-1).to(v.dtype)
    n = m.sum(dim=(1, 2), keepdim=True) * v.shape[-1]
    mean = (v * m).sum(dim=(1, 2), keepdim=True) / n.clamp(min=1)
    var = (((v - mean) ** 2) * m).sum(dim=(1, 2), keepdim=True) / (n - 1).clamp(min=1)
    return (v - mean) / var.sqrt().clamp(min=1e-6) * m


def reconstruction_targets(x: Tensor, mask: Tensor, n_freq: int = 100) -> tuple[Tensor, Tensor]:
    """Stage-1 targets (reference §3.1) from patches x (B, N, 200) and mask (B, N):
    ``freq`` (B, N, n_freq) = z-scored |FFT| (over all 200 bins) kept at bins 0..n_freq-1;
    ``raw`` (B, N, 200) = z-scored patches. Both zero at padding; computed in float32."""
    x = x.float()
    amp = torch.fft.fft(x, dim=-1).abs()
    return zscore_per_sample(amp, mask)[..., :n_freq], zscore_per_sample(x, mask)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.alpha * grad, None


def grad_reverse(x: Tensor, alpha: float) -> Tensor:
    """Gradient-reversal layer (reference §3.3): identity forward, gradient multiplied by ``-alpha`` backward."""
    return _GradReverse.apply(x, alpha)


def grl_alpha(progress: float) -> float:
    """The official GRL ramp ``2 / (1 + exp(-10 p)) - 1`` for training progress p in [0, 1] (reference §3.3)."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def kmeans_cosine(samples: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor]:
    """Cosine k-means (reference §3.2): samples (M, D) unit vectors -> (means (k, D) unit, counts (k,) float).
    Initial means are k random samples (with replacement when M < k); empty clusters keep their mean."""
    M = samples.shape[0]
    idx = (
        torch.randperm(M, device=samples.device)[:k]
        if M >= k
        else torch.randint(0, M, (k,), device=samples.device)
    )
    means = samples[idx]
    bins = torch.zeros(k, device=samples.device)
    for _ in range(iters):
        buckets = (samples @ means.t()).argmax(dim=-1)
        bins = torch.bincount(buckets, minlength=k).to(samples.dtype)
        new = torch.zeros_like(means).index_add_(0, buckets, samples) / bins.clamp(min=1).unsqueeze(-1)
        means = torch.where((bins == 0).unsqueeze(-1), means, l2norm(new))
    return means, bins


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class NormEMAQuantizer(nn.Module):
    """L2-normalised EMA vector quantizer (reference §3.2, ckpt §3).

    Buffers (no gradients, never in the optimizer): ``codebook`` (K, D) unit rows, ``cluster_size`` (K,) EMA
    of code usage, ``init_counts`` (K,) k-means cluster sizes, ``initted`` (1,) 1.0 once k-means ran,
    ``unused_steps`` (K,) consecutive training steps in which no valid token picked the code.
    Differences from the official code: k-means and the EMA statistics use the valid tokens only
    (reference §9.23); under DDP rank 0's k-means codebook is broadcast to all ranks (officially each rank
    initialises its own); ``cluster_size`` is updated in training mode only.

    Dead-code restart (``dead_code_steps`` > 0; a deviation, off by default: officially unused codes keep
    their weights, reference §3.2): after each EMA update, every code unused for ``dead_code_steps`` consecutive
    steps (counted on the all-reduced usage, so identical on every rank) is replaced by a random valid
    vector of the batch, drawn on rank 0 and broadcast, and its counter restarts. ``unused_steps`` is not
    an official buffer: ``VQ.pt`` export leaves it out, loading a state dict without it sets it to zeros.
    """

    def __init__(
        self,
        n_codes: int,
        dim: int,
        decay: float = 0.99,
        beta: float = 1.0,
        kmeans_iters: int = 10,
        dead_code_steps: int = 0,
    ) -> None:
        super().__init__()
        self.n_codes, self.dim, self.decay, self.beta, self.kmeans_iters = (
            n_codes,
            dim,
            decay,
            beta,
            kmeans_iters,
        )
        self.dead_code_steps = dead_code_steps
        self.register_buffer("codebook", torch.zeros(n_codes, dim))
        self.register_buffer("cluster_size", torch.zeros(n_codes))
        self.register_buffer("init_counts", torch.zeros(n_codes))
        self.register_buffer("initted", torch.zeros(1))
        self.register_buffer("unused_steps", torch.zeros(n_codes))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:  # type: ignore[override]
        # state dicts written before the restart existed (and official VQ.pt files) have no counters
        key = prefix + "unused_steps"
        if key not in state_dict and prefix + "codebook" in state_dict:
            state_dict[key] = torch.zeros(state_dict[prefix + "codebook"].shape[0])
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def is_initialized(self) -> bool:
        return bool(self.initted.item() > 0)

    @torch.no_grad()
    def _init(self, z: Tensor) -> None:
        means, bins = kmeans_cosine(z, self.n_codes, self.kmeans_iters)
        if _distributed():
            dist.broadcast(means, src=0)
            dist.broadcast(bins, src=0)
        self.codebook.copy_(means)
        self.init_counts.copy_(bins)
        self.cluster_size.copy_(bins)
        self.initted.fill_(1.0)

    def codes(self, z: Tensor) -> Tensor:
        """Nearest code by squared L2 distance (= max cosine for unit vectors). z (..., D) -> (...,) int64."""
        flat = z.reshape(-1, self.dim)
        d = flat.pow(2).sum(-1, keepdim=True) + self.codebook.pow(2).sum(-1) - 2.0 * flat @ self.codebook.t()
        return d.argmin(dim=-1).view(z.shape[:-1])

    @torch.no_grad()
    def _ema_update(self, z: Tensor, codes: Tensor) -> None:
        bins = torch.bincount(codes, minlength=self.n_codes).to(z.dtype)
        sums = torch.zeros_like(self.codebook).index_add_(0, codes, z)
        if _distributed():
            dist.all_reduce(bins)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
        mean = l2norm(sums / bins.clamp(min=1).unsqueeze(-1))
        mean = torch.where((bins == 0).unsqueeze(-1), self.codebook, mean)
        self.codebook.copy_(l2norm(self.decay * self.codebook + (1 - self.decay) * mean))
        if self.dead_code_steps > 0:
            self._restart_dead(z, bins)

    @torch.no_grad()
    def _restart_dead(self, z: Tensor, bins: Tensor) -> None:
        """Re-seed the codes unused for ``dead_code_steps`` steps from random rows of ``z`` (M, D) (this rank's
        valid unit vectors); ``bins`` (K,) is the all-reduced usage of this step. Rank 0 draws, all ranks
        copy its draw, so the codebooks stay identical."""
        self.unused_steps.add_(1.0).masked_fill_(bins > 0, 0.0)
        dead = (self.unused_steps >= self.dead_code_steps).nonzero().squeeze(1)
        n, M = len(dead), z.shape[0]
        if n == 0:
            return
        if M == 0:  # nothing to draw from on this rank: keep the rows (rank 0's choice wins under DDP)
            new = self.codebook[dead].clone()
        else:
            pick = (
                torch.randperm(M, device=z.device)[:n]
                if M >= n
                else torch.randint(0, M, (n,), device=z.device)
            )
            new = z[pick].to(self.codebook.dtype)
        if _distributed():
            dist.broadcast(new, src=0)
        self.codebook[dead] = new
        self.unused_steps[dead] = 0.0

    def forward(self, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, N, D) float32 unit vectors; mask (B, N) bool.

        Returns ``z_q`` (B, N, D) (straight-through: value = codebook row, gradient to z), ``codes`` (B, N)
        int64 (padding included), and the commitment loss ``beta · MSE(codebook[code], z)`` over valid tokens.
        In training mode the first call runs k-means on the valid vectors and every call updates the codebook
        by EMA. Raises RuntimeError in eval mode before the codebook is initialised (train or load it first).
        """
        if not self.is_initialized:
            if not self.training:
                raise RuntimeError(
                    "the VQ codebook is not initialised: train the tokenizer or load VQ.pt first"
                )
            self._init(z[mask].detach())
        codes = self.codes(z.detach())
        q = self.codebook[codes]
        loss = self.beta * _masked_mse(q, z, mask)
        if self.training:
            self._ema_update(z[mask].detach(), codes[mask])
        return z + (q - z).detach(), codes, loss


class VQTokenizer(nn.Module):
    """The neural tokenizer: encoder, quantizer, two decoders and the domain classifier (reference §3.2-§3.3).

    ``decoders=False`` builds the inference part only (encoder, ``encode_task_layer``, quantizer): what
    NeuroLM holds to make features and next-second targets.
    """

    def __init__(self, cfg: VQConfig, decoders: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.n_embd
        self.encoder = NeuralTransformer(cfg, cfg.n_layer)
        if decoders:
            self.decoder_freq = NeuralTransformer(cfg, cfg.decoder_layers, in_dim=cfg.code_dim)
            self.decoder_raw = NeuralTransformer(cfg, cfg.decoder_layers, in_dim=cfg.code_dim)
        self.quantize = NormEMAQuantizer(
            cfg.n_codes, cfg.code_dim, cfg.ema_decay, cfg.beta, cfg.kmeans_iters, cfg.dead_code_steps
        )
        self.encode_task_layer = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.code_dim))
        if decoders:
            self.decode_task_layer_freq = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.n_freq))
            self.decode_task_layer_raw = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.patch))
            self.domain_classifier = nn.Sequential(
                nn.Linear(d, cfg.domain_hidden), nn.GELU(), nn.Linear(cfg.domain_hidden, 2)
            )
        self.has_decoders = decoders
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and "coder" not in name.split(".")[0]:
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def encode(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, causal_n_chans: Tensor | None = None
    ) -> Tensor:
        """Encoder features (B, N, n_embd) after fc_norm, for every token (padding included).

        Bidirectional with key padding by default (official, reference §3.2). With ``causal_n_chans`` (B,) the
        stair-step mask is used instead, so token (t, c) sees only seconds <= t (reference §4.4 option b).
        """
        return self.encoder(x, chans, times, mask, causal_n_chans)

    def quantizer_input(self, h: Tensor) -> Tensor:
        """``l2norm(encode_task_layer(h))`` in float32 with autocast off (reference §3.2): (B, N, d) -> (B, N, D)."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            return l2norm(self.encode_task_layer(h.float()))

    @torch.no_grad()
    def get_codes(self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor) -> Tensor:
        """Codes (B, N) int64 in [0, n_codes), -1 at padding, from the bidirectional encoder (ckpt §4.3).
        Never updates the codebook. Raises RuntimeError if the codebook was never initialised."""
        if not self.quantize.is_initialized:
            raise RuntimeError("the VQ codebook is not initialised: train the tokenizer or load VQ.pt first")
        z = self.quantizer_input(self.encode(x, chans, times, mask))
        return self.quantize.codes(z).masked_fill(~mask, -1)

    def forward(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        text_embeds: Tensor | None = None,
        alpha: float = 0.0,
    ) -> dict[str, Tensor]:
        """Stage-1 losses (reference §3.3) for one batch; all terms weight 1, padding masked out (reference §9.23).

        Args:
            x, chans, times, mask: the token batch (module docstring).
            text_embeds: (M, n_embd) or (B', T', n_embd) frozen GPT-2 ``wte`` rows of random text tokens
                (domain label 1). None = no text side, and then **no domain classifier at all**: with one
                class only, the classifier and the gradient reversal make a degenerate adversary that keeps
                pushing the EEG features around (measured on Workload, ``tiny``: ``domain_eeg`` 0.4-0.8 for
                the whole run, 286 of 512 codes in use, per-channel probe AUROC below a random-init
                tokenizer's). The official code always has the text side (reference §3.3).
            alpha: gradient-reversal strength for the EEG side (``grl_alpha`` gives the official ramp).

        Returns a dict of scalars ``loss`` (sum of the terms), ``commit``, ``rec_freq``, ``rec_raw``, with
        text also ``domain_eeg`` and ``domain_text``; ``used_codes`` (distinct codes on valid tokens,
        detached), and ``codes`` (B, N) int64 with -1 at padding (detached).
        Raises RuntimeError when built with ``decoders=False``.
        """
        if not self.has_decoders:
            raise RuntimeError("this VQTokenizer was built without decoders (inference only)")
        y_freq, y_raw = reconstruction_targets(x, mask, self.cfg.n_freq)
        h = self.encode(x, chans, times, mask)
        z = self.quantizer_input(h)
        z_q, codes, commit = self.quantize(z, mask)
        rec_freq = self.decode_task_layer_freq(self.decoder_freq(z_q, chans, times, mask))
        rec_raw = self.decode_task_layer_raw(self.decoder_raw(z_q, chans, times, mask))
        out = {
            "commit": commit,
            "rec_freq": _masked_mse(rec_freq.float(), y_freq, mask),
            "rec_raw": _masked_mse(rec_raw.float(), y_raw, mask),
        }
        if text_embeds is not None:  # both sides of the domain classifier, as in the official code
            eeg_logits = self.domain_classifier(grad_reverse(h[mask], alpha)).float()
            out["domain_eeg"] = F.cross_entropy(
                eeg_logits, torch.zeros(len(eeg_logits), dtype=torch.long, device=x.device)
            )
            t = text_embeds.reshape(-1, text_embeds.shape[-1]).detach()
            txt_logits = self.domain_classifier(t).float()
            out["domain_text"] = F.cross_entropy(
                txt_logits, torch.ones(len(t), dtype=torch.long, device=x.device)
            )
        out["loss"] = sum(out.values())
        out["used_codes"] = (torch.bincount(codes[mask], minlength=self.cfg.n_codes) > 0).sum().float()
        out["codes"] = codes.masked_fill(~mask, -1).detach()
        return out
