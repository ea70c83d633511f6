"""Issue 6: official checkpoint layout, export/load round trips, refusal of bad keys, public accessor."""

from __future__ import annotations

import pytest
import torch

from neurolm_train.models import GPTConfig, NeuroLM, NeuroLMConfig, VQConfig, VQTokenizer, model_config
from neurolm_train.official import (
    OfficialCheckpointError,
    features_codes_logits,
    load_official,
    neurolm_config_from_state,
    neurolm_from_official,
    neurolm_to_official,
    official_param_groups,
    save_official_neurolm,
    save_official_vq,
    vq_from_official,
    vq_to_official,
)

torch.set_num_threads(1)


# ---- the key/shape lists of neurolm-official-checkpoints.md, transcribed (§2.1 encoder/decoders/quantizer/
# task layers, §2.2 NeuroLM-B, §2.3 L/XL differences)
def doc_encoder(prefix: str, n_layer: int = 12) -> dict[str, tuple[int, ...]]:
    keys = {
        "patch_embed.conv1.weight": (16, 1, 1, 15),
        "patch_embed.conv1.bias": (16,),
        "patch_embed.norm1.weight": (16,),
        "patch_embed.norm1.bias": (16,),
        "patch_embed.conv2.weight": (16, 16, 1, 3),
        "patch_embed.conv2.bias": (16,),
        "patch_embed.norm2.weight": (16,),
        "patch_embed.norm2.bias": (16,),
        "patch_embed.conv3.weight": (16, 16, 1, 3),
        "patch_embed.conv3.bias": (16,),
        "patch_embed.norm3.weight": (16,),
        "patch_embed.norm3.bias": (16,),
        "patch_embed.l.0.weight": (768, 400),
        "patch_embed.l.0.bias": (768,),
        "pos_embed.weight": (256, 768),
        "time_embed.weight": (64, 768),
    }
    keys.update(doc_blocks(n_layer))
    keys.update({"fc_norm.weight": (768,), "fc_norm.bias": (768,)})
    return {prefix + k: v for k, v in keys.items()}


def doc_blocks(n_layer: int) -> dict[str, tuple[int, ...]]:
    out = {}
    for i in range(n_layer):
        out[f"blocks.{i}.ln_1.weight"] = (768,)
        out[f"blocks.{i}.attn.c_attn.weight"] = (2304, 768)
        out[f"blocks.{i}.attn.c_proj.weight"] = (768, 768)
        out[f"blocks.{i}.ln_2.weight"] = (768,)
        out[f"blocks.{i}.mlp.c_fc.weight"] = (3072, 768)
        out[f"blocks.{i}.mlp.c_proj.weight"] = (768, 3072)
    return out


def doc_decoder(prefix: str) -> dict[str, tuple[int, ...]]:
    keys = {
        "patch_embed.weight": (768, 128),
        "patch_embed.bias": (768,),
        "pos_embed.weight": (256, 768),
        "time_embed.weight": (64, 768),
    }
    keys.update(doc_blocks(4))
    keys.update({"fc_norm.weight": (768,), "fc_norm.bias": (768,)})
    return {prefix + k: v for k, v in keys.items()}


def doc_vq() -> dict[str, tuple[int, ...]]:
    keys = doc_encoder("VQ.encoder.")
    keys.update(doc_decoder("VQ.decoder_freq."))
    keys.update(doc_decoder("VQ.decoder_raw."))
    keys.update(
        {
            "VQ.quantize.cluster_size": (8192,),
            "VQ.quantize.embedding.weight": (8192, 128),
            "VQ.quantize.embedding.cluster_size": (8192,),
            "VQ.quantize.embedding.embed_avg": (8192, 128),
            "VQ.quantize.embedding.initted": (1,),
            "VQ.encode_task_layer.0.weight": (768, 768),
            "VQ.encode_task_layer.0.bias": (768,),
            "VQ.encode_task_layer.2.weight": (128, 768),
            "VQ.encode_task_layer.2.bias": (128,),
            "VQ.decode_task_layer_freq.0.weight": (768, 768),
            "VQ.decode_task_layer_freq.0.bias": (768,),
            "VQ.decode_task_layer_freq.2.weight": (100, 768),
            "VQ.decode_task_layer_freq.2.bias": (100,),
            "VQ.decode_task_layer_raw.0.weight": (768, 768),
            "VQ.decode_task_layer_raw.0.bias": (768,),
            "VQ.decode_task_layer_raw.2.weight": (200, 768),
            "VQ.decode_task_layer_raw.2.bias": (200,),
            "domain_classifier.0.weight": (256, 768),
            "domain_classifier.0.bias": (256,),
            "domain_classifier.2.weight": (2, 256),
            "domain_classifier.2.bias": (2,),
            "wte.weight": (50257, 768),
        }
    )
    return keys


