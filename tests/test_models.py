"""Models of issue 3: shapes, the stair-step mask, causality, padding invariance, k-means, parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from neurolm_train.models import (
    GPTConfig,
    NeuroLM,
    NeuroLMConfig,
    VQConfig,
    VQTokenizer,
    build_attention_mask,
    build_neurolm,
    model_config,
    next_second_targets,
)
from neurolm_train.models.tokenizer import grad_reverse, reconstruction_targets

torch.set_num_threads(1)
PAD = 136


def make_batch(n_chans: list[int], n_secs: list[int], N: int, seed: int = 0, pad_noise: bool = False):
    """Time-major token batch (docs/architecture.md); padding after the valid tokens."""
    g = torch.Generator().manual_seed(seed)
    B = len(n_chans)
    x = torch.randn(B, N, 200, generator=g)
    chans = torch.full((B, N), PAD)
    times = torch.zeros(B, N, dtype=torch.long)
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b, (c, s) in enumerate(zip(n_chans, n_secs, strict=True)):
        n = c * s
        mask[b, :n] = True
        chans[b, :n] = torch.arange(n) % c + 3 * b
        times[b, :n] = torch.arange(n) // c
    if pad_noise:
        x = torch.where(mask[..., None], x, 50 * torch.randn(B, N, 200, generator=g))
    else:
        x = x * mask[..., None]
    return x, chans, times, mask, torch.tensor(n_chans)


def repad(batch, N: int, pad_noise: bool = True):
    """The same windows padded to N tokens, with garbage patches at the padding when ``pad_noise``."""
    x, chans, times, mask, nch = batch
    B, N0 = mask.shape
    g = torch.Generator().manual_seed(99)
    x2 = 50 * torch.randn(B, N, 200, generator=g) if pad_noise else torch.zeros(B, N, 200)
    x2[:, :N0] = torch.where(mask[..., None], x, x2[:, :N0])
    c2 = torch.full((B, N), PAD)
    t2 = torch.zeros(B, N, dtype=torch.long)
    m2 = torch.zeros(B, N, dtype=torch.bool)
    c2[:, :N0], t2[:, :N0], m2[:, :N0] = chans, times, mask
    return x2, c2, t2, m2, nch


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = model_config("tiny")
    tok = VQTokenizer(cfg.vq)
    tok.train()
    # k-means init on more vectors (608) than codes (512): no duplicate codebook rows, whose exact ties
    # would let the chosen index depend on the padded length
    tok(*make_batch([19, 19], [16, 16], 304)[:4])
    tok.eval()
    return cfg, tok, build_neurolm(cfg, tok)


def test_configs_json_roundtrip():
    for name in ("tiny", "B", "L", "XL"):
        cfg = model_config(name)
        back = NeuroLMConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg and back.name == name
    assert model_config("B", features="causal").features == "causal"
    with pytest.raises(KeyError):
        model_config("XXL")
    with pytest.raises(ValueError):
        NeuroLMConfig(n_eeg_codes=10)


def test_tiny_shapes(tiny):
    cfg, tok, model = tiny
    x, chans, times, mask, nch = make_batch([4, 3, 2], [5, 4, 3], 24)
    B, N = mask.shape
    tok.train()
    out = tok(x, chans, times, mask, text_embeds=torch.randn(2, 7, cfg.vq.n_embd), alpha=0.3)
    tok.eval()
    for k in ("loss", "commit", "rec_freq", "rec_raw", "domain_eeg", "domain_text", "used_codes"):
        assert out[k].shape == () and torch.isfinite(out[k]), k
    assert out["codes"].shape == (B, N) and (out["codes"][~mask] == -1).all()
    assert tok.encode(x, chans, times, mask).shape == (B, N, cfg.vq.n_embd)
    codes = tok.get_codes(x, chans, times, mask)
    assert codes.dtype == torch.int64 and (codes[~mask] == -1).all() and (codes[mask] >= 0).all()
    assert (codes[mask] < cfg.vq.n_codes).all()
    T = 6
    ids = torch.randint(0, 50257, (B, T))
    assert model.hidden_states(x, chans, times, mask, nch, ids).shape == (B, N + T, cfg.gpt.n_embd)
    assert model.logits(torch.zeros(1, cfg.gpt.n_embd)).shape == (1, 50304 + 512)
    tgt = ids.clone()
    tgt[:, :3] = -1
    for r in (
        model.forward_pretrain(x, chans, times, mask, nch),
        model.forward_text(ids, ids),
        model.forward_instruct(x, chans, times, mask, nch, ids, tgt),
    ):
        assert torch.isfinite(r["loss"]) and 0 <= r["acc"] <= 1
    assert model.answer_logprobs(x, chans, times, mask, nch, ids, [[5], [6, 7]]).shape == (B, 2)
    gen = model.generate(x, chans, times, mask, nch, {"ids": ids, "len": torch.tensor([6, 4, 5])}, 3)
    assert gen.shape == (B, 3) and gen.dtype == torch.int64 and (gen < 50257).all()


def _official_mask(n_valid: int, C: int, N: int, n_text: int) -> torch.Tensor:
    """The spec's per-sample construction (§4.1, §5.1): tril, full within-second blocks over the EEG part,
    columns of padded EEG positions zeroed."""
    S = N + n_text
    m = torch.ones(S, S).tril()
    for t in range(n_valid // C):
        m[t * C : (t + 1) * C, t * C : (t + 1) * C] = 1
    m[:, n_valid:N] = 0
    return m.bool()


@pytest.mark.parametrize("n_text", [0, 5])
def test_mask_is_the_stair_step(n_text):
    n_chans, n_secs, N = [3, 4, 1, 5, 2], [4, 2, 7, 1, 3], 16
    _, _, _, mask, nch = make_batch(n_chans, n_secs, N)
    got = build_attention_mask(mask, nch, n_text)
    assert got.shape == (5, 1, N + n_text, N + n_text) and got.dtype == torch.bool
    for b, (c, s) in enumerate(zip(n_chans, n_secs, strict=True)):
        assert torch.equal(got[b, 0], _official_mask(c * s, c, N, n_text)), (b, c, s)


def test_next_second_targets():
    codes = torch.tensor([[10, 11, 12, 13, 14, 15, -1, -1], [20, 21, 22, 23, 24, 25, 26, 27]])
    mask = codes >= 0
    got = next_second_targets(codes, mask, torch.tensor([2, 4]))
    assert got.tolist() == [[12, 13, 14, 15, -1, -1, -1, -1], [24, 25, 26, 27, -1, -1, -1, -1]]


def test_causal_features_cannot_see_the_future(tiny):
    cfg, tok, _ = tiny
    x, chans, times, mask, nch = make_batch([3, 4], [5, 4], 20)
    t = 2
    later = times > t
    x2 = torch.where((later & mask)[..., None], x + 3 * torch.randn_like(x), x)
    early = (times <= t) & mask
    for features, expect_equal in (("causal", True), ("bidirectional", False)):
        model = build_neurolm(NeuroLMConfig(**{**cfg.to_dict(), "features": features}), tok)
        model.eval()
        h1 = model.hidden_states(x, chans, times, mask, nch)
        h2 = model.hidden_states(x2, chans, times, mask, nch)
        same = torch.allclose(h1[early], h2[early], atol=1e-5)
        assert same == expect_equal, features
    causal = tok.encode(x, chans, times, mask, causal_n_chans=nch)
    assert torch.allclose(
        causal[early], tok.encode(x2, chans, times, mask, causal_n_chans=nch)[early], atol=1e-5
    )


def test_padding_does_not_change_valid_outputs(tiny):
    cfg, tok, model = tiny
    a = make_batch([3, 4], [5, 2], 15)
    b = repad(a, 26)
    mask = a[3]
    for causal in (None, a[4]):
        ha, hb = tok.encode(*a[:4], causal_n_chans=causal), tok.encode(*b[:4], causal_n_chans=causal)
        assert torch.allclose(ha[mask], hb[:, :15][mask], atol=1e-5)
    assert torch.equal(tok.get_codes(*a[:4])[mask], tok.get_codes(*b[:4])[:, :15][mask])
    la, lb = tok(*a[:4]), tok(*b[:4])
    for k in ("commit", "rec_freq", "rec_raw"):  # no text: no domain terms
        assert torch.allclose(la[k], lb[k], atol=1e-5), k
    ids = torch.randint(0, 50257, (2, 4))
    ta = model.hidden_states(*a, ids)
    tb = model.hidden_states(*b, ids)
    assert torch.allclose(ta[:, :15][mask], tb[:, :15][mask], atol=1e-5)
    assert torch.allclose(ta[:, 15:], tb[:, 26:], atol=1e-5)
    pa, pb = model.forward_pretrain(*a), model.forward_pretrain(*b)
    assert torch.allclose(pa["loss"], pb["loss"], atol=1e-5) and pa["n_targets"] == pb["n_targets"]


def test_kmeans_and_ema_ignore_padding():
    cfg = VQConfig(n_embd=32, n_layer=1, n_head=2, decoder_layers=1, code_dim=16, n_codes=8, domain_hidden=8)
    torch.manual_seed(1)
    base = VQTokenizer(cfg)
    a = make_batch([3, 4], [4, 3], 12)
    b = repad(a, 30)
    books = []
    for batch in (a, b):
        tok = VQTokenizer(cfg)
        tok.load_state_dict(base.state_dict())
        tok.train()
        torch.manual_seed(7)
        tok(*batch[:4])  # k-means init on the valid tokens, then one EMA update
        assert tok.quantize.init_counts.sum() == a[3].sum()
        tok(*batch[:4])  # a second EMA update
        books.append((tok.quantize.codebook.clone(), tok.quantize.cluster_size.clone()))
    assert torch.allclose(books[0][0], books[1][0], atol=1e-6)
    assert torch.allclose(books[0][1], books[1][1], atol=1e-6)
    assert torch.allclose(books[0][0].norm(dim=1), torch.ones(cfg.n_codes), atol=1e-5)


def test_reconstruction_targets_zscored_on_valid_tokens():
    x, _, _, mask, _ = make_batch([3, 2], [4, 2], 14, pad_noise=True)
    freq, raw = reconstruction_targets(x, mask)
    assert freq.shape == (2, 14, 100) and raw.shape == (2, 14, 200)
    for b in range(2):
        v = raw[b][mask[b]]
        assert abs(v.mean()) < 1e-5 and abs(v.std() - 1) < 1e-4
        assert (raw[b][~mask[b]] == 0).all() and (freq[b][~mask[b]] == 0).all()
    amp = torch.fft.fft(x[0][mask[0]], dim=-1).abs()
    assert torch.allclose(freq[0][mask[0]], ((amp - amp.mean()) / amp.std())[:, :100], atol=1e-5)


def test_gradient_reversal():
    h = torch.randn(5, 3, requires_grad=True)
    grad_reverse(h, 0.4).sum().backward()
    assert torch.allclose(h.grad, torch.full((5, 3), -0.4))


def test_tokenizer_frozen_inside_neurolm(tiny):
    _, _, model = tiny
    model.train()
    assert not model.tokenizer.training and model.gpt.training
    before = model.tokenizer.quantize.codebook.clone()
    model.zero_grad()
    model.forward_pretrain(*make_batch([3], [4], 12)).__getitem__("loss").backward()
    assert all(p.grad is None for p in model.tokenizer.parameters())
    assert model.pos_embed.weight.grad is not None and model.gpt.lm_head.weight.grad is not None
    assert torch.equal(before, model.tokenizer.quantize.codebook)
    model.eval()


@pytest.mark.parametrize("head", ["full", "eeg_only"])
def test_pretrain_loss_and_text_positions(tiny, head):
    """EEG code k is output row 50304 + k; the CE runs over all rows (official) or the EEG rows (§9.24)."""
    cfg, tok, _ = tiny
    batch = make_batch([3, 2], [4, 6], 14)
    model = build_neurolm(NeuroLMConfig(**{**cfg.to_dict(), "eeg_head": head}), tok)
    model.eval()
    tgt = next_second_targets(tok.get_codes(*batch[:4]), batch[3], batch[4])
    h = model.hidden_states(*batch)[tgt >= 0]
    w = model.gpt.lm_head.weight
    if head == "full":
        ref = F.cross_entropy(h @ w.t(), tgt[tgt >= 0] + 50304)
    else:
        ref = F.cross_entropy(h @ w[50304:].t(), tgt[tgt >= 0])
    assert torch.allclose(model.forward_pretrain(*batch)["loss"], ref, atol=1e-5)
    assert model.text_start(batch[2]).tolist() == [4, 6]
    model.cfg.text_positions = "batch"
    assert model.text_start(batch[2]).tolist() == [6, 6]


def test_answer_logprobs_and_generate_match_full_recompute(tiny):
    _, _, model = tiny
    batch = make_batch([3, 4, 2], [4, 2, 5], 14, seed=3)
    T = 6
    ids = torch.randint(0, 50257, (3, T))
    lens = torch.tensor([6, 3, 5])
    cands = [[11], [12, 13], [14, 15, 16]]
    got = model.answer_logprobs(*batch, ids, cands, prompt_len=lens)
    gen = model.generate(*batch, {"ids": ids, "len": lens}, max_new_tokens=4)
    for b in range(3):
        one = tuple(t[b : b + 1] for t in batch)
        prompt = ids[b, : lens[b]].tolist()
        for k, c in enumerate(cands):
            seq = torch.tensor([prompt + c])
            logits = model.logits(model.hidden_states(*one, seq))[0, 14:, :50257]
            lp = F.log_softmax(logits, -1)
            ref = sum(lp[len(prompt) - 1 + j, t] for j, t in enumerate(c))
            assert torch.allclose(got[b, k], ref, atol=1e-4), (b, k)
        seq = list(prompt)
        for _ in range(4):
            logits = model.logits(model.hidden_states(*one, torch.tensor([seq])))[0, -1, :50257]
            seq.append(int(logits.argmax()))
        assert gen[b].tolist() == seq[len(prompt) :]


def test_faithful_generation_mask(tiny):
    _, _, model = tiny
    batch = make_batch([3, 4], [4, 2], 14, seed=5)
    ids = torch.randint(0, 50257, (2, 5))
    correct = model.generate(*batch, ids, 3)
    faithful = model.generate(*batch, ids, 3, faithful_mask=True)
    assert torch.equal(correct[:, 0], faithful[:, 0])  # the first token has the intended mask
    # the second token: the official float mask (allowed 1, disallowed 0, new column 0, new row 1) is
    # *added* to the scores, so every position attends to every other
    x, chans, times, mask, nch = batch
    seq = torch.cat((ids, faithful[:, :1]), dim=1)
    emb = torch.cat((model.eeg_embeddings(*batch), model.gpt.transformer.wte(seq)), dim=1)
    pos = torch.cat((times, model.text_start(times)[:, None] + torch.arange(6)), dim=1)
    m = build_attention_mask(mask, nch, 5).float()
    m = torch.cat((torch.cat((m, torch.zeros(2, 1, 19, 1)), -1), torch.ones(2, 1, 1, 20)), -2)
    hidden, _ = model.gpt(emb, pos, m)
    assert torch.equal(model.logits(hidden[:, -1])[:, :50257].argmax(-1), faithful[:, 1])
    with pytest.raises(ValueError):
        model.generate(*batch, ids, 2, prompt_len=torch.tensor([5, 3]), faithful_mask=True)
    with pytest.raises(ValueError):
        model.answer_logprobs(*batch, ids, [[50300]])


def test_uninitialised_codebook_refuses():
    tok = VQTokenizer(model_config("tiny").vq).eval()
    with pytest.raises(RuntimeError, match="not initialised"):
        tok.get_codes(*make_batch([2], [2], 4)[:4])


def test_parameter_counts_match_the_spec():
    """Issue 3 acceptance 5 (spec §4.1, ckpt §2.4), on the meta device: no weights are downloaded."""
    expected = {  # get_num_params (no wpe), trainable, state-dict elements of the official layout
        "B": (254_321_280, 169_597_440, 255_107_712),
        "L": (500_282_496, 415_820_800, 501_331_072),
        "XL": (1_736_791_872, 1_652_920_000, 1_738_430_272),
    }
    for name, (total, trainable, elements) in expected.items():
        with torch.device("meta"):
            model = NeuroLM(model_config(name))
        assert model.num_params() == total, name
        assert model.num_trainable() == trainable, name
        assert sum(p.numel() for p in model.tokenizer.encoder.parameters()) == 85_510_272
        official = {
            k: v for k, v in model.state_dict().items() if not k.startswith("tokenizer.") or ".encoder." in k
        }
        assert sum(v.numel() for v in official.values()) == elements, name
    with torch.device("meta"):
        vq = VQTokenizer(VQConfig())
    assert sum(p.numel() for p in vq.parameters() if p.requires_grad) == 145_136_686  # ckpt §1.4


def test_patch_norm_modes():
    """Official GroupNorm statistics span all N tokens (padding included); "valid" matches them on an
    unpadded window and ignores padding otherwise."""
    torch.manual_seed(2)
    cfg = VQConfig(
        n_embd=32, n_layer=1, n_head=2, decoder_layers=1, code_dim=16, n_codes=8, patch_norm="sample"
    )
    official = VQTokenizer(cfg).eval()
    valid = VQTokenizer(VQConfig(**{**cfg.__dict__, "patch_norm": "valid"})).eval()
    valid.load_state_dict(official.state_dict())
    full = make_batch([3], [4], 12)
    padded = repad(full, 30, pad_noise=False)
    assert torch.allclose(official.encode(*full[:4]), valid.encode(*full[:4]), atol=1e-5)
    m = full[3]
    assert torch.allclose(valid.encode(*padded[:4])[:, :12][m], valid.encode(*full[:4])[m], atol=1e-5)
    assert not torch.allclose(
        official.encode(*padded[:4])[:, :12][m], official.encode(*full[:4])[m], atol=1e-3
    )


def test_gpt2_weights_load_from_a_local_directory(tmp_path, caplog):
    """Hugging Face GPT-2 weights (Conv1D layout) load by state dict: the backbone then computes what
    GPT2LMHeadModel computes on text (exact GELU, as the official code uses)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    hf = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, activation_function="gelu")).eval()
    hf.save_pretrained(tmp_path)
    cfg = NeuroLMConfig(
        gpt=GPTConfig(n_layer=2, n_head=4, n_embd=64, init_from=str(tmp_path)),
        vq=VQConfig(n_embd=32, n_layer=1, n_head=2, decoder_layers=1, code_dim=16, n_codes=8),
        n_eeg_codes=8,
    )
    model = build_neurolm(cfg).eval()
    assert model.backbone_init == str(tmp_path)
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        ref = hf(ids).logits
        hidden, _ = model.gpt(model.gpt.transformer.wte(ids), torch.arange(9).expand(2, 9), None)
    assert torch.allclose(model.logits(hidden)[..., :50257], ref, atol=1e-4)
    assert model.gpt.transformer.wte.weight[50257:].std() < 0.05  # added rows: N(0, 0.02), spec §9.9
    missing = NeuroLMConfig(
        **{**cfg.to_dict(), "gpt": {**cfg.gpt.__dict__, "init_from": str(tmp_path / "none")}}
    )
    with caplog.at_level("WARNING"):
        assert build_neurolm(missing).backbone_init == "random"
    assert "randomly initialised" in caplog.text
    wrong = NeuroLMConfig(**{**cfg.to_dict(), "gpt": {**cfg.gpt.__dict__, "n_embd": 128}})
    with pytest.raises(ValueError, match="does not fit"):
        build_neurolm(wrong)


