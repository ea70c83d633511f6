"""Shared building blocks: the nanoGPT pre-LN transformer block and the batched stair-step mask.

The same ``Block`` serves the tokenizer (``bias=False``: no biases, bias-free LayerNorms, reference §3.2) and the
GPT-2 backbone (``bias=True``, ckpt §2.2); parameter names follow nanoGPT (``ln_1``, ``attn.c_attn``,
``attn.c_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so official and Hugging Face GPT-2 weights map onto
them by name. GELU is the exact (erf) one, as in the official code (ckpt §2.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused q, k, v projection (q, k, v in that order, ckpt §2.1)."""

    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None, past: KV | None = None) -> tuple[Tensor, KV]:
        """x (B, S, d); mask None (causal), bool (B|1, 1, S, P+S) True = may attend, or float (added to the
        scores); past: keys and values (B, H, P, d/H) of P earlier positions. Returns (B, S, d) and the
        keys/values (B, H, P+S, d/H) including this call's."""
        B, S, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (t.view(B, S, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        drop = self.dropout if self.training else 0.0
        if mask is None:
            if past is not None:
                raise ValueError("a cached attention call needs an explicit mask")
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(B, S, d)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``. LayerNorm eps 1e-5 (ckpt §2.2)."""

    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = SelfAttention(n_embd, n_head, bias, dropout)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias, dropout)

    def forward(self, x: Tensor, mask: Tensor | None, past: KV | None = None) -> tuple[Tensor, KV]:
        """See :meth:`SelfAttention.forward`; returns the new hidden state and this layer's keys/values."""
        a, kv = self.attn(self.ln_1(x), mask, past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


def build_attention_mask(mask: Tensor, n_chans: Tensor, n_text: int = 0) -> Tensor:
    """The batched stair-step attention mask of stages 2-3 (reference §4.1, §5.1; ckpt §4.4).

    Args:
        mask: (B, N) bool, True = valid EEG token; tokens are time-major (token k is second k // C) and
            padding comes after the valid tokens.
        n_chans: (B,) int, channels C per sample (the block size of the stair).
        n_text: text tokens appended after the N EEG positions.

    Returns:
        (B, 1, N + n_text, N + n_text) bool on ``mask.device``, True = may attend. EEG query i sees the
        valid EEG keys j with ``j // C <= i // C`` (every channel of its own second and of all earlier
        seconds); text query i sees every valid EEG key and the text keys j <= i. Padded EEG columns are
        closed for every row; padded EEG rows see all valid EEG keys (as in the official mask). This is
        exactly ``tril(ones)`` plus full within-second blocks with padded columns zeroed.
    """
    B, N = mask.shape
    n_chans = n_chans.to(mask.device).long().clamp(min=1)
    second = torch.arange(N, device=mask.device)[None, :] // n_chans[:, None]  # (B, N)
    eeg = (second[:, None, :] <= second[:, :, None]) & mask[:, None, :]  # (B, N, N)
    if n_text == 0:
        return eeg.unsqueeze(1)
    S = N + n_text
    full = torch.zeros(B, S, S, dtype=torch.bool, device=mask.device)
    full[:, :N, :N] = eeg
    full[:, N:, :N] = mask[:, None, :]
    full[:, N:, N:] = torch.ones(n_text, n_text, dtype=torch.bool, device=mask.device).tril()
    return full.unsqueeze(1)


def key_padding_mask(mask: Tensor) -> Tensor:
    """(B, N) bool -> (B, 1, 1, N) bool, broadcast over queries: every query (padded ones included) sees
    every valid key; attention is bidirectional (reference §3.2, ckpt §4.2)."""
    return mask[:, None, None, :]
