"""UniMind: LaBraM encoder -> task-aware query selection -> neuro-language connector -> projector -> LM.

Source: UniMind (Lu, Song et al., arXiv 2506.18962; code github.com/kaleidoyao/UniMind,
``modeling_internvl_chat.py`` with ``resample_method = ctqformer_v2_2router_merge``).

EEG inputs are the project's token batches (docs/architecture.md "Token batches"): ``x`` (B, N, 200) in units
of 100 µV, ``chans``/``times`` (B, N) int64, ``mask`` (B, N) bool, ``n_chans`` (B,) int64, tokens time-major.
Every sample of a batch must have the same C channels and T seconds (UniMind batches hold one dataset; the
released model reads the channel names from the batch's first sample). ``task`` (B,) int64 is the row of the
per-task static queries (the index of the task in ``cfg.tasks``).

Text: ``ids`` (B, S) int64 GPT-2 BPE with ``eeg_pos`` (B, S) bool marking M = ``cfg.n_eeg_tokens(C, T)``
placeholder positions per row, which the projected EEG tokens overwrite (the released code writes them over
``<IMG_CONTEXT>`` embeddings); the ids there are ignored. ``targets`` (B, S) int64: the next token where
supervised, -1 elsewhere (answer tokens only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..labram.config import LaBraMConfig
from ..labram.model import NeuralTransformer
from .config import UniMindConfig
from .connector import NeuroLanguageConnector, Projector, QuerySelector
from .lm import build_lm


class LaBraMEncoder(nn.Module):
    """The encoder interface UniMind reads: ``forward(x, chans, times, mask, n_chans)`` -> ``cls`` (B, d_c) and
    ``grid`` (B, C, T, d_c), the patch features by (channel, second).

    The LaBraM backbone (``NeuralTransformer``, final ``fc_norm``), then the UniMind head Linear(d -> d_c) on every
    token, CLS included (official ``labram_encoder_fin.py``). ``backbone`` may be given (e.g. read from
    ``labram-base.pth`` by ``labram.official.backbone_from_official``).
    """

    def __init__(
        self,
        cfg: LaBraMConfig,
        d_c: int,
        drop_path: float = 0.0,
        head_init_scale: float = 1.0,
        backbone: NeuralTransformer | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else NeuralTransformer(cfg, drop_path=drop_path)
        self.head = nn.Linear(cfg.embed_dim, d_c)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)

    def forward(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, n_chans: Tensor
    ) -> tuple[Tensor, Tensor]:
        B, N = mask.shape
        C = int(n_chans[0])
        n_valid = mask.sum(1)
        if bool((n_chans != C).any()) or bool((n_valid != n_valid[0]).any()) or int(n_valid[0]) % C:
            raise ValueError(
                "UniMind batches need one window shape: every sample the same channels and seconds "
                f"(got n_chans {n_chans.tolist()}, tokens {n_valid.tolist()})"
            )
        T = int(n_valid[0]) // C
        h = self.backbone.forward_features(x, chans, times, mask)  # (B, 1+N, d)
        h = self.head(self.backbone.fc_norm(h[:, : 1 + C * T]))  # (B, 1+C T, d_c)
        grid = h[:, 1:].reshape(B, T, C, -1).transpose(1, 2)  # (B, C, T, d_c): time-major tokens -> (c, t)
        return h[:, 0], grid


class UniMind(nn.Module):
    """The whole model (see the module docstring). ``encoder`` and ``lm`` may be given; otherwise they are
    built from ``cfg`` (``build_lm``; LaBraM from ``cfg.encoder``, or ``cfg.encoder_init``)."""

    def __init__(
        self, cfg: UniMindConfig, encoder: nn.Module | None = None, lm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        if encoder is None:
            backbone = None
            if cfg.encoder_init:
                from ..labram.official import backbone_from_official

                backbone, _ = backbone_from_official(cfg.encoder_init, cfg.encoder, 0, cfg.encoder_drop_path)
            encoder = LaBraMEncoder(
                cfg.encoder, cfg.d_c, cfg.encoder_drop_path, cfg.head_init_scale, backbone
            )
        self.encoder = encoder
        self.selector = QuerySelector(
            cfg.d_c, cfg.pool_size, cfg.top_k, max(1, len(cfg.tasks)), cfg.selection, cfg.gumbel_tau
        )
        self.connector = NeuroLanguageConnector(cfg.d_c, cfg.n_heads, cfg.query_pairing)
        self.lm = lm if lm is not None else build_lm(cfg)
        self.projector = Projector(cfg.d_c, self.lm.d_model)
        if cfg.freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> UniMind:
        super().train(mode)
        if self.cfg.freeze_encoder:  # a frozen encoder runs without drop path
            self.encoder.eval()
        return self

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---------------------------------------------------------------------------------------------- EEG side
    def connector_tokens(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, n_chans: Tensor, task: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Connector output (B, 1 + Q T + Q C, d_c) before the projector, and the selector's scores and picks."""
        cls, grid = self.encoder(x, chans, times, mask, n_chans)  # (B, d_c), (B, C, T, d_c)
        B, C, T, d = grid.shape
        tokens = torch.cat(
            (cls.unsqueeze(1), grid.transpose(1, 2).reshape(B, T * C, d)), dim=1
        )  # (B, 1+TC, d)
        q_c, q_t, info = self.selector(tokens, task)
        return self.connector(cls, grid, q_c, q_t), info

    def eeg_tokens(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, n_chans: Tensor, task: Tensor
    ) -> Tensor:
        """Projected EEG tokens (B, M, d_model), M = 1 + Q T + Q C."""
        return self.projector(self.connector_tokens(x, chans, times, mask, n_chans, task)[0])

    def splice(self, ids: Tensor, eeg_pos: Tensor, eeg: Tensor) -> Tensor:
        """Text embeddings (B, S, d_model) with the EEG tokens (B, M, d_model) written at ``eeg_pos`` (B, S).
        Raises ValueError when a row does not hold exactly M placeholder positions."""
        per_row = eeg_pos.sum(1)
        if bool((per_row != eeg.shape[1]).any()):
            raise ValueError(
                f"{eeg.shape[1]} EEG tokens per sample but placeholders per row {per_row.tolist()}"
            )
        emb = self.lm.embed(ids)  # (B, S, d_model)
        return emb.masked_scatter(eeg_pos.unsqueeze(-1), eeg.to(emb.dtype))

    # -------------------------------------------------------------------------------------------- training
    def forward(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        task: Tensor,
        ids: Tensor,
        eeg_pos: Tensor,
        targets: Tensor,
    ) -> dict[str, Tensor]:
        """Causal-LM cross-entropy on the supervised (answer) positions: ``loss`` (mean over them), ``acc``
        (next-token accuracy there, detached), ``n_targets``."""
        emb = self.splice(ids, eeg_pos, self.eeg_tokens(x, chans, times, mask, n_chans, task))
        sup = (targets >= 0).any(0).nonzero()
        first = int(sup[0]) if len(sup) else targets.shape[1] - 1
        logits = self.lm(
            emb, keep=targets.shape[1] - first
        )  # (B, S - first, V): from the first supervised position
        targets = targets[:, first:]
        sel = targets >= 0
        lg = logits[sel].float()  # (n, V)
        tg = targets[sel]
        loss = F.cross_entropy(lg, tg)
        return {
            "loss": loss,
            "acc": (lg.argmax(-1) == tg).float().mean().detach(),
            "n_targets": sel.sum().detach().float(),
        }

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def answer_logprobs(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        task: Tensor,
        prefix: Tensor,
        eeg_pos: Tensor,
        candidates: list[list[int]],
    ) -> Tensor:
        """Summed token log-likelihood of each candidate answer after the prefix: (B, K) float32.

        ``prefix`` (B, P) ids and ``eeg_pos`` (B, P) placeholders (no padding: every row of a one-task batch has
        the same prefix); ``candidates``: K lists of token ids (each answer with its terminator). Candidate k's
        score is ``sum_j log softmax(logits at P - 1 + j)[cand_k[j]]`` over the LM's whole vocabulary, so
        ``softmax(dim=1)`` of the result gives class probabilities.
        """
        B, P = prefix.shape
        K = len(candidates)
        L = max(len(c) for c in candidates)
        emb = self.splice(prefix, eeg_pos, self.eeg_tokens(x, chans, times, mask, n_chans, task))  # (B, P, d)
        cand = torch.zeros(K, L, dtype=torch.long, device=prefix.device)
        valid = torch.zeros(K, L, dtype=torch.bool, device=prefix.device)
        for k, c in enumerate(candidates):
            cand[k, : len(c)] = torch.tensor(c, dtype=torch.long)
            valid[k, : len(c)] = True
        cand_emb = self.lm.embed(cand)  # (K, L, d)
        seq = torch.cat(
            (emb.unsqueeze(1).expand(B, K, P, -1), cand_emb.unsqueeze(0).expand(B, K, L, -1)), dim=2
        )
        logits = self.lm(seq.reshape(B * K, P + L, -1), keep=L + 1)[
            :, :L
        ].float()  # (B K, L, V) at P-1 .. P+L-2
        lp = logits.log_softmax(-1).gather(-1, cand.repeat(B, 1).unsqueeze(-1)).squeeze(-1)  # (B K, L)
        return (lp * valid.repeat(B, 1)).sum(-1).view(B, K)

    @torch.no_grad()
    def beam_search(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        task: Tensor,
        prefix: Tensor,
        eeg_pos: Tensor,
        num_beams: int = 5,
        max_new_tokens: int = 10,
        eos: int = 50256,
    ) -> list[list[int]]:
        """The released evaluation's decoding: beam search (``num_beams`` 5, ``max_new_tokens`` 10, no sampling;
        a beam ends at ``eos``; the final choice is the best summed log-probability, with no length penalty
        on finished beams). Returns per sample the generated ids (without ``eos``)."""
        emb = self.splice(prefix, eeg_pos, self.eeg_tokens(x, chans, times, mask, n_chans, task))  # (B, P, d)
        out = []
        for b in range(emb.shape[0]):
            beams: list[tuple[float, list[int]]] = [(0.0, [])]
            done: list[tuple[float, list[int]]] = []
            for _ in range(max_new_tokens):
                seqs = [
                    torch.cat((emb[b], self.lm.embed(torch.tensor(t, dtype=torch.long, device=emb.device))))
                    for _, t in beams
                ]
                lp = self.lm(torch.stack(seqs), keep=1)[:, -1].float().log_softmax(-1)  # (n_beams, V)
                cand = []
                for (s, t), row in zip(beams, lp, strict=True):
                    v, i = row.topk(num_beams)
                    cand += [(s + float(vv), t + [int(ii)]) for vv, ii in zip(v, i, strict=True)]
                cand.sort(key=lambda c: -c[0])
                beams = []
                for s, t in cand:
                    (done if t[-1] == eos else beams).append((s, t))
                    if len(beams) == num_beams:
                        break
                if not beams or (done and max(d[0] for d in done) >= beams[0][0]):
                    break
            best = max(done + beams, key=lambda c: c[0])[1]
            out.append([t for t in best if t != eos])
        return out
