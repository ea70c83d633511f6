"""UniMind's Task-aware Query Selector, Neuro-Language Connector and projector.

Source: UniMind (arXiv 2506.18962), released code ``modeling_internvl_chat.py`` (``ctqformer_v2_2router_merge``).
Shapes: B samples, C channels, T seconds, d connector width (d_c), Q = 1 + k queries per branch.

- Selector: two routers ("channel" for the spatial branch, "time" for the temporal one), each an MLP applied to
  every L2-normalised encoder token and averaged over the tokens -> (B, P) scores; the top-k of each picks
  queries from its pool (P, d); one static query per task and branch is put first. The released selection
  uses only the ``topk`` indices, so its routers never learn; ``selection`` makes it differentiable.
- Connector: two single cross-attention layers (``nn.MultiheadAttention``, no self-attention, no FFN). The
  spatial one runs per (sample, second): Q queries over the C channel tokens of that second -> Q T tokens; the
  temporal one per (sample, channel): Q queries over its T time tokens -> Q C tokens. Output
  ``[CLS, spatial, temporal]``: 1 + Q T + Q C tokens (1 + 2T + 2C in the released configuration).
- Projector: LayerNorm -> Linear(d -> d_llm) -> GELU -> Linear(d_llm -> d_llm), Xavier-uniform weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Router(nn.Module):
    """Linear(d -> 4d) -> GELU -> Linear(4d -> P) per token, mean over tokens: (B, N, d) -> (B, P)."""

    def __init__(self, d: int, pool_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d, pool_size)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(tokens))).mean(dim=1)  # (B, P)


def select(
    scores: Tensor, pool: Tensor, k: int, mode: str, training: bool, tau: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Pick k queries per sample from ``pool`` (P, d) by ``scores`` (B, P).

    Modes: ``hard`` (official: ``pool[topk]``, no gradient to the scores), ``st`` (the same value, gradient
    ``d query / d p = query / p`` through the softmax probability p of each pick), ``gumbel`` (``st`` on
    scores plus Gumbel(0, 1) noise, divided by ``tau``, while training), ``soft`` (k = 1: ``softmax(scores) @
    pool``). Returns queries (B, k, d) and the picked indices (B, k) int64 (argmax of the mix for ``soft``).
    """
    if mode == "soft":
        p = scores.softmax(dim=-1)  # (B, P)
        return (p @ pool).unsqueeze(1), p.argmax(-1, keepdim=True)
    logits = scores
    if mode == "gumbel" and training:
        u = torch.rand_like(scores).clamp_(1e-9, 1 - 1e-9)
        logits = (scores - torch.log(-torch.log(u))) / tau
    idx = logits.topk(k, dim=-1).indices  # (B, k)
    q = pool[idx]  # (B, k, d)
    if mode == "hard":
        return q, idx
    p = logits.softmax(dim=-1).gather(1, idx)  # (B, k)
    return q * (p / p.detach()).unsqueeze(-1), idx


class QuerySelector(nn.Module):
    """Task-aware query selection for the two connector branches.

    Parameters: ``router_c``/``router_t`` (``Router``), ``pool_c``/``pool_t`` (P, d) N(0, 1), ``static_c``/
    ``static_t`` (n_tasks, d) N(0, 0.02) (official: per dataset). ``forward(tokens (B, N, d), task (B,) int64
    row of the static tables)`` -> ``q_c`` (B, Q, d), ``q_t`` (B, Q, d) with Q = 1 + k (static first) and a dict
    of the router scores (B, P) and picks (B, k).
    """

    def __init__(
        self, d: int, pool_size: int, top_k: int, n_tasks: int, mode: str = "st", tau: float = 1.0
    ) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ValueError("UniMind needs at least one task (one static query per task)")
        self.top_k, self.mode, self.tau = top_k, mode, tau
        self.router_c, self.router_t = Router(d, pool_size), Router(d, pool_size)
        self.pool_c = nn.Parameter(torch.randn(pool_size, d))
        self.pool_t = nn.Parameter(torch.randn(pool_size, d))
        self.static_c = nn.Parameter(torch.randn(n_tasks, d) * 0.02)
        self.static_t = nn.Parameter(torch.randn(n_tasks, d) * 0.02)

    def forward(self, tokens: Tensor, task: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        z = F.normalize(tokens, dim=-1)  # (B, N, d) unit tokens (official: L2-normalised before routing)
        s_c, s_t = self.router_c(z), self.router_t(z)  # (B, P) each
        sel_c, idx_c = select(s_c, self.pool_c, self.top_k, self.mode, self.training, self.tau)
        sel_t, idx_t = select(s_t, self.pool_t, self.top_k, self.mode, self.training, self.tau)
        q_c = torch.cat((self.static_c[task].unsqueeze(1), sel_c), dim=1)  # (B, Q, d)
        q_t = torch.cat((self.static_t[task].unsqueeze(1), sel_t), dim=1)  # (B, Q, d)
        return q_c, q_t, {"scores_c": s_c, "scores_t": s_t, "pick_c": idx_c, "pick_t": idx_t}


def tile_queries(q: Tensor, n: int, pairing: str) -> Tensor:
    """Queries (B, Q, d) for n rows per sample -> (B n, Q, d). ``sample``: row b n + j gets sample b's queries
    (``repeat_interleave``), matching features laid out sample-major. ``official``: ``q.repeat(n, 1, 1)``, so
    row i gets sample ``i mod B``'s queries (the released code's pairing)."""
    if pairing == "sample":
        return q.repeat_interleave(n, dim=0)
    return q.repeat(n, 1, 1)


class NeuroLanguageConnector(nn.Module):
    """Spatial + temporal cross-attention perceivers (module docstring).

    ``forward(cls (B, d), grid (B, C, T, d), q_c (B, Q, d), q_t (B, Q, d))`` -> (B, 1 + Q T + Q C, d): CLS, then
    for each second t its Q spatial tokens, then for each channel c its Q temporal tokens.
    """

    def __init__(self, d: int, n_heads: int, pairing: str = "sample") -> None:
        super().__init__()
        self.pairing = pairing
        self.attn_c = nn.MultiheadAttention(d, n_heads, batch_first=True)  # spatial: over channels
        self.attn_t = nn.MultiheadAttention(d, n_heads, batch_first=True)  # temporal: over seconds

    def forward(self, cls: Tensor, grid: Tensor, q_c: Tensor, q_t: Tensor) -> Tensor:
        B, C, T, d = grid.shape
        Q = q_c.shape[1]
        keys_c = grid.transpose(1, 2).reshape(B * T, C, d)  # (B T, C, d): row b T + t = second t of sample b
        s, _ = self.attn_c(
            tile_queries(q_c, T, self.pairing), keys_c, keys_c, need_weights=False
        )  # (B T, Q, d)
        keys_t = grid.reshape(B * C, T, d)  # (B C, T, d): row b C + c = channel c of sample b
        t, _ = self.attn_t(
            tile_queries(q_t, C, self.pairing), keys_t, keys_t, need_weights=False
        )  # (B C, Q, d)
        return torch.cat((cls.unsqueeze(1), s.reshape(B, T * Q, d), t.reshape(B, C * Q, d)), dim=1)


class Projector(nn.Module):
    """LayerNorm(d) -> Linear(d -> d_llm) -> GELU -> Linear(d_llm -> d_llm), Xavier-uniform weights, zero biases
    (official ``mlp1``). (..., d) -> (..., d_llm)."""

    def __init__(self, d: int, d_llm: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