def doc_neurolm(n_layer: int, d: int) -> dict[str, tuple[int, ...]]:
    keys = {"GPT2.transformer.wte.weight": (50304, d), "GPT2.transformer.wpe.weight": (1024, d)}
    for i in range(n_layer):
        h = f"GPT2.transformer.h.{i}."
        keys.update(
            {
                h + "ln_1.weight": (d,),
                h + "ln_1.bias": (d,),
                h + "attn.c_attn.weight": (3 * d, d),
                h + "attn.c_attn.bias": (3 * d,),
                h + "attn.c_proj.weight": (d, d),
                h + "attn.c_proj.bias": (d,),
                h + "ln_2.weight": (d,),
                h + "ln_2.bias": (d,),
                h + "mlp.c_fc.weight": (4 * d, d),
                h + "mlp.c_fc.bias": (4 * d,),
                h + "mlp.c_proj.weight": (d, 4 * d),
                h + "mlp.c_proj.bias": (d,),
            }
        )
    keys.update({"GPT2.transformer.ln_f.weight": (d,), "GPT2.transformer.ln_f.bias": (d,)})
    keys["GPT2.lm_head.weight"] = (58496, d)
    keys.update(doc_encoder("tokenizer."))
    keys["pos_embed.weight"] = (256, d)
    if d != 768:
        keys.update({"encode_transform_layer.0.weight": (d, 768), "encode_transform_layer.0.bias": (d,)})
    return keys


def shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def test_vq_export_layout_equals_the_document():
    with torch.device("meta"):
        tok = VQTokenizer(VQConfig())
        sd = vq_to_official(tok, torch.empty(50257, 768))
    assert all(k.startswith("_orig_mod.") for k in sd)
    got = shapes(vq_to_official(tok, torch.empty(50257, 768, device="meta"), prefix=False))
    assert got == doc_vq()
    assert len(got) == 172 and sum(torch.Size(s).numel() for s in got.values()) == 185_847_599


@pytest.mark.parametrize(
    ("name", "n_layer", "d", "entries"), [("B", 12, 768, 240), ("L", 24, 1024, 386), ("XL", 48, 1600, 674)]
)
def test_neurolm_export_layout_equals_the_document(name, n_layer, d, entries):
    with torch.device("meta"):
        model = NeuroLM(model_config(name))
    got = shapes(neurolm_to_official(model, prefix=False))
    assert got == doc_neurolm(n_layer, d) and len(got) == entries
    assert list(got)[-1] == ("pos_embed.weight" if name == "B" else "encode_transform_layer.0.bias")
    if name == "B":
        assert sum(torch.Size(s).numel() for s in got.values()) == 255_107_712
    cfg = neurolm_config_from_state(neurolm_to_official(model, prefix=False))  # variant from shapes alone
    assert (cfg.name, cfg.gpt.n_layer, cfg.gpt.n_head, cfg.gpt.n_embd) == (
        name,
        n_layer,
        model.cfg.gpt.n_head,
        d,
    )
    assert cfg.vq.n_layer == 12 and cfg.n_eeg_codes == 8192


def small_models(patch_norm: str = "sample"):
    """A 1-layer 768-wide tokenizer and a 2-layer GPT of width 64 (the L/XL transform-layer path)."""
    torch.manual_seed(0)
    vq = VQConfig(n_layer=1, decoder_layers=1, n_codes=64, patch_norm=patch_norm)
    cfg = NeuroLMConfig(gpt=GPTConfig(n_layer=2, n_head=4, n_embd=64, init_from=None), vq=vq, n_eeg_codes=64)
    tok = VQTokenizer(vq)
    with torch.no_grad():
        tok.quantize.codebook.copy_(torch.nn.functional.normalize(torch.randn(64, 128), dim=-1))
        tok.quantize.initted.fill_(1.0)
    tok.eval()
    model = NeuroLM(cfg)
    model.load_tokenizer(tok)
    return tok.eval(), model.eval()


def batch(N: int = 20):
    g = torch.Generator().manual_seed(1)
    n_chans, n_secs = torch.tensor([4, 3]), [4, 3]
    x = torch.randn(2, N, 200, generator=g)
    mask = torch.zeros(2, N, dtype=torch.bool)
    chans = torch.full((2, N), 136)
    times = torch.zeros(2, N, dtype=torch.long)
    for b, s in enumerate(n_secs):
        n = int(n_chans[b]) * s
        mask[b, :n] = True
        chans[b, :n] = torch.arange(n) % n_chans[b] + 10
        times[b, :n] = torch.arange(n) // n_chans[b]
    return x * mask[..., None], chans, times, mask, n_chans


