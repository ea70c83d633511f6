"""Stages 2-3: NeuroLM, a GPT-2 backbone fed with frozen tokenizer features (reference §4, §5; ckpt §2.2, §4).

The backbone is nanoGPT-style (``layers.Block``) with GPT-2's parameter names, so the official checkpoint
maps by name (``GPT2.*`` -> ``gpt.*``) and Hugging Face GPT-2 weights load by state dict (their Conv1D
weights transposed). Vocabulary (ckpt §2.2): wte has 50304 rows (GPT-2's 50257, then [SEP] = 50257 and
unused rows); lm_head has 50304 + K rows, EEG code k at row 50304 + k; the two are not tied.

EEG inputs are the token batch of ``tokenizer.py`` plus ``n_chans`` (B,) int, channels per sample. Text
ids are int64 GPT-2 BPE ids; ``[SEP]`` = 50257 starts every instruction text, 50256 pads it (reference §5.1).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TEXT_VOCAB, GPTConfig, NeuroLMConfig
from .layers import KV, Block, build_attention_mask
from .tokenizer import VQTokenizer

log = logging.getLogger(__name__)

__all__ = [
    "GPT",
    "NeuroLM",
    "build_attention_mask",
    "build_neurolm",
    "gpt2_text_embeddings",
    "load_gpt2_state",
]


class GPT(nn.Module):
    """nanoGPT GPT-2: ``transformer.{wte, wpe, h, ln_f}`` and an untied ``lm_head`` (ckpt §2.2).

    Init (nanoGPT): Linear and Embedding N(0, 0.02), biases 0, ``c_proj`` weights N(0, 0.02/sqrt(2·n_layer)).
    """

    def __init__(self, cfg: GPTConfig, n_in: int, n_out: int) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.n_embd
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(n_in, d),
                wpe=nn.Embedding(cfg.block_size, d),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList(Block(d, cfg.n_head, cfg.bias, cfg.dropout) for _ in range(cfg.n_layer)),
                ln_f=nn.LayerNorm(d, bias=cfg.bias),
            )
        )
        self.lm_head = nn.Linear(d, n_out, bias=False)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / (2 * cfg.n_layer) ** 0.5)
            elif p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(
        self, emb: Tensor, pos: Tensor, mask: Tensor | None, past: list[KV] | None = None
    ) -> tuple[Tensor, list[KV]]:
        """emb (B, S, d) input embeddings (without positions); pos (B, S) wpe indices (< block_size);
        mask: None (causal), bool (B, 1, S, P+S) or float additive; past: per-layer keys/values of P earlier
        positions. Returns the final-LayerNorm hidden states (B, S, d) and the per-layer keys/values."""
        x = self.transformer.drop(emb + self.transformer.wpe(pos))
        kvs: list[KV] = []
        for i, blk in enumerate(self.transformer.h):
            x, kv = blk(x, mask, None if past is None else past[i])
            kvs.append(kv)
        return self.transformer.ln_f(x), kvs


def load_gpt2_state(source: str | None) -> dict[str, Tensor] | None:
    """GPT-2 weights from a local directory or the Hugging Face cache (``local_files_only=True``, never the
    network), in nanoGPT layout (Conv1D weights transposed to Linear ``(out, in)``) with keys
    ``transformer.*``; the HF lm_head (tied to wte) is dropped. Returns None, with a warning, when
    ``source`` is None or the weights are not available locally."""
    if source is None:
        return None
    from transformers import GPT2LMHeadModel

    try:
        hf = GPT2LMHeadModel.from_pretrained(source, local_files_only=True)
    except OSError as err:
        log.warning(
            "GPT-2 weights %r not found locally (%s): the backbone is randomly initialised", source, err
        )
        return None
    from transformers.pytorch_utils import Conv1D

    out = {}
    for k, v in hf.state_dict().items():
        if not k.startswith("transformer.") or k.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        conv1d = isinstance(hf.get_submodule(k.rsplit(".", 1)[0]), Conv1D)
        out[k] = v.t().contiguous() if conv1d and k.endswith(".weight") else v
    return out


def gpt2_text_embeddings(n_embd: int, source: str | None = "gpt2") -> Tensor:
    """The text side of the stage-1 domain classifier (reference §3.2): GPT-2 small's ``wte`` (50257, 768) from
    the local cache or a directory. When it is unavailable or ``n_embd`` != its width (e.g. ``tiny``), returns
    a random N(0, 0.02) table (50257, n_embd) and logs a warning: the alignment is then only nominal."""
    sd = load_gpt2_state(source)
    if sd is not None and sd["transformer.wte.weight"].shape[1] == n_embd:
        return sd["transformer.wte.weight"].clone()
    if sd is not None:
        log.warning("GPT-2 wte width %d != tokenizer width %d", sd["transformer.wte.weight"].shape[1], n_embd)
    log.warning("using random text embeddings (50257, %d) for the domain classifier", n_embd)
    return torch.randn(TEXT_VOCAB, n_embd) * 0.02


class NeuroLM(nn.Module):
    """GPT-2 with the extended vocabulary, fed with frozen tokenizer features (reference §4.1).

    Submodules (official names, ckpt §2.2): ``gpt`` (``GPT2``), ``tokenizer`` (a frozen, always-eval
    ``VQTokenizer(decoders=False)``; the official file holds only its encoder), ``pos_embed``
    (``Embedding(256, d)`` channel embedding) and ``encode_transform_layer`` (Identity when the GPT is as
    wide as the tokenizer (B), else ``Linear(768, d)`` + GELU (L/XL)).
    The EEG input at (t, c) is ``encode_transform_layer(h) + pos_embed[c] + wpe[t]``; text after the EEG
    takes wpe positions from ``max(time) + 1`` (ckpt §4.4, see ``NeuroLMConfig.text_positions``).
    ``backbone_init`` records where the GPT weights came from (``"random"`` or the GPT-2 source).
    """

    def __init__(self, cfg: NeuroLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.gpt
        self.gpt = GPT(g, cfg.text_vocab_padded, cfg.output_size)
        self.tokenizer = VQTokenizer(cfg.vq, decoders=False)
        self.tokenizer.requires_grad_(False)
        self.pos_embed = nn.Embedding(cfg.vq.n_chan_emb, g.n_embd)
        with torch.no_grad():  # the rows GPT-2 does not have (reference §9.9)
            for w in (self.pos_embed.weight, self.gpt.transformer.wte.weight[TEXT_VOCAB:]):
                w.normal_(std=cfg.new_row_std)
            self.gpt.lm_head.weight[TEXT_VOCAB:].normal_(std=cfg.new_row_std)
        if g.n_embd == cfg.vq.n_embd:
            self.encode_transform_layer: nn.Module = nn.Identity()
        else:
            self.encode_transform_layer = nn.Sequential(nn.Linear(cfg.vq.n_embd, g.n_embd), nn.GELU())
        self.backbone_init = "random"
        self.tokenizer.eval()

    def train(self, mode: bool = True) -> NeuroLM:
        """Like ``nn.Module.train``, but the frozen tokenizer always stays in eval mode."""
        super().train(mode)
        self.tokenizer.eval()
        return self

    # ---------------------------------------------------------------- weights
    @torch.no_grad()
    def load_gpt2(self, source: str | None) -> bool:
        """Copy GPT-2 weights (``load_gpt2_state``) into the backbone; text rows 0..50256 of wte and lm_head
        get GPT-2's wte (reference §4.1), the added rows keep their N(0, ``new_row_std``) init (reference §9.9).
        Returns False (backbone left random, warning logged) when the weights are not available locally.
        Raises ValueError when their shapes do not match ``cfg.gpt``."""
        sd = load_gpt2_state(source)
        if sd is None:
            return False
        own = self.gpt.state_dict()
        wte = sd.pop("transformer.wte.weight")
        for k, v in sd.items():
            if k not in own or own[k].shape != v.shape:
                raise ValueError(
                    f"GPT-2 weight {k} {tuple(v.shape)} does not fit the backbone config {self.cfg.gpt}"
                )
            own[k].copy_(v)
        missing = {
            k for k in own if k.startswith("transformer.h.") or k.startswith("transformer.ln_f")
        } - set(sd)
        if missing or wte.shape != (TEXT_VOCAB, self.cfg.gpt.n_embd):
            raise ValueError(
                f"GPT-2 weights {source!r} do not fit the backbone: missing {sorted(missing)[:3]}"
            )
        self.gpt.transformer.wte.weight[:TEXT_VOCAB] = wte
        self.gpt.lm_head.weight[:TEXT_VOCAB] = wte
        self.backbone_init = str(source)
        return True

    @torch.no_grad()
    def load_tokenizer(self, vq: VQTokenizer) -> None:
        """Copy a trained stage-1 tokenizer's encoder, ``encode_task_layer`` and quantizer into the frozen
        tokenizer. Raises ValueError when its config differs from ``cfg.vq``."""
        if vq.cfg != self.cfg.vq:
            raise ValueError(f"tokenizer config {vq.cfg} != model's {self.cfg.vq}")
        for name in ("encoder", "encode_task_layer", "quantize"):
            getattr(self.tokenizer, name).load_state_dict(getattr(vq, name).state_dict())

    def num_params(self, exclude_wpe: bool = True) -> int:
        """Parameters counted as the official ``get_num_params`` (ckpt §2.4): GPT, tokenizer encoder, channel
        embedding and transform layer, without ``wpe`` by default. The quantizer head, which the official
        NeuroLM does not hold, is left out. B: 254,321,280."""
        mods = [self.gpt, self.tokenizer.encoder, self.pos_embed, self.encode_transform_layer]
        n = sum(p.numel() for m in mods for p in m.parameters())
        return n - (self.gpt.transformer.wpe.weight.numel() if exclude_wpe else 0)

    def num_trainable(self) -> int:
        """Parameters with ``requires_grad`` (the official optimizer's, ckpt §1.4). B: 169,597,440."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---------------------------------------------------------------- pieces
    def eeg_embeddings(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, n_chans: Tensor
    ) -> Tensor:
        """GPT input for the EEG tokens (B, N, d) before wpe: ``encode_transform_layer(h) + pos_embed[chans]``
        with h the frozen tokenizer features, bidirectional or causal per ``cfg.features`` (reference §4.1, §4.4)."""
        with torch.no_grad():
            causal = n_chans if self.cfg.features == "causal" else None
            h = self.tokenizer.encode(x, chans, times, mask, causal_n_chans=causal)
        return self.encode_transform_layer(h) + self.pos_embed(chans)

    def text_start(self, times: Tensor) -> Tensor:
        """(B,) first wpe position of the text after the EEG: max(time) + 1 per sample or per batch."""
        start = times.max(dim=1).values + 1
        return start.max().expand_as(start) if self.cfg.text_positions == "batch" else start

    def logits(self, hidden: Tensor) -> Tensor:
        """lm_head: (..., d) -> (..., 50304 + K); text rows first, EEG code k at 50304 + k."""
        return self.gpt.lm_head(hidden)

    def hidden_states(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        text_ids: Tensor | None = None,
    ) -> Tensor:
        """Final hidden states (B, N + T, d) for EEG (B, N) followed by text ``text_ids`` (B, T) (or EEG
        only), under the stair-step mask (reference §4.1, §5.1). ``logits(hidden)`` gives the outputs."""
        emb, pos = self.eeg_embeddings(x, chans, times, mask, n_chans), times.long()
        T = 0 if text_ids is None else text_ids.shape[1]
        if T:
            start = self.text_start(times)
            emb = torch.cat((emb, self.gpt.transformer.wte(text_ids.long())), dim=1)
            pos = torch.cat((pos, start[:, None] + torch.arange(T, device=pos.device)), dim=1)
        hidden, _ = self.gpt(emb, pos, build_attention_mask(mask, n_chans, T))
        return hidden

    # ---------------------------------------------------------------- stages
    def forward_pretrain(
        self, x: Tensor, chans: Tensor, times: Tensor, mask: Tensor, n_chans: Tensor
    ) -> dict[str, Tensor]:
        """Stage-2 multi-channel autoregression (reference §4.1): token (t, c) predicts the code of (t+1, c).

        Targets come from the frozen tokenizer (bidirectional, ckpt §4.3); the last second and padding are
        ignored. Cross-entropy over all 50304 + K outputs (official) or over the K EEG rows
        (``cfg.eeg_head == "eeg_only"``, reference §9.24). Returns ``loss`` (scalar), ``acc`` (top-1 on the
        targets) and ``n_targets``; loss is 0 (with a graph) when no token has a target.
        """
        codes = self.tokenizer.get_codes(x, chans, times, mask)
        targets = next_second_targets(codes, mask, n_chans)
        hidden = self.hidden_states(x, chans, times, mask, n_chans)
        sel = targets >= 0
        h, tgt = hidden[sel], targets[sel]
        if self.cfg.eeg_head == "eeg_only":
            logits = F.linear(h, self.gpt.lm_head.weight[self.cfg.text_vocab_padded :])
        else:
            logits, tgt = self.logits(h), tgt + self.cfg.text_vocab_padded
        return _ce(logits, tgt, hidden)

    def forward_text(self, idx: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Plain causal LM on text (reference §4.2): idx, targets (B, T) int, -1 = ignored; positions 0..T-1.
        Cross-entropy over all outputs (official). Returns ``loss``, ``acc``, ``n_targets``."""
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device).expand(idx.shape[0], T)
        hidden, _ = self.gpt(self.gpt.transformer.wte(idx.long()), pos, None)
        sel = targets >= 0
        return _ce(self.logits(hidden[sel]), targets[sel].long(), hidden)

    def forward_instruct(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        text_ids: Tensor,
        text_targets: Tensor,
        options: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Stage-3 instruction loss (reference §5.1): EEG (B, N) then ``text_ids`` (B, T) (``[SEP]`` + prompt +
        answer + ``<|endoftext|>``, padded with 50256); ``text_targets`` (B, T) is the next text token at the
        answer positions and -1 elsewhere. Only answer tokens are supervised; cross-entropy over all outputs
        (official). Returns ``loss``, ``acc``, ``n_targets`` and ``answer_margin`` (detached: mean over the
        batch of the first answer token's logit minus the largest other option's, when ``options`` is given).

        ``options`` (B, K) int64 text ids, -1 = unused slot: the first answer token of each class of the
        sample's task. When given, each sample's first supervised position is scored by a cross-entropy over
        those K logits only (the restricted answer-vocabulary loss, ``RunConfig.answer_loss="options"``);
        the later answer tokens keep the full softmax. Raises ValueError when a first answer token is not
        among its sample's options.
        """
        N = x.shape[1]
        hidden = self.hidden_states(x, chans, times, mask, n_chans, text_ids)[:, N:]
        sel = text_targets >= 0
        if options is None:
            return _ce(self.logits(hidden[sel]), text_targets[sel].long(), hidden)
        B = text_ids.shape[0]
        has = sel.any(1)
        first = sel.float().argmax(1)  # (B,) first supervised position
        rows = torch.arange(B, device=hidden.device)
        later = sel.clone()
        later[rows[has], first[has]] = False
        tgt0 = text_targets[rows, first].long()  # (B,)
        opt = options.to(hidden.device).long()
        hit = (opt == tgt0[:, None]) & (opt >= 0)  # (B, K)
        if bool((has & ~hit.any(1)).any()):
            raise ValueError("an answer's first token is not among its task's options")
        lg = self.logits(hidden[rows, first])[:, :TEXT_VOCAB].float().gather(1, opt.clamp(min=0))  # (B, K)
        lg = lg.masked_fill(opt < 0, float("-inf"))
        ce0 = F.cross_entropy(lg[has], hit[has].float().argmax(1), reduction="sum")
        rest = self.logits(hidden[later]).float()
        n = has.sum() + later.sum()
        loss = (ce0 + F.cross_entropy(rest, text_targets[later].long(), reduction="sum")) / n.clamp(min=1)
        with torch.no_grad():
            right = lg.masked_fill(~hit, float("-inf")).max(1).values
            other = lg.masked_fill(hit, float("-inf")).max(1).values
            acc = ((lg.argmax(1) == hit.float().argmax(1)) & has).sum() + (
                rest.argmax(-1) == text_targets[later]
            ).sum()
        return {
            "loss": loss,
            "acc": (acc / n.clamp(min=1)).float(),
            "n_targets": n.float(),
            "answer_margin": (right - other)[has].mean(),
        }

    # ---------------------------------------------------------------- inference
    def _prefix(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        ids: Tensor,
        lens: Tensor,
    ) -> tuple[Tensor, list[KV], Tensor, Tensor]:
        """Run EEG + right-padded prompts once. Returns the hidden state at each prompt's last token (B, d),
        the per-layer keys/values, the key validity (B, N + T) and the next text position (B,)."""
        B, N = mask.shape
        T = ids.shape[1]
        emb = torch.cat(
            (self.eeg_embeddings(x, chans, times, mask, n_chans), self.gpt.transformer.wte(ids)), dim=1
        )
        start = self.text_start(times)
        pos = torch.cat((times.long(), start[:, None] + torch.arange(T, device=ids.device)), dim=1)
        hidden, kvs = self.gpt(emb, pos, build_attention_mask(mask, n_chans, T))
        last = hidden[torch.arange(B, device=ids.device), N + lens - 1]
        key_valid = torch.cat((mask, torch.arange(T, device=ids.device)[None, :] < lens[:, None]), dim=1)
        return last, kvs, key_valid, start + lens

    def _extend(
        self, tokens: Tensor, kvs: list[KV], key_valid: Tensor, start: Tensor
    ) -> tuple[Tensor, list[KV]]:
        """Continue cached sequences with ``tokens`` (B, M) at positions start..start+M-1: each new token sees
        the valid cached keys and the earlier new tokens. Returns hidden (B, M, d) and the grown cache."""
        B, M = tokens.shape
        new = torch.ones(M, M, dtype=torch.bool, device=tokens.device).tril().expand(B, 1, M, M)
        attn = torch.cat((key_valid[:, None, None, :].expand(B, 1, M, -1), new), dim=-1)
        pos = start[:, None] + torch.arange(M, device=tokens.device)
        return self.gpt(self.gpt.transformer.wte(tokens), pos, attn, past=kvs)

    @torch.no_grad()
    def answer_logprobs(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        prompt_ids: Tensor | dict[str, Tensor],
        candidates: list[list[int]],
        prompt_len: Tensor | None = None,
    ) -> Tensor:
        """Log-likelihood of each candidate answer given EEG + prompt (reference §9.10): (B, K) float32.

        Args:
            prompt_ids: (B, T) int, ``[SEP]`` + prompt, right-padded; or a dict ``{"ids": (B, T), "len": (B,)}``.
            candidates: K token-id lists (text ids < 50257), e.g. ``[[" No"], [" Yes"]]`` tokenised.
            prompt_len: (B,) valid prompt lengths; default T (no padding).
        Each entry is the sum over the candidate's tokens of log-softmax over the 50257 text outputs (the
        vocabulary greedy generation uses). ``softmax(dim=1)`` of the result gives class probabilities.
        The EEG + prompt prefix runs once; the candidates reuse its keys/values.
        Raises ValueError for an empty candidate or an id outside the text vocabulary.
        """
        ids, lens = _unpack_prompt(prompt_ids, prompt_len)
        if (
            not candidates
            or any(len(c) == 0 for c in candidates)
            or any(t < 0 or t >= TEXT_VOCAB for c in candidates for t in c)
        ):
            raise ValueError("candidates must be non-empty lists of text token ids < 50257")
        B, K, M = ids.shape[0], len(candidates), max(len(c) for c in candidates)
        cand = torch.full((K, M), TEXT_VOCAB - 1, dtype=torch.long, device=ids.device)
        for k, c in enumerate(candidates):
            cand[k, : len(c)] = torch.tensor(c, device=ids.device)
        clen = torch.tensor([len(c) for c in candidates], device=ids.device)
        last, kvs, key_valid, start = self._prefix(x, chans, times, mask, n_chans, ids, lens)
        out = F.log_softmax(self.logits(last)[:, :TEXT_VOCAB].float(), dim=-1)[:, cand[:, 0]]  # (B, K)
        if M > 1:
            rep = [(k.repeat_interleave(K, 0), v.repeat_interleave(K, 0)) for k, v in kvs]
            hid, _ = self._extend(
                cand[:, :-1].repeat(B, 1),
                rep,
                key_valid.repeat_interleave(K, 0),
                start.repeat_interleave(K, 0),
            )
            lp = F.log_softmax(self.logits(hid)[..., :TEXT_VOCAB].float(), dim=-1)
            tok = lp.gather(-1, cand[:, 1:].repeat(B, 1).unsqueeze(-1)).squeeze(-1)  # (B*K, M-1)
            valid = (torch.arange(1, M, device=ids.device)[None, :] < clen[:, None]).repeat(B, 1)
            out = out + (tok * valid).sum(-1).view(B, K)
        return out

    @torch.no_grad()
    def generate(
        self,
        x: Tensor,
        chans: Tensor,
        times: Tensor,
        mask: Tensor,
        n_chans: Tensor,
        prompt_ids: Tensor | dict[str, Tensor],
        max_new_tokens: int = 5,
        prompt_len: Tensor | None = None,
        faithful_mask: bool = False,
    ) -> Tensor:
        """Greedy generation over the 50257 text outputs (reference §5.3): (B, max_new_tokens) int64.

        ``prompt_ids``/``prompt_len`` as in :meth:`answer_logprobs`. The default keeps the intended mask for
        every step (KV cache). ``faithful_mask=True`` reproduces the official bug (ckpt §4.5): from the second
        generated token on, the mask is a float 0/1 tensor *added* to the scores, so every position sees every
        other; it recomputes the sequence each step and needs unpadded prompts (raises ValueError otherwise).
        """
        ids, lens = _unpack_prompt(prompt_ids, prompt_len)
        B, T = ids.shape
        out = []
        if not faithful_mask:
            last, kvs, key_valid, start = self._prefix(x, chans, times, mask, n_chans, ids, lens)
            for step in range(max_new_tokens):
                tok = self.logits(last)[:, :TEXT_VOCAB].argmax(-1)
                out.append(tok)
                if step + 1 < max_new_tokens:
                    hid, kvs = self._extend(tok[:, None], kvs, key_valid, start)
                    key_valid = torch.cat((key_valid, torch.ones_like(key_valid[:, :1])), dim=1)
                    start, last = start + 1, hid[:, -1]
            return torch.stack(out, dim=1) if out else ids.new_zeros(B, 0)
        if bool((lens != T).any()):
            raise ValueError("faithful_mask generation needs unpadded prompts of one length")
        eeg, N = self.eeg_embeddings(x, chans, times, mask, n_chans), mask.shape[1]
        start = self.text_start(times)
        attn: Tensor = build_attention_mask(mask, n_chans, T)
        for _ in range(max_new_tokens):
            L = ids.shape[1]
            emb = torch.cat((eeg, self.gpt.transformer.wte(ids)), dim=1)
            pos = torch.cat((times.long(), start[:, None] + torch.arange(L, device=ids.device)), dim=1)
            hidden, _ = self.gpt(emb, pos, attn)
            tok = self.logits(hidden[:, -1])[:, :TEXT_VOCAB].argmax(-1)
            out.append(tok)
            ids = torch.cat((ids, tok[:, None]), dim=1)
            S = N + L
            attn = torch.cat((attn.float(), attn.new_zeros(B, 1, S, 1, dtype=torch.float)), dim=-1)
            attn = torch.cat((attn, attn.new_ones(B, 1, 1, S + 1)), dim=-2)
        return torch.stack(out, dim=1) if out else ids.new_zeros(B, 0)


def next_second_targets(codes: Tensor, mask: Tensor, n_chans: Tensor) -> Tensor:
    """Stage-2 targets (reference §4.1, ckpt §4.3): (B, N) int64 with ``Y[b, i] = codes[b, i + C_b]`` where that
    token is valid, else -1 (the last second and padding). codes (B, N), mask (B, N) bool, n_chans (B,)."""
    N = codes.shape[1]
    idx = torch.arange(N, device=codes.device)[None, :] + n_chans.to(codes.device).long()[:, None]
    ok = (idx < mask.sum(1, keepdim=True)) & mask
    return torch.where(ok, codes.gather(1, idx.clamp(max=N - 1)), torch.full_like(codes, -1))


def _ce(logits: Tensor, targets: Tensor, anchor: Tensor) -> dict[str, Tensor]:
    """Mean cross-entropy and top-1 accuracy over the selected (M, V) logits; zero loss (attached to
    ``anchor``'s graph) when M = 0."""
    n = torch.tensor(float(len(targets)), device=anchor.device)
    if len(targets) == 0:
        zero = anchor.sum() * 0.0
        return {"loss": zero, "acc": zero.detach(), "n_targets": n}
    logits = logits.float()
    loss = F.cross_entropy(logits, targets)
    acc = (logits.argmax(-1) == targets).float().mean().detach()
    return {"loss": loss, "acc": acc, "n_targets": n}


def _unpack_prompt(
    prompt_ids: Tensor | dict[str, Tensor], prompt_len: Tensor | None
) -> tuple[Tensor, Tensor]:
    if isinstance(prompt_ids, dict):
        prompt_ids, prompt_len = prompt_ids["ids"], prompt_ids.get("len", prompt_len)
    ids = prompt_ids.long()
    if prompt_len is None:
        lens = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long, device=ids.device)
    else:
        lens = prompt_len.to(ids.device).long()
    if bool((lens < 1).any()) or bool((lens > ids.shape[1]).any()):
        raise ValueError("prompt lengths must be in 1..T")
    return ids, lens


def build_neurolm(
    cfg: NeuroLMConfig, tokenizer: VQTokenizer | None = None, load_gpt2: bool = True
) -> NeuroLM:
    """A NeuroLM for training: random init, then GPT-2 weights from ``cfg.gpt.init_from`` when
    ``load_gpt2`` and they are available locally (else a warning and random init; ``model.backbone_init``
    says which), then the trained stage-1 ``tokenizer`` copied in (frozen)."""
    model = NeuroLM(cfg)
    if load_gpt2 and cfg.gpt.init_from is not None:
        model.load_gpt2(cfg.gpt.init_from)
    elif cfg.gpt.init_from is None:
        log.warning(
            "config %s has no GPT-2 weights (init_from=None): the backbone is randomly initialised", cfg.name
        )
    if tokenizer is not None:
        model.load_tokenizer(tokenizer)
    return model