def _ddp_worker(rank: int, path: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    torch.manual_seed(0)
    cfg = VQConfig(n_embd=32, n_layer=1, n_head=2, decoder_layers=1, code_dim=16, n_codes=8, domain_hidden=8)
    tok = VQTokenizer(cfg).train()
    torch.manual_seed(10 + rank)  # different k-means draws per rank
    for step in range(2):
        tok(*make_batch([3, 2], [4, 5], 12, seed=rank * 10 + step)[:4])  # different data per rank
    torch.save({k: v for k, v in tok.quantize.state_dict().items()}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_codebook_stays_identical_across_ddp_ranks(tmp_path):
    """k-means init is broadcast from rank 0 and the EMA statistics are all-reduced (spec §3.2)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "rdv"), str(tmp_path / "q")), nprocs=2)
    a, b = torch.load(tmp_path / "q.0"), torch.load(tmp_path / "q.1")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert a["initted"].item() == 1.0 and a["cluster_size"].sum() > 0


# ---------------------------------------------------------------- dead-code restart (tiny deviation)
def _drifted_usage(dead_code_steps: int, steps: int = 30) -> int:
    """Codes used in the last step of a quantizer whose k-means init saw one cluster and whose later inputs
    come from another (the encoder moved): the codes at the near edge take every vector (collapse)."""
    from neurolm_train.models.tokenizer import NormEMAQuantizer, l2norm

    torch.manual_seed(0)
    q = NormEMAQuantizer(64, 8, decay=0.99, dead_code_steps=dead_code_steps).train()
    a, b = torch.zeros(8), torch.zeros(8)
    a[0], b[1] = 1.0, 1.0
    mask = torch.ones(1, 512, dtype=torch.bool)
    q(l2norm(a + 0.1 * torch.randn(1, 512, 8)), mask)  # k-means init on cluster a
    for _ in range(steps):
        _, codes, _ = q(l2norm(b + 0.3 * torch.randn(1, 512, 8)), mask)
    return int(codes.unique().numel())


def test_dead_code_restart_keeps_the_codebook_in_use():
    off, on = _drifted_usage(0), _drifted_usage(5)
    assert off <= 24, off  # without restart most codes stay stranded at the old cluster
    assert on >= 48, on  # with it the stranded codes are re-seeded on the new inputs


def test_dead_code_restart_config_and_state_dict():
    assert model_config("tiny").vq.dead_code_steps > 0 and model_config("tiny").vq.embed_std == 0.02
    for name in ("B", "L", "XL"):  # official: unused codes keep their weights, embeddings N(0, 1)
        assert model_config(name).vq.dead_code_steps == 0 and model_config(name).vq.embed_std is None
    cfg = VQConfig(
        n_embd=32,
        n_layer=1,
        n_head=2,
        decoder_layers=1,
        code_dim=16,
        n_codes=8,
        domain_hidden=8,
        dead_code_steps=3,
    )
    tok = VQTokenizer(cfg)
    sd = {k: v for k, v in tok.state_dict().items() if k != "quantize.unused_steps"}  # an older checkpoint
    VQTokenizer(cfg).load_state_dict(sd)  # strict: the missing counters load as zeros
    with pytest.raises(ValueError):
        VQConfig(dead_code_steps=-1)


def _ddp_restart_worker(rank: int, path: str, out: str) -> None:
    import torch.distributed as dist

    from neurolm_train.models.tokenizer import NormEMAQuantizer, l2norm

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    torch.manual_seed(0)
    q = NormEMAQuantizer(32, 8, dead_code_steps=1).train()
    torch.manual_seed(10 + rank)  # different draws and data per rank
    mask = torch.ones(1, 40, dtype=torch.bool)
    for _ in range(4):
        q(l2norm(torch.randn(1, 40, 8) + 3.0 * rank), mask)
    torch.save(dict(q.state_dict()), f"{out}.{rank}")
    dist.destroy_process_group()


def test_dead_code_restart_identical_across_ddp_ranks(tmp_path):
    """Dead codes are chosen from all-reduced usage and re-seeded with rank 0's draw (broadcast)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_restart_worker, args=(str(tmp_path / "rdv"), str(tmp_path / "q")), nprocs=2)
    a, b = torch.load(tmp_path / "q.0"), torch.load(tmp_path / "q.1")
    for k in a:
        assert torch.equal(a[k], b[k]), k