@pytest.mark.parametrize("patch_norm", ["sample", "valid"])
def test_small_roundtrip_through_files_is_identical(tmp_path, patch_norm):
    tok, model = small_models(patch_norm)
    wte = torch.randn(50257, 768)
    save_official_vq(tok, tmp_path / "VQ.pt", wte, iter_num=7, epoch=2)
    save_official_neurolm(model, tmp_path / "NeuroLM-T.pt", iter_num=9, epoch=3)
    raw = torch.load(tmp_path / "NeuroLM-T.pt", map_location="cpu", weights_only=True)
    assert list(raw) == ["model", "model_args", "iter_num", "epoch"]
    assert raw["model_args"] == dict(
        n_layer=2, n_head=4, n_embd=64, block_size=1024, bias=True, vocab_size=50304, dropout=0.0
    )
    tok2, model2, info = load_official(
        f"{tmp_path}/VQ.pt,{tmp_path}/NeuroLM-T.pt", patch_norm=patch_norm, text_positions="sample"
    )
    assert info["tokenizer_matches_vq"] and info["has_codebook"] and info["variant"] == "custom"
    assert info["iter_num"] == {"vq": 7, "neurolm": 9} and torch.equal(info["wte"], wte)
    assert model2.cfg.gpt.n_head == 4 and model2.cfg.vq == tok.cfg
    for k, v in tok.state_dict().items():
        assert torch.equal(v, tok2.state_dict()[k]), k
    x, chans, times, mask, nch = batch()
    ids = torch.randint(0, 50257, (2, 5))
    a = features_codes_logits(model, x, chans, times, mask, nch, ids)
    b = features_codes_logits(model2, x, chans, times, mask, nch, ids)
    assert (
        a["features"].shape == (2, 20, 768)
        and a["codes"].shape == (2, 20)
        and a["logits"].shape == (2, 25, 50368)
    )
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = tok(x, chans, times, mask), tok2(x, chans, times, mask)
    assert all(torch.equal(la[k], lb[k]) for k in ("commit", "rec_freq", "rec_raw"))
    assert torch.equal(
        model.generate(x, chans, times, mask, nch, ids, 3),
        model2.generate(x, chans, times, mask, nch, ids, 3),
    )
    assert torch.equal(
        model.forward_pretrain(x, chans, times, mask, nch)["loss"],
        model2.forward_pretrain(x, chans, times, mask, nch)["loss"],
    )


def test_B_roundtrip_is_identical():
    """Random-weight NeuroLM-B exported to the official layout and built back (in memory: ~2 GB)."""
    torch.manual_seed(0)
    model = NeuroLM(model_config("B")).eval()
    back = neurolm_from_official(
        neurolm_to_official(model), {"n_head": 12}, patch_norm=model.cfg.vq.patch_norm
    )
    assert back.cfg.name == "B" and back.cfg.gpt == GPTConfig(init_from=None)
    x, chans, times, mask, nch = batch(17)
    ids = torch.randint(0, 50257, (2, 3))
    h1 = model.hidden_states(x, chans, times, mask, nch, ids)
    assert torch.equal(h1, back.hidden_states(x, chans, times, mask, nch, ids))


def test_neurolm_without_vq_cannot_make_codes(tmp_path):
    _, model = small_models()
    save_official_neurolm(model, tmp_path / "n.pt")
    tok, m2, info = load_official(tmp_path / "n.pt")
    assert tok is None and not info["has_codebook"] and info["tokenizer_matches_vq"] is None
    assert m2.cfg.text_positions == "batch" and m2.cfg.vq.patch_norm == "sample"  # official defaults
    x, chans, times, mask, nch = batch()
    out = features_codes_logits(m2, x, chans, times, mask, nch)
    assert out["codes"] is None and out["logits"].shape == (2, 20, 50368)
    with pytest.raises(RuntimeError, match="not initialised"):
        m2.forward_pretrain(x, chans, times, mask, nch)


def test_prefix_is_optional():
    tok, model = small_models()
    wte = torch.randn(50257, 768)
    for prefix in (True, False):
        t2, _ = vq_from_official(vq_to_official(tok, wte, prefix=prefix))
        assert torch.equal(t2.quantize.codebook, tok.quantize.codebook)
        m2 = neurolm_from_official(neurolm_to_official(model, prefix=prefix), {"n_head": 4})
        assert torch.equal(m2.gpt.lm_head.weight, model.gpt.lm_head.weight)


@pytest.mark.parametrize("kind", ["vq", "neurolm"])
def test_bad_keys_are_refused_by_name(kind):
    tok, model = small_models()
    good = vq_to_official(tok, torch.randn(50257, 768)) if kind == "vq" else neurolm_to_official(model)

    def load(sd):
        return vq_from_official(sd) if kind == "vq" else neurolm_from_official(sd, {"n_head": 4})

    key = (
        "_orig_mod.VQ.decoder_raw.blocks.0.ln_2.weight"
        if kind == "vq"
        else "_orig_mod.GPT2.transformer.h.1.mlp.c_fc.bias"
    )
    missing = {k: v for k, v in good.items() if k != key}
    with pytest.raises(
        OfficialCheckpointError, match=r"missing key\(s\): " + key[len("_orig_mod.") :].replace(".", r"\.")
    ):
        load(missing)
    extra = dict(
        good, **{"_orig_mod.VQ.extra.weight" if kind == "vq" else "_orig_mod.GPT2.extra.bias": torch.zeros(3)}
    )
    with pytest.raises(OfficialCheckpointError, match=r"unexpected key\(s\): .*extra"):
        load(extra)
    bad = dict(good)
    bad[key] = torch.zeros(bad[key].shape[0] + 1)
    with pytest.raises(
        OfficialCheckpointError, match=r"mis-shaped key\(s\): " + key[len("_orig_mod.") :].replace(".", r"\.")
    ):
        load(bad)


def test_optimizer_state_seeds_a_resumed_run(tmp_path):
    _, model = small_models()
    model.train()
    opt = torch.optim.AdamW(official_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95))
    x, chans, times, mask, nch = batch()
    ids = torch.randint(0, 50257, (2, 6))
    model.forward_instruct(x, chans, times, mask, nch, ids, ids)["loss"].backward()  # touches every param
    opt.step()
    save_official_neurolm(model, tmp_path / "n.pt", optimizer=opt.state_dict())
    _, m2, info = load_official(tmp_path / "n.pt", keep_optimizer=True)
    opt2 = torch.optim.AdamW(official_param_groups(m2, 0.1), lr=1e-3, betas=(0.9, 0.95))
    opt2.load_state_dict(info["optimizer"]["neurolm"])
    params = [p for g in opt2.param_groups for p in g["params"]]
    assert [g["weight_decay"] for g in opt2.param_groups] == [0.1, 0.0]
    assert all(opt2.state[p]["exp_avg"].shape == p.shape for p in params)
    assert load_official(tmp_path / "n.pt")[2]["optimizer"] == {"neurolm": None}


def test_unknown_or_duplicate_files_are_refused(tmp_path):
    torch.save({"model": {"foo.weight": torch.zeros(1)}}, tmp_path / "x.pt")
    with pytest.raises(OfficialCheckpointError, match="neither"):
        load_official(tmp_path / "x.pt")
    _, model = small_models()
    save_official_neurolm(model, tmp_path / "n.pt")
    with pytest.raises(OfficialCheckpointError, match="two neurolm"):
        load_official([tmp_path / "n.pt", tmp_path / "n.pt"])
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load_official(tmp_path / "NeuroLM-B.pt")
    with pytest.raises(FileNotFoundError, match="no such file") as err:  # not an official name: no hub advice
        load_official(tmp_path / "missing.pt")
    assert "huggingface" not in str(err.value)


def test_load_neurolm_checks_the_run_config(tmp_path):
    from neurolm_train.official import load_neurolm

    tok, model = small_models("valid")
    save_official_vq(tok, tmp_path / "VQ.pt", torch.randn(50257, 768))
    save_official_neurolm(model, tmp_path / "N.pt")
    mc = NeuroLMConfig.from_dict({**model.cfg.to_dict(), "features": "causal"})
    loaded = load_neurolm(tmp_path / "N.pt", tmp_path / "VQ.pt", mc)
    assert loaded.cfg is mc and loaded.tokenizer.quantize.is_initialized
    x, chans, times, mask, nch = batch()
    model.cfg.features = "causal"
    assert torch.equal(
        model.hidden_states(x, chans, times, mask, nch), loaded.hidden_states(x, chans, times, mask, nch)
    )
    assert not load_neurolm(tmp_path / "N.pt", None, mc).tokenizer.quantize.is_initialized
    with pytest.raises(OfficialCheckpointError, match=r"gpt\.n_embd: file 64 vs config 768"):
        load_neurolm(tmp_path / "N.pt", None, model_config("B"))
    with pytest.raises(OfficialCheckpointError, match="expected a NeuroLM"):
        load_neurolm(tmp_path / "VQ.pt", None, mc)
